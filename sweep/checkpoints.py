"""Trial checkpoints: when they are written, what they hold, and how a rerun finds them.

When: at most every `--checkpoint-every` minutes, and after the last epoch (checkpoint_due).
A trial resumes from its last checkpoint; the epochs since are computed again, bit for bit the
same (every epoch reseeds from the trial's seed and the epoch number).

What: the training state (FitState) without what training never changes. Fine-tuning and
scratch training change every weight: the model, its SGD momentum and the best epoch's weights
are all saved (the best epoch's only once when it is the current one). Feature extraction
leaves the frozen backbone out (FitState.frozen_keys): a checkpoint keeps the new head, its
momentum and BatchNorm's running statistics when they move (bn_mode "train"), and names the
ImageNet weights file the backbone comes from; resuming builds the model from those weights
again and refuses a checkpoint made with another file.

Within one sweep, Ray hands a retried trial its own latest checkpoint (`tune.get_checkpoint()`).
Across sweeps (the driver was killed, the command is run again), Ray starts new trials that know
nothing of the old ones; so the driver records, for every checkpoint Ray persists, a pointer
`<experiment>/resume/<trial_id>.json`, and a trial without a Ray checkpoint looks there first.
A finished trial's checkpoint and pointer are deleted (its results are in Parquet; models are
kept separately with --keep-models).

Verified: Ray uploads a checkpoint with pyarrow's copy_files, which drops an error raised when an
output stream closes (a full disk), so an upload can end incomplete without a word. Each
checkpoint therefore carries `fit_state.json` (the state file's size and SHA-256): the driver
checks the size of every checkpoint Ray reports and records no resume pointer for an incomplete
one; a trial checks size and checksum before it resumes, and names and discards an incomplete
checkpoint (it restarts from its first epoch, and says so).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
from ray import tune

from sweep.layout import Experiment, remove_stale_temporaries
from trainables.engine import FitState
from trainables.results import storage
from trainables.results.storage import delete_file, join, read_text, write_text_atomic

STATE_FILE = "fit_state.pt"
CHECK_FILE = "fit_state.json"
"""The state file's size and SHA-256, written beside it (a checkpoint without it is incomplete)."""
log = logging.getLogger(__name__)


CHECKPOINT_FORMAT = 2
"""1: the whole FitState every epoch; 2: without the frozen entries, by time."""


def checkpoint_due(epoch: int, epochs: int, seconds_since_last: float, every_s: float) -> bool:
    """After the last epoch always; otherwise once `every_s` seconds have passed since the
    trial's last checkpoint (or its start). every_s 0: after every epoch."""
    return epoch >= epochs or seconds_since_last >= every_s


def checkpoint_payload(state: FitState, tid: str, weights_file: str | None) -> dict[str, Any]:
    """What a checkpoint file holds: the state without its frozen entries, and (when there are
    any) the weights file they come from."""
    saved = state.to_dict()
    frozen = set(state.frozen_keys)
    best_is_current = state.best_epoch == state.epoch and state.model_state is not None
    if best_is_current:
        saved["best_state"] = None  # the same tensors as model_state: stored once
    if frozen:
        for name in ("model_state", "best_state"):
            if saved[name] is not None:
                saved[name] = {k: v for k, v in saved[name].items() if k not in frozen}
    return {"trial_id": tid, "format": CHECKPOINT_FORMAT, "state": saved,
            "best_is_current": best_is_current, "weights_file": weights_file if frozen else None}


def state_from_payload(saved: dict[str, Any]) -> FitState:
    state = FitState.from_dict(dict(saved["state"]))
    if saved.get("best_is_current"):
        state.best_state = dict(state.model_state)
    return state


def _pointer(experiment: Experiment, tid: str) -> str:
    return join(experiment.resume_dir, f"{tid}.json")


def read_pointer(experiment: Experiment, tid: str) -> str | None:
    """The checkpoint path a pointer names; None when absent, or unreadable (truncated,
    hand-edited, not JSON): the trial then starts afresh instead of failing on every retry."""
    try:
        text = read_text(_pointer(experiment, tid))
        if text is None:
            return None
        path = json.loads(text)["path"]
        if not isinstance(path, str) or not path:
            raise ValueError("no checkpoint path")
        return path
    except Exception as exc:
        log.warning("ignoring the unreadable resume pointer %s (%s); the trial starts afresh",
                    _pointer(experiment, tid), exc)
        return None


