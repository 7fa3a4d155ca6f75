"""Per-epoch trial checkpoints: what they hold, and how a rerun finds an unfinished trial's.

Within one sweep, Ray hands a retried trial its own latest checkpoint (`tune.get_checkpoint()`).
Across sweeps (the driver was killed, the command is run again), Ray starts new trials that know
nothing of the old ones; so the driver records, for every checkpoint Ray persists, a pointer
`<experiment>/resume/<trial_id>.json`, and a trial without a Ray checkpoint looks there first.
A finished trial's checkpoint and pointer are deleted (its results are in Parquet; models are
kept separately with --keep-models).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
from ray import tune

from sweep.layout import Experiment
from trainables.engine import FitState
from trainables.storage import delete_file, join, read_text, write_text_atomic

STATE_FILE = "fit_state.pt"
log = logging.getLogger("sweep")


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


def report_epoch(metrics: dict[str, Any], state: FitState, tid: str) -> None:
    """tune.report with a checkpoint of everything needed to continue after this epoch."""
    import torch

    with tempfile.TemporaryDirectory(prefix="fr-ckpt-") as tmp:
        torch.save({"trial_id": tid, "state": state.to_dict()}, Path(tmp) / STATE_FILE)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def load_state(checkpoint: tune.Checkpoint, tid: str) -> FitState | None:
    """The FitState in a checkpoint, or None if it belongs to another trial or is unreadable."""
    import torch

    try:
        with checkpoint.as_directory() as folder:
            saved = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=False)
        if not isinstance(saved, dict) or saved.get("trial_id") != tid:
            return None
        return FitState.from_dict(saved["state"])
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


def forget_finished(experiment: Experiment, trial_ids: list[str]) -> int:
    """Delete the resume pointer, and the checkpoint it names, of each trial that has a result
    row: an interrupt between a trial's last row and Ray's completion callback leaves both
    behind, and nothing resumes a finished trial. Returns how many pointers were found."""
    fs, _ = experiment.fs()
    found = 0
    for tid in trial_ids:
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


def _delete_dir(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_dir(path)
    except OSError:  # already gone (FileNotFoundError is an OSError too)
        pass
