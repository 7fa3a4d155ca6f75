"""Which kept model `--model` names in an experiment: `best`, a trial id, or a model file.

An experiment is a sweep's folder (`<storage>/<name>`, results under `results/`) or a results
folder itself (`trainables.train --out`). `best` is the project's one rule for "the best model"
(`trainables.results.BEST_TRIAL_ORDER`, the report's and `--keep-models best`'s) over the
finished trials whose model file exists: highest validation accuracy, then lower validation loss,
then the earlier epoch, then the trial id.
"""

from __future__ import annotations

import os
import posixpath
import shlex
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

from trainables import results
from trainables.errors import UserError
from trainables.model_file import locate
from trainables.storage import join, resolve

BEST = "best"
KEEP_HINT = ("keep models with `feature-reuse sweep ... --keep-models best` (the default) or "
             "`feature-reuse train ... --keep-model`")


@dataclass(frozen=True)
class Choice:
    """The model file to load, and its trial's row when it came from an experiment."""

    path: str
    row: dict[str, Any] | None


def _exists(path: str, kind: pafs.FileType) -> bool:
    fs, inner = resolve(path)
    try:
        return fs.get_file_info(inner).type == kind
    except OSError:
        return False


def results_root(experiment: str) -> str:
    """The results folder of an experiment folder, or the folder itself if it is one."""
    for candidate in (join(experiment, "results"), experiment):
        if _exists(join(candidate, "trials"), pafs.FileType.Directory):
            return candidate
    if not _exists(experiment, pafs.FileType.Directory):
        raise UserError(f"--experiment {experiment}: no such folder. Fix: name a sweep's folder "
                        "(<storage>/<name>, e.g. runs/demo) or a results folder")
    raise UserError(f"--experiment {experiment}: no finished trials here (no results/trials/ or "
                    "trials/ folder). Fix: name a sweep's folder (<storage>/<name>, e.g. runs/demo) "
                    "or a results folder (trainables.train --out)")


def experiment_of(root: str) -> str:
    """The folder to pass as --experiment for a results folder (its parent for `.../results`)."""
    trimmed = root.rstrip("/")
    return posixpath.dirname(trimmed) if posixpath.basename(trimmed) == "results" else root


def kept_rows(root: str) -> list[dict[str, Any]]:
    """Finished trials whose model file exists, `model_path` made openable (`locate`)."""
    rows = results.read_table(root, "trials").to_pylist()
    out = []
    for row in rows:
        if row["status"] != "ok" or not row.get("model_path"):
            continue
        path = locate(root, row["model_path"])
        if _exists(path, pafs.FileType.File):
            out.append({**row, "model_path": path})
    return out


def best_kept(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    return min(rows, key=results.best_trial_key) if rows else None


def is_model_file(model: str) -> bool:
    return model.endswith(".pt") or "://" in model or os.path.isfile(model)


def choose(experiment: str | None, model: str = BEST) -> Choice:
    """The model file `--model` names: `best` or a trial id (or a unique prefix of one) in
    `experiment`, or a model file (no experiment needed)."""
    if model != BEST and is_model_file(model):
        if not _exists(model, pafs.FileType.File):
            raise UserError(f"--model {model}: no such model file")
        return Choice(model, None)
    if experiment is None:
        raise UserError(f"--model {model} needs --experiment (the sweep's folder, e.g. runs/demo); "
                        "or pass a model file (.pt) as --model")
    root = results_root(experiment)
    rows = kept_rows(root)
    if model == BEST:
        best = best_kept(rows)
        if best is None:
            raise UserError(f"--experiment {experiment}: no finished trial kept its model file; "
                            f"{KEEP_HINT}")
        return Choice(best["model_path"], best)
    every = results.read_table(root, "trials", columns=["trial_id", "status"]).to_pylist()
    matches = sorted({r["trial_id"] for r in every if r["trial_id"].startswith(model)})
    if len(matches) != 1:
        known = ", ".join(r["trial_id"] for r in rows[:5])
        what = "is not a trial id there" if not matches else f"matches {len(matches)} trials"
        raise UserError(f"--model {model} {what} (kept models: {known or 'none'}); use best, a "
                        "trial id, or a model file (.pt)")
    kept = [r for r in rows if r["trial_id"] == matches[0]]
    if not kept:
        raise UserError(f"--model {model}: trial {matches[0]} kept no model file (or it was "
                        f"deleted: --keep-models best keeps one per architecture, regime and "
                        f"train size); {KEEP_HINT}")
    return Choice(kept[0]["model_path"], kept[0])


def predict_command(experiment: str, model: str = BEST) -> str:
    """The shell command that classifies images with this model."""
    pick = "" if model == BEST else f" --model {shlex.quote(model)}"
    return f"feature-reuse predict --experiment {shlex.quote(experiment)}{pick} IMAGES_OR_FOLDER"