def report_epoch(metrics: dict[str, Any], state: FitState, tid: str, weights_file: str | None,
                 checkpoint: bool = True) -> None:
    """tune.report, with (`checkpoint`) what is needed to continue after this epoch."""

    if not checkpoint:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="fr-ckpt-") as tmp:
        write_checkpoint(Path(tmp), checkpoint_payload(state, tid, weights_file))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def write_checkpoint(folder: Path, payload: dict[str, Any]) -> None:
    """The state file and, beside it, its size and checksum (CHECK_FILE)."""
    import torch

    torch.save(payload, folder / STATE_FILE)
    check = {"size": (folder / STATE_FILE).stat().st_size, "sha256": _sha256(folder / STATE_FILE)}
    (folder / CHECK_FILE).write_text(json.dumps(check), encoding="utf-8")


def _expected(read: Any) -> tuple[dict[str, Any] | None, str | None]:
    try:
        check = json.loads(read())
        return {"size": int(check["size"]), "sha256": str(check["sha256"])}, None
    except FileNotFoundError:
        return None, f"no {CHECK_FILE}: its upload did not finish"
    except Exception as exc:
        return None, f"{CHECK_FILE} is unreadable ({exc})"


def stored_checkpoint_problem(fs: pafs.FileSystem, path: str) -> str | None:
    """Why the checkpoint folder `path` on `fs` is incomplete (its state file's size), or None."""
    def read() -> bytes:
        with fs.open_input_stream(f"{path}/{CHECK_FILE}") as f:
            return f.read()

    check, problem = _expected(read)
    if check is None:
        return problem
    info = fs.get_file_info(f"{path}/{STATE_FILE}")
    if info.type != pafs.FileType.File:
        return f"no {STATE_FILE}"
    if info.size != check["size"]:
        return f"{STATE_FILE} has {info.size} of its {check['size']} bytes"
    return None


def local_checkpoint_problem(folder: Path) -> str | None:
    """Why the checkpoint in the local `folder` is incomplete (size and SHA-256), or None."""
    check, problem = _expected(lambda: (folder / CHECK_FILE).read_bytes())
    if check is None:
        return problem
    state = folder / STATE_FILE
    if not state.is_file():
        return f"no {STATE_FILE}"
    if state.stat().st_size != check["size"]:
        return f"{STATE_FILE} has {state.stat().st_size} of its {check['size']} bytes"
    if _sha256(state) != check["sha256"]:
        return f"{STATE_FILE} does not match its SHA-256 (changed or damaged after it was written)"
    return None


def load_state(checkpoint: tune.Checkpoint, tid: str, weights_file: str | None) -> FitState | None:
    """The FitState in a checkpoint, or None if it belongs to another trial, was made from
    other ImageNet weights than `weights_file`, or is unreadable."""
    import torch

    try:
        with checkpoint.as_directory() as folder:
            problem = local_checkpoint_problem(Path(folder))
            if problem is not None:
                log.warning("trial %s: the checkpoint %s is incomplete (%s): discarded; the trial "
                            "restarts from its first epoch", tid, checkpoint.path, problem)
                return None
            saved = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=False)
        if not isinstance(saved, dict) or saved.get("trial_id") != tid:
            return None
        if saved.get("weights_file") not in (None, weights_file):
            return None  # its frozen backbone came from another file: start over
        return state_from_payload(saved)
    except Exception as exc:  # truncated, corrupt or foreign: start afresh, never fail forever
        log.warning("ignoring the unreadable checkpoint of trial %s (%s); it starts afresh",
                    tid, exc)
        return None


def previous_checkpoint(experiment: Experiment, tid: str) -> tune.Checkpoint | None:
    """The checkpoint an earlier sweep recorded for this trial, if it still exists."""
    path = read_pointer(experiment, tid)
    if path is None:
        return None
    fs, _ = experiment.fs()
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return None
    return tune.Checkpoint(path, filesystem=fs)


