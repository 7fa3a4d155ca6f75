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
                  or for the linear probe `trainables.probe_module.ProbeClassifier`

The model is rebuilt from the config and the weights loaded into it; nothing is unpickled. Format
1 (before format 2 existed: config, classes and state_dict, never a linear probe) reads the same
way. A file of a format this code does not know, or whose config or weights do not fit the model
this code builds, is refused with both code versions named (the fix: rerun its trial with this
code); one that loads but came from another code version is used, and `KeptModel.note` says so.
"""

from __future__ import annotations

import dataclasses
import io
import posixpath
from dataclasses import dataclass

import torch
from torch import nn

from trainables.archs import resolve
from trainables.config import TrialConfig
from trainables.errors import UserError
from trainables.models import build_model
from trainables.probe_module import empty_probe
from trainables.provenance import code_version
from trainables.regimes import get_regime
from trainables.storage import join
from trainables.storage import resolve as resolve_storage

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
