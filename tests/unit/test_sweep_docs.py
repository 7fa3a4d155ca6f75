"""The docs describe what the code has: every results column, every sweep option."""

from __future__ import annotations

import re

import pytest

from tests.conftest import PROJECT_ROOT
from trainables.results.tables import TABLES

DOCS = PROJECT_ROOT / "docs"


def documented_columns(text: str, table: str) -> set[str]:
    """First-column names of the Markdown tables under the table's heading (and the key
    columns, shared by every table)."""
    sections = re.split(r"\n## ", text)
    wanted = [s for s in sections if s.startswith(f"`{table}`") or s.startswith("Key columns")]
    return {m for s in wanted for m in re.findall(r"^\| `(\w+)` \|", s, flags=re.M)}


@pytest.mark.parametrize("table", sorted(TABLES))
def test_results_md_documents_every_column(table):
    text = (DOCS / "results.md").read_text()
    schema_columns = set(TABLES[table].names)
    documented = documented_columns(text, table)
    assert schema_columns - documented == set(), "columns missing from docs/results.md"
    assert documented - schema_columns == set(), "docs/results.md names columns that do not exist"


def test_sweep_md_documents_every_option():
    from sweep.run import build_parser

    text = (DOCS / "sweep.md").read_text()
    options = {s for a in build_parser()._actions for s in a.option_strings if s.startswith("--")}
    options.discard("--help")
    missing = sorted(o for o in options if f"`{o}" not in text)
    assert missing == [], "options missing from docs/sweep.md"
