"""The study's fixed configuration: the single source of truth for every trial setting.

`TrialConfig` is frozen. Presets are named sets of overrides; nothing else in the code base
writes a learning rate, epoch count or batch size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from trainables.errors import UserError

REGIMES: tuple[str, ...] = ("finetune", "feature_extract", "scratch")
"""finetune: pretrained, all parameters train. feature_extract: pretrained, only the new head(s)
train. scratch: random init (`weights=None`), all parameters train."""

BN_MODES: tuple[str, ...] = ("train", "frozen")
"""How BatchNorm behaves in feature extraction. "train" is the study's own behaviour (the whole
model in train mode, so running statistics move although no weight trains); "frozen" keeps the
backbone in eval mode, which also enables the cached-feature fast path."""

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TrialConfig:
    """Everything that defines one trial. Defaults are the study's fixed config."""

    arch: str
    regime: str
    seed: int = 0
    train_size: str = "all"
    """Training images kept per class: "all", an integer count ("20") or a fraction ("0.5")."""
    epochs: int = 30
    batch_size: int = 6
    lr: float = 0.001
    momentum: float = 0.9
    step_size: int = 7
    gamma: float = 0.1
    aux_loss_weight: float = 0.4
    """Inception v3's auxiliary-classifier loss weight (torchvision fine-tuning tutorial)."""
    input_size: int = 0
    """Crop size in pixels; 0 means the architecture's own (224, Inception 299)."""
    bn_mode: str = "train"
    # Fast paths: each can be switched off; none changes the experiment (see docs/performance.md).
    decode_once: bool = True
    cache_eval: bool = True
    feature_cache: bool = True
    """Only active for feature_extract with bn_mode="frozen": backbone features per draw."""
    channels_last: bool = False
    bf16: bool = False
    """bf16 autocast, honoured on CUDA only."""
    preset: str = "paper"

    def __post_init__(self) -> None:
        from trainables.models import ARCHS  # local: models imports torch, config must stay light

        problems = []
        if self.arch not in ARCHS:
            problems.append(f"--arch {self.arch!r} is unknown; choose from {', '.join(ARCHS)}")
        if self.regime not in REGIMES:
            problems.append(f"--regime {self.regime!r} is unknown; choose from {', '.join(REGIMES)}")
        if self.bn_mode not in BN_MODES:
            problems.append(f"bn_mode {self.bn_mode!r} is unknown; choose from {', '.join(BN_MODES)}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            problems.append(f"--seed must be a non-negative integer, got {self.seed!r}")
        for name in ("epochs", "batch_size", "step_size"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)!r}")
        try:
            parse_train_size(self.train_size)
        except UserError as exc:
            problems.append(str(exc))
        if problems:
            raise UserError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **changes: Any) -> TrialConfig:
        return dataclasses.replace(self, **changes)

    @property
    def pretrained(self) -> bool:
        return self.regime != "scratch"

    @property
    def uses_feature_cache(self) -> bool:
        return self.regime == "feature_extract" and self.bn_mode == "frozen" and self.feature_cache


def parse_train_size(value: str | int | float) -> int | float | None:
    """"all" -> None; "20" -> 20 images per class; "0.5" -> half of each class's train split."""
    text = str(value).strip().lower()
    if text in ("all", "", "none", "1.0"):
        return None
    try:
        if "." in text:
            frac = float(text)
            if not 0.0 < frac <= 1.0:
                raise ValueError
            return frac
        count = int(text)
        if count < 1:
            raise ValueError
        return count
    except ValueError:
        raise UserError(
            f"--train-sizes value {value!r} is invalid; use 'all', a whole number of images per "
            "class (e.g. 20) or a fraction in (0, 1] (e.g. 0.5)"
        ) from None


def trial_id(config: TrialConfig, manifest_hash: str) -> str:
    """A trial's identity: its config and the split it trains on. Same inputs, same id."""
    payload = json.dumps({"config": config.to_dict(), "manifest": manifest_hash}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Preset:
    """A named starting point: trial-config overrides plus the sweep's default grid."""

    name: str
    description: str
    overrides: dict[str, Any]
    archs: tuple[str, ...]
    regimes: tuple[str, ...] = REGIMES
    seeds: int = 1
    train_sizes: tuple[str, ...] = ("all",)
    pool_caps: dict[str, int] = field(default_factory=dict)
    """Per-class caps on the demo pool drawn from the embedded data."""
    cuts: str = ""
    """What this preset changes from the study, in words (printed by the CLIs)."""

    def trial(self, arch: str, regime: str, seed: int = 0, train_size: str = "all",
              **extra: Any) -> TrialConfig:
        return TrialConfig(arch=arch, regime=regime, seed=seed, train_size=str(train_size),
                           preset=self.name, **{**self.overrides, **extra})


STUDY_ARCHS: tuple[str, ...] = (
    "inception_v3", "densenet161", "resnet152", "resnet18", "vgg11_bn", "squeezenet1_0",
)

PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper",
        description="exactly the study: 30 epochs, SGD 0.001/0.9, StepLR 7/0.1, batch 6",
        overrides={},
        archs=STUDY_ARCHS,
        seeds=5,
        cuts="nothing: the study's fixed config",
    ),
    "demo": Preset(
        name="demo",
        description="the embedded default: mobilenet_v2 x 3 regimes x 3 seeds on 2 CPU cores",
        overrides={"epochs": 15, "input_size": 160},
        archs=("mobilenet_v2",),
        seeds=3,
        cuts=("epochs 30 -> 15 (StepLR step 7 kept: the LR still drops at epochs 7 and 14), "
              "crop 224 -> 160 px (eval resize 256 -> 183); everything else as in the study"),
    ),
    "smoke": Preset(
        name="smoke",
        description="seconds per trial, for tests: tiny crops, 2 epochs",
        overrides={"epochs": 2, "step_size": 1, "input_size": 64},
        archs=("mobilenet_v2",),
        seeds=1,
        cuts="epochs 30 -> 2, StepLR step 7 -> 1, crop 224 -> 64 px",
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"--preset {name!r} is unknown; choose from {', '.join(PRESETS)}") from None
