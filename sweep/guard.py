"""What keeps a sweep's driver honest when options or the run itself go wrong.

`check_options`: every number and name the sweep CLI takes, refused before any work (NaN,
infinities, negatives, names that are not one plain folder, grids too large to print).
`RunFaults`: the run went wrong under Ray (a full disk, a store that stopped answering, Ray
itself failing). The driver stays alive, records what it can (a failed row for each trial that
ended without one), and the summary names the cause and the fix; the exit status is 1.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs

from sweep.cluster_nodes import version_refusal
from sweep.grid import GridPoint, GridSpec
from sweep.layout import Experiment
from trainables import options
from trainables.errors import UserError
from trainables.storage import DISK_FULL_FIX, is_disk_full, storage_problem

MAX_SEED = 2**32 - 1
MAX_SEEDS = 1000
MAX_GRID_TRIALS = 20_000
"""Beyond this a grid is a typo (`--seeds 1000000`), and listing it alone would take minutes."""


def check_options(args: argparse.Namespace, spec: GridSpec) -> None:
    """Refuse bad numbers, paths and names with one UserError naming the option."""
    for flag, value in (("--storage", args.storage), ("--data", args.data), ("--ood", args.ood)):
        options.path_option(flag, value)
    if args.name is not None:
        options.experiment_name("--name", args.name)
    if args.address is not None:
        options.text_option("--address", args.address)
        if not args.address.strip():
            raise UserError("--address is empty. Fix: pass 'auto' on a cluster node, or "
                            "HOST:PORT of the head, or leave it out for a local Ray")
    if args.gpu_memory_gb is not None:
        options.finite("--gpu-memory-gb", args.gpu_memory_gb, 0, above=True, example="80")
    options.finite("--progress-interval", args.progress_interval, 0, above=True, example="30")
    options.whole("--split-seed", args.split_seed, 0, MAX_SEED)
    options.whole("--max-failures", args.max_failures, 0)
    options.finite("--checkpoint-every", args.checkpoint_every, 0, example="5")
    if args.seeds is not None and args.seeds > MAX_SEEDS:  # below 1: GridSpec.problems
        options.whole("--seeds", args.seeds, 1, MAX_SEEDS)
    n = (len(spec.resolved_archs) * len(spec.resolved_regimes) * len(spec.resolved_train_sizes)
         * max(spec.resolved_seeds, 0))
    if n > MAX_GRID_TRIALS:
        raise UserError(f"the grid has {n} trials (archs x regimes x train sizes x seeds), more "
                        f"than {MAX_GRID_TRIALS}. Fix: fewer seeds or train sizes, or split the "
                        "study into several sweeps")


@contextlib.contextmanager
def joining(address: str | None) -> Iterator[None]:
    """Errors from starting or joining Ray (an address that does not answer, a cluster of
    another Ray version), as one UserError naming --address."""
    try:
        yield
    except RuntimeError as exc:  # Ray's version check: a driver of another Ray or Python
        refusal = version_refusal(str(exc), address)
        if refusal is None:
            raise
        raise UserError(refusal) from None
    except (ConnectionError, TimeoutError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        where = f"--address {address}" if address else "a local Ray"
        raise UserError(f"cannot start or join {where} ({first}). Fix: check the address "
                        "(`ray status` on the head node shows it), or leave --address out to "
                        "start a local Ray") from None


def _trial_error(trial: Any) -> str:
    """The exception line of a Tune trial's error: from storage, else from Ray's local copy."""
    texts = []
    with contextlib.suppress(Exception):
        texts.append(str(trial.get_error() or ""))
    with contextlib.suppress(Exception):
        with open(trial.error_file, encoding="utf-8", errors="replace") as f:
            texts.append(f.read())
    for text in texts:
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        errors = [ln for ln in lines if ("Error" in ln or "Exception" in ln) and ":" in ln]
        if lines:
            return (errors[-1] if errors else lines[-1])[:300]
    return ""


def free_orphan_checkpoints(experiment: Experiment) -> int:
    """Delete checkpoint folders under ray/ that no resume pointer names: nothing resumes from
    them (a rerun only follows pointers), and a half-uploaded one may be what fills the disk."""
    from sweep.checkpoints import read_pointer

    fs, root = experiment.fs()
    resume = f"{root}/resume"
    keep = set()
    if fs.get_file_info(resume).type == pafs.FileType.Directory:
        for info in fs.get_file_info(pafs.FileSelector(resume)):
            if info.base_name.endswith(".json"):
                path = read_pointer(experiment, info.base_name.removesuffix(".json"))
                if path:
                    keep.add(path.rstrip("/"))
    deleted = 0
    ray_dir = f"{root}/{experiment.ray_name}"
    if fs.get_file_info(ray_dir).type != pafs.FileType.Directory:
        return 0
    for trial_dir in fs.get_file_info(pafs.FileSelector(ray_dir)):
        if trial_dir.type != pafs.FileType.Directory:
            continue
        for sub in fs.get_file_info(pafs.FileSelector(trial_dir.path)):
            if (sub.type == pafs.FileType.Directory and sub.base_name.startswith("checkpoint_")
                    and sub.path.rstrip("/") not in keep):
                fs.delete_dir(sub.path)
                deleted += 1
    return deleted


def _first_line(error: Any) -> str:
    text = str(error).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


@dataclass
class RunFaults:
    """Failures seen while the Tuner ran; turned into summary lines and recorded rows."""

    experiment: Experiment
    storage_arg: str
    stopped: BaseException | None = None
    """The exception that ended the Tuner early (None when it returned)."""
    ray_errors: dict[str, str] = field(default_factory=dict)
    """trial_id -> last line of Ray's error, for trials Ray reports as errored."""

    full: bool | None = None
    """Whether the storage was full when the Tuner ended (probed before anything is freed)."""

    def callback(self) -> Any:
        """A Tune callback noting each errored trial (Ray's ResultGrid is lost when fit()
        itself fails, e.g. on a full disk)."""
        from ray import tune

        faults = self

        class _Errors(tune.Callback):
            def on_trial_error(self, iteration, trials, trial, **info) -> None:
                tid = trial.config["point"]["trial_id"]
                faults.ray_errors[tid] = _trial_error(trial) or faults.ray_errors.get(tid, "")

        return _Errors()

    def collect(self, result_grid: Any) -> None:
        for result in result_grid or []:
            point = (getattr(result, "config", None) or {}).get("point") or {}
            if result.error is not None and point.get("trial_id"):
                self.ray_errors[point["trial_id"]] = _first_line(result.error)

    def after_tuner(self, points: Sequence[GridPoint], manifest: Any) -> int:
        """Once the Tuner is done (Ray still up, before its logs are copied): note whether the
        disk is full, free the checkpoint folders no resume pointer names (a failed upload's
        partial copy keeps the disk full), then record a failed row for each errored trial that
        has none. Returns the number of rows recorded."""
        self.full = self.disk_full()
        if self.ray_errors or self.stopped is not None:
            with contextlib.suppress(Exception):
                free_orphan_checkpoints(self.experiment)
        return self.record_failed_rows(points, manifest)

    def merge(self, summary: Any) -> None:
        """Trials that ended without a row but with an error from Ray count as failed."""
        for tid in list(summary.missing):
            if tid in self.ray_errors:
                summary.missing.remove(tid)
                summary.failed[tid] = self.ray_errors[tid]

    def record_failed_rows(self, points: Sequence[GridPoint], manifest: Any) -> int:
        """A failed row for each errored trial without one (best effort: the disk may still
        be full). A rerun retries them like any failed trial."""
        from trainables import results
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
                       f"{_first_line(self.stopped)}")
        full = self.full if self.full is not None else self.disk_full()
        if (self.stopped is not None or not complete) and full:
            out.append(f"cause: the disk holding --storage {self.storage_arg} "
                       f"({self.experiment.root}) is full (No space left on device). "
                       f"Fix: {DISK_FULL_FIX}")
        return out


def summarize_checked(results_root: str, grid: Sequence[GridPoint]) -> tuple[Any, dict[str, dict]]:
    """outcome.summarize, with one UserError naming an unreadable file of the trials table."""
    from sweep import outcome

    try:
        return outcome.summarize(results_root, grid)
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        from trainables.results_check import check_table

        check_table(results_root, "trials")  # names the unreadable file, with the fix
        raise UserError(f"cannot read {results_root}/trials ({exc})") from None
