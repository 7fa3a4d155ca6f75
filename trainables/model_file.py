"""A kept model's file (`--keep-model`, `--keep-models`): writing it, and reading it back as a
ready model with the settings it was trained with.

`<results>/models/<trial_id>.pt` is a `torch.save` dict, read with `weights_only=True` (loading
runs no code from the file):

    format        MODEL_FILE_FORMAT: what this code reads
    code_version  the code that wrote it (trainables.provenance)
    trial_id      its trial
    config        the trial's TrialConfig: rebuilds the architecture, and gives its eval transform
                  (test resize and crop, mean/std, interpolation, backend)
    classes       the class names, in the order of the model's outputs
    state_dict    the weights: the model `trainables.models.build_model` builds for the config,
                  or for the linear probe `trainables.model_file.ProbeClassifier`

The model is rebuilt from the config and the weights loaded into it; nothing is unpickled. Format
1 (before format 2 existed: config, classes and state_dict, never a linear probe) reads the same
way. A file of a format this code does not know, or whose config or weights do not fit the model
this code builds, is refused with both code versions named (the fix: rerun its trial with this
code); one that loads but came from another code version is used, and `KeptModel.note` says so.

The linear probe's kept model as one torch module: the backbone, then a `Linear`.

`trainables.linear_probe` fits scikit-learn's `LogisticRegression` on standardised penultimate
features. For `--keep-model`, predict and export that regression becomes a `Linear` layer on the
raw features, with the standardisation folded in (computed in float64, stored as float32):

    z = (x - mean) / scale                      (StandardScaler; without it mean 0, scale 1)
    logits = z @ coef.T + intercept = x @ (coef / scale).T + (intercept - coef @ (mean / scale))

so `softmax(Linear(x))` is the regression's `predict_proba(x)`. Two classes: scikit-learn's
binary model has one row, p(second class) = sigmoid(d), which is the softmax of logits (0, d).
A class the training split lacked (the regression never saw it) gets probability 0 there, and
here a logit of `ABSENT_LOGIT`.

`ProbeClassifier` = the backbone cut at the architecture's main head (torch.fx, the same node the
probe's features come from; spatially averaged when it is a feature map, as SqueezeNet's) and that
`Linear`. Its state dict is what the model file holds; `trainables.model_file` rebuilds it from
the trial's config like any other kept model. The probe's features were computed with BatchNorm
folded into the convolutions (`trainables.cached_features`); this module keeps BatchNorm as it is
(eval mode), the same function up to float32 rounding (test: the kept module reproduces the
trial's recorded probabilities to 1e-4).

Which kept model `--model` names in an experiment: `best`, a trial id, or a model file.

An experiment is a sweep's folder (`<storage>/<name>`, results under `results/`) or a results
folder itself (`trainables.train --out`). `best` is the project's one rule for "the best model"
(`trainables.results.BEST_TRIAL_ORDER`, the report's and `--keep-models best`'s) over the
finished trials whose model file exists: highest validation accuracy, then lower validation loss,
then the earlier epoch, then the trial id.
"""

from __future__ import annotations

import dataclasses
import io
import os
import posixpath
import shlex
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from trainables.arch_record import Arch
from trainables.archs import resolve
from trainables.config import TrialConfig
from trainables.errors import UserError
from trainables.models import build_model, set_submodule
from trainables.provenance import code_version
from trainables.regimes import get_regime
from trainables.results import tables as results
from trainables.results.storage import check_storage, join
from trainables.results.storage import resolve as resolve_storage

MODEL_FILE_FORMAT = 2
"""2: format, code_version and trial_id added; the linear probe kept as a ProbeClassifier.
1 (files without a `format`): config, classes and state_dict only."""
READABLE_FORMATS: tuple[int, ...] = (1, 2)
UNKNOWN_VERSION = "unknown (model file format 1 does not record it)"


