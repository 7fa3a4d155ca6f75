"""When the run itself goes wrong under Ray: a full disk, a store that stopped answering, Ray
failing, a trial killed before it could write its row.

The driver stays alive through all of these. `RunFailures` notes each error Ray reports, records a
failed row for each trial that ended without one (a rerun retries it like any failed trial), and
its lines name the cause and the fix in the summary; the exit status is then 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs

from sweep.checkpoints import free_orphan_checkpoints
from sweep.grid import GridPoint
from sweep.layout import Experiment
from trainables.results.storage import DISK_FULL_FIX, is_disk_full, storage_problem

MAX_LINE = 300


def first_line(error: Any) -> str:
    """The first non-empty line of an exception's text (its type's name when it has none)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:MAX_LINE]


def exception_line(text: str) -> str:
    """The line of a traceback that names the exception ("ValueError: ..."): the last such line,
    else the last line; "" for no text."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ("Error" in ln or "Exception" in ln) and ":" in ln]
    return (errors[-1] if errors else lines[-1])[:MAX_LINE] if lines else ""


def trial_error(trial: Any) -> str:
    """The exception line of a Tune trial's error: from storage, else from Ray's local copy."""
    texts = []
    with contextlib.suppress(Exception):
        texts.append(str(trial.get_error() or ""))
    with contextlib.suppress(Exception):
        with open(trial.error_file, encoding="utf-8", errors="replace") as f:
            texts.append(f.read())
    return next((line for line in map(exception_line, texts) if line), "")


@dataclass
class RunFailures:
    """Failures seen while the Tuner ran; turned into summary lines and recorded rows."""

    experiment: Experiment
    storage_arg: str
    stopped: BaseException | None = None
    """The exception that ended the Tuner early (None when it returned)."""
    ray_errors: dict[str, str] = field(default_factory=dict)
    """trial_id -> the exception line of Ray's error, for trials Ray reports as errored."""
    full: bool | None = None
    """Whether the storage was full when the Tuner ended (probed before anything is freed)."""
    recorded: int = 0
    """Failed rows written here for trials that ended without one."""

    def callback(self) -> Any:
        """A Tune callback noting each errored trial (Ray's ResultGrid is lost when fit()
        itself fails, e.g. on a full disk)."""
        from ray import tune

        failures = self

        class _Errors(tune.Callback):
            def on_trial_error(self, iteration, trials, trial, **info) -> None:
                tid = trial.config["point"]["trial_id"]
                failures.ray_errors[tid] = trial_error(trial) or failures.ray_errors.get(tid, "")

        return _Errors()

    def collect(self, result_grid: Any) -> None:
        for result in result_grid or []:
            point = (getattr(result, "config", None) or {}).get("point") or {}
            if result.error is not None and point.get("trial_id"):
                self.ray_errors[point["trial_id"]] = (exception_line(str(result.error))
                                                      or type(result.error).__name__)

    def after_tuner(self, points: Sequence[GridPoint], manifest: Any) -> None:
        """Once the Tuner is done (Ray still up, before its logs are copied): note whether the
        disk is full, free the checkpoint folders no resume pointer names (a failed upload's
        partial copy keeps the disk full), then record a failed row for each errored trial that
        has none (`recorded`)."""
        self.full = self.disk_full()
        if self.ray_errors or self.stopped is not None:
            with contextlib.suppress(Exception):
                free_orphan_checkpoints(self.experiment)
        self.recorded = self.record_failed_rows(points, manifest)

    def merge(self, summary: Any) -> None:
        """Trials that ended without a row but with an error from Ray count as failed."""
        for tid in list(summary.missing):
            if tid in self.ray_errors:
                summary.missing.remove(tid)
                summary.failed[tid] = self.ray_errors[tid]

    def record_failed_rows(self, points: Sequence[GridPoint], manifest: Any) -> int:
        """A failed row for each errored trial without one (best effort: the disk may still
        be full). A rerun retries them like any failed trial."""
        from trainables.results import tables as results
        from trainables.train import failed_trial_row

        fs, root = self.experiment.fs()
        written = 0
        for p in points:
            if p.trial_id not in self.ray_errors:
                continue
            if fs.get_file_info(f"{root}/results/trials/{p.trial_id}.parquet").type == \
                    pafs.FileType.File:
                continue  # the trial wrote its own row
            text = self.ray_errors[p.trial_id] or (
                "OSError: [Errno 28] No space left on device (Ray could not record the error)"
                if self.full else "the trial failed; Ray recorded no readable error")
            self.ray_errors[p.trial_id] = text
            row = {**failed_trial_row(p.config, manifest, p.trial_id, RuntimeError(text), "", None),
                   "error": text}
            try:
                results.write_table_atomic(self.experiment.results, "trials", p.trial_id, [row])
                written += 1
            except Exception:
                break  # nothing more can be written now
        return written

    def disk_full(self) -> bool:
        texts = [*self.ray_errors.values(), str(self.stopped or "")]
        if any(is_disk_full(t) for t in texts):
            return True
        problem = storage_problem(self.experiment.root, timeout_s=10)
        return is_disk_full(problem)

    def lines(self, complete: bool) -> list[str]:
        out = []
        if self.stopped is not None:
            out.append(f"the sweep stopped early: {type(self.stopped).__name__}: "
                       f"{first_line(self.stopped)}")
        full = self.full if self.full is not None else self.disk_full()
        if (self.stopped is not None or not complete) and full:
            out.append(f"cause: the disk holding --storage {self.storage_arg} "
                       f"({self.experiment.root}) is full (No space left on device). "
                       f"Fix: {DISK_FULL_FIX}")
        return out
