"""Docs carry no unfilled placeholder: a line that is one ALL_CAPS token (MEASURED_SPEED) is a
number someone meant to measure and paste, not text a reader can use."""

from __future__ import annotations

import re

import pytest

from tests.conftest import PROJECT_ROOT

DOCS = sorted((PROJECT_ROOT / "docs").glob("*.md")) + [PROJECT_ROOT / "README.md"]
PLACEHOLDER = re.compile(r"^\s*[A-Z][A-Z0-9]*(_[A-Z0-9]+)+\s*$")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_no_unfilled_placeholder(doc):
    lines = [f"{doc.name}:{i}: {line.strip()}" for i, line in
             enumerate(doc.read_text(encoding="utf-8").splitlines(), 1) if PLACEHOLDER.match(line)]
    assert not lines, "unfilled placeholders:\n" + "\n".join(lines)
