"""After the Tuner: what finished, what failed and why, timings, and which models to keep."""

from __future__ import annotations

import datetime as dt
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from sweep.grid import GridPoint
from sweep.progress import SweepState, fmt_duration, trial_label
from trainables import results
from trainables.storage import delete_file, join


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
        first = error.splitlines()[-1] if error else ""
        lines.append(f"  failed  {trial_label(by_id[tid].config)} ({tid}): {first[:300]}")
    for tid in summary.missing:
        lines.append(f"  not run {trial_label(by_id[tid].config)} ({tid})")
    return lines


def timings(state: SweepState, rows: dict[str, dict], started: float, ended: float,
            ran: Sequence[GridPoint]) -> list[str]:
    """Wall time, the sum of the trials' own times (measured inside run_trial), and Ray's
    overhead per trial: the slot-time the sweep used beyond the trials' own time,
    (wall x concurrency - sum) / trials. It includes starting Ray and its workers, scheduling,
    checkpoints and reports, slots left idle at the end of the sweep, and the time of failed
    attempts (which record no trial time). The start-up part is also given alone: the time
    until the first trial started."""
    wall = ended - started
    mine = [rows[p.trial_id] for p in ran if p.trial_id in rows]
    trial_sum = sum(r["total_seconds"] for r in mine if r["total_seconds"] is not None)
    lines = [f"wall time {fmt_duration(wall)} ({wall:.0f} s) for {len(ran)} trial"
             f"{'s' if len(ran) != 1 else ''}; "
             f"sum of trial times {trial_sum:.0f} s"]
    slots = state.max_running
    if ran and slots:
        overhead = (wall * slots - trial_sum) / len(ran)
        lines.append(f"Ray overhead per trial: {overhead:.1f} s ((wall x {slots} concurrent - sum) "
                     f"/ {len(ran)} trials)")
        starts = [dt.datetime.fromisoformat(r["started_at"]).timestamp() for r in mine
                  if r["started_at"]]
        if starts:
            lines.append(f"Ray start-up: {min(starts) - started:.0f} s of the wall time passed "
                         "before the first trial started")
    return lines


def prune_models(results_root: str, grid: Sequence[GridPoint], rows: dict[str, dict]) -> int:
    """--keep-models best: in each (arch, regime, train size) group whose trials are all ok,
    keep only the model of the best trial (`trainables.results.BEST_TRIAL_ORDER`, the report's
    rule); delete the others' files and clear their model_path. Returns how many models were
    deleted."""
    groups: dict[tuple[str, str, str], list[GridPoint]] = {}
    for p in grid:
        groups.setdefault((p.config.arch, p.config.regime, p.config.train_size), []).append(p)
    deleted = 0
    for points in groups.values():
        group_rows = [rows.get(p.trial_id) for p in points]
        if any(r is None or r["status"] != "ok" for r in group_rows):
            continue
        best = min(group_rows, key=results.best_trial_key)
        for row in group_rows:
            if row is best or not row["model_path"]:
                continue
            # run_trial saves every kept model here, whatever form model_path takes
            delete_file(join(results_root, "models", f"{row['trial_id']}.pt"))
            results.write_table_atomic(results_root, "trials", row["trial_id"],
                                       [{**row, "model_path": None}])
            deleted += 1
    return deleted


def report_command(results_root: str) -> str:
    return f"python -m analysis.report --results {shlex.quote(results_root)}"

