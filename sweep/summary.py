"""After the Tuner: which trials of the grid finished, failed (and why) or did not run.

Read from the trials table, the one record of a trial's end (Ray's own view is merged in by
sweep/failures.py for trials that ended without a row).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from sweep.grid import GridPoint
from sweep.progress import trial_label
from trainables.errors import UserError
from trainables.results import tables as results


@dataclass
class Summary:
    total: int
    ok: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """trial_id -> the error recorded in its trials row."""
    missing: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return len(self.ok) == self.total


def summarize(results_root: str, grid: Sequence[GridPoint]) -> tuple[Summary, dict[str, dict]]:
    """(status of every grid point from the trials table, its rows by trial id)."""
    wanted = {p.trial_id for p in grid}
    table = results.read_table(results_root, "trials")
    rows = {r["trial_id"]: r for r in table.to_pylist() if r["trial_id"] in wanted}
    summary = Summary(total=len(grid))
    for p in grid:
        row = rows.get(p.trial_id)
        if row is None:
            summary.missing.append(p.trial_id)
        elif row["status"] == "ok":
            summary.ok.append(p.trial_id)
        else:
            summary.failed[p.trial_id] = (row.get("error") or "unknown error").strip()
    return summary, rows


def describe(summary: Summary, grid: Sequence[GridPoint]) -> list[str]:
    by_id = {p.trial_id: p for p in grid}
    lines = [f"trials: {len(summary.ok)}/{summary.total} ok, {len(summary.failed)} failed, "
             f"{len(summary.missing)} not run"]
    for tid, error in summary.failed.items():
        last = error.splitlines()[-1] if error else ""  # the exception, after any traceback
        lines.append(f"  failed  {trial_label(by_id[tid].config)} ({tid}): {last[:300]}")
    for tid in summary.missing:
        lines.append(f"  not run {trial_label(by_id[tid].config)} ({tid})")
    return lines


def summarize_checked(results_root: str, grid: Sequence[GridPoint]
                      ) -> tuple[Summary, dict[str, dict]]:
    """summarize, with one UserError naming an unreadable file of the trials table."""
    try:
        return summarize(results_root, grid)
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        from trainables.results.tables import check_table

        check_table(results_root, "trials")  # names the unreadable file, with the fix
        raise UserError(f"cannot read {results_root}/trials ({exc})") from None


def report_command(results_root: str) -> str:
    return f"python -m analysis.report --results {shlex.quote(results_root)}"