@dataclass
class KeptModel:
    """A kept model, rebuilt: `model` on the CPU in eval mode."""

    path: str
    model: nn.Module
    config: TrialConfig
    classes: list[str]
    code_version: str
    trial_id: str | None

    @property
    def note(self) -> str | None:
        """A line for the user when the file came from another code version, else None."""
        if self.code_version == code_version():
            return None
        return (f"model file {self.path} was written by code version {self.code_version}; this "
                f"is {code_version()} (it loads: same architecture, weights and settings)")


def model_file_bytes(tid: str, config: TrialConfig, classes: list[str],
                     state_dict: dict[str, torch.Tensor]) -> bytes:
    """The bytes of a model file (the module docstring's layout)."""
    buf = io.BytesIO()
    torch.save({"format": MODEL_FILE_FORMAT, "code_version": code_version(), "trial_id": tid,
                "config": config.to_dict(), "classes": list(classes), "state_dict": state_dict},
               buf)
    return buf.getvalue()


def locate(results_root: str, model_path: str) -> str:
    """A trials row's model_path (relative to the results root, absolute, or a URI) as a path or
    URI that `read_model_file` opens."""
    if "://" in model_path or posixpath.isabs(model_path):
        return model_path
    return join(results_root, model_path)


def _read(path: str) -> bytes:
    fs, inner = resolve_storage(path)
    try:
        with fs.open_input_stream(inner) as f:
            return f.read()
    except (FileNotFoundError, OSError) as exc:
        raise UserError(f"model file {path} cannot be read ({exc}); was the results folder moved "
                        "without its models/ folder?") from None


def _other_code(path: str, written_by: str, problem: str) -> UserError:
    return UserError(f"model file {path} was written by code version {written_by}; this is "
                     f"{code_version()}, and {problem}. Fix: rerun its trial with this code "
                     "(feature-reuse train ... --keep-model, or the sweep)")