class ResumePointers(tune.Callback):
    """Driver side: record each trial's latest persisted checkpoint; forget it once finished.

    Ray deletes a trial's older checkpoints itself (CheckpointConfig(num_to_keep=1)); the one an
    earlier sweep left behind for this trial is deleted here, once the trial has a newer one."""

    def __init__(self, experiment: Experiment) -> None:
        self.experiment = experiment
        self._seen: set[str] = set()

    def _previous_path(self, tid: str) -> str | None:
        return read_pointer(self.experiment, tid)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        tid = trial.config["point"]["trial_id"]
        problem = stored_checkpoint_problem(checkpoint.filesystem, checkpoint.path)
        if problem is not None:  # never resumed from: no pointer names it
            log.warning("trial %s: the checkpoint %s is incomplete (%s): discarded, not recorded "
                        "for resuming", tid, checkpoint.path, problem)
            _delete_dir(checkpoint.filesystem, checkpoint.path)
            return
        stale = None if tid in self._seen else self._previous_path(tid)
        self._seen.add(tid)
        try:
            write_text_atomic(_pointer(self.experiment, tid), json.dumps({"path": checkpoint.path}))
        except OSError as exc:  # a full disk: the trial goes on; a rerun may restart it
            log.warning("could not record the resume pointer of %s (%s)", tid, exc)
            return
        if stale and stale != checkpoint.path:
            _delete_dir(checkpoint.filesystem, stale)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        """Delete the trial's checkpoints: this run's latest, and the one the pointer names (an
        earlier run's, when the trial resumed after its last epoch and saved none since)."""
        tid = trial.config["point"]["trial_id"]
        paths = {self._previous_path(tid)}
        if trial.checkpoint is not None:
            paths.add(trial.checkpoint.path)
        try:
            delete_file(_pointer(self.experiment, tid))
        except OSError as exc:
            log.warning("could not delete the resume pointer of %s (%s)", tid, exc)
        fs, _ = self.experiment.fs()
        for path in paths - {None}:
            _delete_dir(fs, path)


def pointer_ids(experiment: Experiment) -> set[str]:
    """Ids of the trials with a resume pointer: one listing of resume/, not a read per trial
    (a 100k-trial rerun would otherwise try 100k files, on an object store 100k requests)."""
    fs, folder = storage.resolve(experiment.resume_dir)
    selector = pafs.FileSelector(folder, allow_not_found=True)
    return {info.base_name.removesuffix(".json") for info in fs.get_file_info(selector)
            if info.type == pafs.FileType.File and info.base_name.endswith(".json")}


def forget_finished(experiment: Experiment, trial_ids: list[str]) -> int:
    """Delete the resume pointer, and the checkpoint it names, of each trial that has a result
    row: an interrupt between a trial's last row and Ray's completion callback leaves both
    behind, and nothing resumes a finished trial. Returns how many pointers were found."""
    fs, _ = experiment.fs()
    found = 0
    for tid in pointer_ids(experiment).intersection(trial_ids):
        path = read_pointer(experiment, tid)
        if path is None:
            continue
        found += 1
        _delete_dir(fs, path)
        try:
            delete_file(_pointer(experiment, tid))
        except OSError as exc:
            log.warning("could not delete the resume pointer of %s (%s)", tid, exc)
    return found


def free_orphan_checkpoints(experiment: Experiment) -> int:
    """Delete checkpoint folders under ray/ that no resume pointer names: nothing resumes from
    them (a rerun only follows pointers), and a half-uploaded one may be what fills the disk.
    Returns how many were deleted."""
    fs, root = experiment.fs()
    pointed = (read_pointer(experiment, tid) for tid in pointer_ids(experiment))
    keep = {path.rstrip("/") for path in pointed if path}
    ray_dir = f"{root}/{experiment.ray_name}"
    if fs.get_file_info(ray_dir).type != pafs.FileType.Directory:
        return 0
    deleted = 0
    for trial_dir in fs.get_file_info(pafs.FileSelector(ray_dir)):
        if trial_dir.type != pafs.FileType.Directory:
            continue
        for sub in fs.get_file_info(pafs.FileSelector(trial_dir.path)):
            if (sub.type == pafs.FileType.Directory and sub.base_name.startswith("checkpoint_")
                    and sub.path.rstrip("/") not in keep):
                fs.delete_dir(sub.path)
                deleted += 1
    return deleted


def _delete_dir(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_dir(path)
    except OSError:  # already gone (FileNotFoundError is an OSError too)
        pass


def tidy_before_run(experiment: Experiment, finished: list[str]) -> None:
    """What an interrupted run left behind: partial result files, the resume pointers and
    checkpoints of trials that finished, checkpoints no pointer names."""
    removed = remove_stale_temporaries(experiment.results)
    if removed:
        log.info("removed %d partial file(s) left by an interrupted run", removed)
    forget_finished(experiment, finished)
    with contextlib.suppress(Exception):  # best effort: only disk space is at stake
        free_orphan_checkpoints(experiment)