def read_model_file(path: str) -> KeptModel:
    """Load and rebuild the model of a model file (local path or URI)."""
    try:
        ckpt = torch.load(io.BytesIO(_read(path)), map_location="cpu", weights_only=True)
    except UserError:
        raise
    except Exception as exc:  # not a torch file, or one holding objects weights_only refuses
        raise UserError(f"{path} is not a model file this project wrote ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(ckpt, dict) or not {"config", "classes", "state_dict"} <= set(ckpt):
        raise UserError(f"{path} is not a model file this project wrote (expected a dict with "
                        "config, classes and state_dict)")
    written_by = str(ckpt.get("code_version", UNKNOWN_VERSION))
    found = ckpt.get("format", 1)
    if found not in READABLE_FORMATS:
        raise _other_code(path, written_by, f"it is model file format {found} where this code "
                          f"reads formats {', '.join(map(str, READABLE_FORMATS))}")
    known = {f.name for f in dataclasses.fields(TrialConfig)}
    unknown = sorted(set(ckpt["config"]) - known)
    if unknown:
        raise _other_code(path, written_by, f"its config has settings this code does not know "
                          f"({', '.join(unknown)})")
    try:
        config = TrialConfig(**ckpt["config"])
    except UserError as exc:
        raise _other_code(path, written_by, f"its config is refused here ({exc})") from None
    classes = [str(c) for c in ckpt["classes"]]
    try:
        model = build_kept(config, classes, ckpt["state_dict"])
    except RuntimeError as exc:  # load_state_dict: missing, unexpected or mis-shaped weights
        first = str(exc).strip().splitlines()
        raise _other_code(path, written_by, "its weights do not fit the model this code builds "
                          f"({' '.join(first[:2])[:300]})") from None
    return KeptModel(path, model, config, classes, written_by, ckpt.get("trial_id"))


def build_kept(config: TrialConfig, classes: list[str], state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """The trial's model with `state_dict` loaded, on the CPU in eval mode. A regime in which
    nothing of the model trains (the linear probe) keeps a `ProbeClassifier`."""
    model = build_model(config, len(classes), pretrained=False)
    if get_regime(config.regime).trains == "none":
        model = empty_probe(model, resolve(config.arch, config.weights), state_dict)
    model.load_state_dict(state_dict)
    return model.eval()


ABSENT_LOGIT = -1e9
"""The logit of a class the regression never saw: softmax gives it 0, as predict_proba does."""


def penultimate(model: nn.Module, arch: Arch) -> nn.Module:
    """image -> {"features": the input of the main head} (eval mode): the heads of `model` are
    swapped for nn.Identity (in place) and fx drops what follows the main one."""
    for path in arch.heads:
        set_submodule(model, path, nn.Identity())
    with warnings.catch_warnings():  # Inception: its train-mode graph has more nodes; eval is used
        warnings.filterwarnings("ignore", message="NOTE: The nodes obtained by tracing")
        return create_feature_extractor(model.eval(), return_nodes={arch.heads[0]: "features"}).eval()


class ProbeClassifier(nn.Module):
    """Normalised image batch -> logits of the linear probe (eval mode only)."""

    def __init__(self, backbone: nn.Module, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.linear = nn.Linear(num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)["features"]
        if features.ndim > 2:  # a feature map (SqueezeNet): global average pooling, as the probe
            features = features.mean(dim=tuple(range(2, features.ndim)))
        return self.linear(features.flatten(1))


def regression_linear(coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray,
                      num_classes: int, mean: np.ndarray | None = None,
                      scale: np.ndarray | None = None) -> nn.Linear:
    """A `Linear` on raw features whose softmax is the regression's predict_proba.

    coef (K', D) and intercept (K',) as scikit-learn holds them (K' = 1 for two classes),
    `classes` the label of each of the regression's classes (`clf.classes_`), mean/scale the
    `StandardScaler`'s (None: features not standardised)."""
    coef = np.asarray(coef, dtype=np.float64)
    intercept = np.asarray(intercept, dtype=np.float64)
    dim = coef.shape[1]
    mean = np.zeros(dim) if mean is None else np.asarray(mean, dtype=np.float64)
    scale = np.ones(dim) if scale is None else np.asarray(scale, dtype=np.float64)
    if len(classes) == 2 and coef.shape[0] == 1:  # binary: logits (0, d)
        coef = np.vstack([np.zeros(dim), coef[0]])
        intercept = np.array([0.0, intercept[0]])
    weight = coef / scale
    bias = intercept - weight @ mean
    full_w = np.zeros((num_classes, dim))
    full_b = np.full(num_classes, ABSENT_LOGIT)
    full_w[np.asarray(classes)] = weight
    full_b[np.asarray(classes)] = bias
    linear = nn.Linear(dim, num_classes)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(full_w))
        linear.bias.copy_(torch.from_numpy(full_b))
    return linear


def probe_classifier(model: nn.Module, arch: Arch, linear: nn.Linear) -> ProbeClassifier:
    """The kept module of a probe trial: `model` (the trial's built model; its heads are
    replaced in place) cut at its penultimate layer, then `linear`."""
    module = ProbeClassifier(penultimate(model, arch), linear.in_features, linear.out_features)
    module.linear = linear
    return module.eval()


def empty_probe(model: nn.Module, arch: Arch, state_dict: dict[str, torch.Tensor]
                ) -> ProbeClassifier:
    """A `ProbeClassifier` shaped to load `state_dict` (its `linear` sized from the file)."""
    out_features, in_features = state_dict["linear.weight"].shape
    return probe_classifier(model, arch, nn.Linear(in_features, out_features))


BEST = "best"
KEEP_HINT = ("keep models with `feature-reuse sweep ... --keep-models best` (the default) or "
             "`feature-reuse train ... --keep-model`")


@dataclass(frozen=True)
class Choice:
    """The model file to load, and its trial's row when it came from an experiment."""

    path: str
    row: dict[str, Any] | None


def _exists(path: str, kind: pafs.FileType) -> bool:
    fs, inner = resolve_storage(path)
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
    if "://" in experiment:  # an unreachable store: one error naming it, not the OSError
        check_storage("--experiment", experiment, write=False)
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
