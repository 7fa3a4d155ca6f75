"""The study's fixed configuration: the single source of truth for every trial setting.

`TrialConfig` is frozen and holds every setting that can change a trial's numbers: all of it is
written to each result row (`config_json`); the trial id hashes the grid point and the fields the
trial's regime reads (`trial_id`, `trainables.regimes.Regime.reads`). Nothing else (no
environment variable, no module global) decides how a trial computes. Presets (`trainables.presets`)
are named starting points; any field can be overridden from both CLIs (`--set KEY=VALUE`, or a
YAML file with `--config`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from trainables.arch_record import INTERPOLATIONS, Arch
from trainables.archs import ARCHS, arch_problem, resolve
from trainables.errors import UserError
from trainables.regimes import GRID_FIELDS, REGIMES

PROBE_C_GRID: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0,
                                   30.0, 100.0, 300.0, 1e3, 3e3, 1e4)
"""The linear probe's inverse L2 strengths (scikit-learn's C), log-spaced: two per decade over
eight decades, on standardised features. Fixed before looking at any result."""

BN_MODES: tuple[str, ...] = ("train", "frozen")
"""How BatchNorm behaves in feature extraction. "train" is the study's own behaviour (the whole
model in train mode, so running statistics move although no weight trains); "frozen" keeps the
backbone in eval mode, which also enables the cached-feature path (trainables/cached_features.py)."""

BACKENDS: tuple[str, ...] = ("pil", "tensor")
"""Where the image transforms run: "pil" (Pillow, torchvision.transforms v1: the study's own
operations, bit for bit) or "tensor" (torchvision.transforms.v2 kernels on uint8 tensors; resampling
differs from Pillow's by about a grey level, so numbers differ)."""

SUBSET_SEED_POLICIES: tuple[str, ...] = ("per_seed", "split")
"""Which training images a trial below train size "all" keeps (`TrialConfig.subset_seed`):
"per_seed" draws its own N-per-class subset from the split seed and the trial seed, so which
images were drawn is part of the seed noise; "split" draws one subset from the split seed for
every trial seed (what rows written before this field existed did; their ids are unchanged)."""
SUBSET_POLICY_FIELD = "subset_seed_policy"

SELECT_ON_ACCURACY = "val_acc"
SELECT_ON_RECALL = "recall:"
"""Model selection: the epoch kept is the best on validation accuracy (the paper), or with
"recall:<class>" the best validation recall (sensitivity) of that class (an option of the
authors' code). Ties: the earliest epoch."""

SIZE_FIELDS: tuple[str, ...] = ("train_crop", "val_resize", "val_crop", "test_resize", "test_crop",
                                "ood_resize", "ood_crop")
MAX_PIXELS = 2048
"""The largest crop or resize a setting may ask for (the study's are 224-299 px)."""
MAX_CROP_SCALE = 8.0
IDENTITY_FIELDS: tuple[str, ...] = ("arch", "regime", "seed", "train_size", "preset")
"""Set by the grid and the CLIs' own options, never by --set."""


@dataclass(frozen=True)
class TrialConfig:
    """Everything that defines one trial. Defaults are the study's fixed config."""

    arch: str
    regime: str
    seed: int = 0
    train_size: str = "all"
    """Training images kept per class: "all", an integer count ("20") or a fraction ("0.5")."""
    subset_seed_policy: str = "per_seed"
    """Below train size "all": "per_seed" (each seed its own training subset) or "split" (one
    subset for every seed), `SUBSET_SEED_POLICIES`."""
    epochs: int = 30
    batch_size: int = 6
    lr: float = 0.001
    momentum: float = 0.9
    step_size: int = 7
    gamma: float = 0.1
    aux_loss_weight: float = 0.4
    """Inception v3's auxiliary-classifier loss weight (torchvision fine-tuning tutorial)."""
    crop_scale: float = 1.0
    """Crops are the architecture's own size times this (never below what the model accepts)."""
    train_crop: int = 0
    """RandomResizedCrop size. This and the six eval sizes below: 0 means the study's protocol
    for the architecture at `crop_scale`, filled in at construction, so rows show the numbers."""
    val_resize: int = 0
    """Validation Resize (the authors' training scripts: 256 for a 224 crop; Inception 299)."""
    val_crop: int = 0
    test_resize: int = 0
    """Test Resize: the authors' test script resized to the crop itself (224/224; Inception 299)."""
    test_crop: int = 0
    ood_resize: int = 0
    ood_crop: int = 0
    weights: str = ""
    """The pretrained weights the transfer regimes load: a torchvision enum name
    ("ResNet18_Weights.IMAGENET1K_V1") or a timm pretrained tag ("convnext_atto.d2_in1k").
    "" means the architecture's (the registry's; a derived model's default weights)."""
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    """Input normalisation per channel; () means the weights' own (the study's: ImageNet's)."""
    interpolation: str = ""
    """Resampling of resize and random-resized crop: bilinear, bicubic or nearest; "" means the
    weights' own (the study's: bilinear). Mean, std, interpolation and the sizes above come from
    the weights' metadata in EVERY regime, scratch too, so all three regimes see the same inputs."""
    bn_mode: str = "train"
    select_on: str = SELECT_ON_ACCURACY
    backend: str = "pil"
    eval_batch_size: int = 8
    """Forward-only batch size (validation, test, OOD, cached features)."""
    channels_last: bool = False
    bf16: bool = False
    """bf16 autocast: CUDA GPUs of compute capability >= 8.0 only (refused elsewhere)."""
    tf32: bool = False
    """TF32 matmuls and convolutions on Ampere or newer GPUs (faster, ~1e-3 relative error)."""
    cudnn_benchmark: bool = False
    """cuDNN picks its fastest kernels per shape (faster; kernels, and so bits, may vary by run)."""
    deterministic: bool = False
    """torch.use_deterministic_algorithms(True) and deterministic cuDNN (slower on GPU)."""
    probe_c_grid: tuple[float, ...] = PROBE_C_GRID
    """linear_probe: the inverse L2 strengths tried (scikit-learn's C); the one with the best
    validation score is kept (ties: lower validation loss, then the smaller C)."""
    probe_standardize: bool = True
    """linear_probe: standardise each feature with the training split's mean and deviation."""
    probe_max_iter: int = 1000
    """linear_probe: L-BFGS iterations at most per fit."""
    preset: str = "paper"

    def __post_init__(self) -> None:
        for name in ("mean", "std"):  # JSON gives lists back
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "probe_c_grid", canonical_c_grid(self.probe_c_grid))
        problems = validate_fields(self)
        if problems:
            raise UserError("; ".join(problems))
        object.__setattr__(self, "train_size", canonical_train_size(self.train_size))
        arch = resolve(self.arch, self.weights)
        for name, value in {**default_sizes(self, arch), **default_inputs(arch)}.items():
            if not getattr(self, name):
                object.__setattr__(self, name, value)
        if self.train_crop < arch.min_input_size:
            raise UserError(f"train_crop {self.train_crop}: {self.arch} trains at "
                            f"{arch.min_input_size} px or more")
        if arch.max_input_size is not None:
            wrong = [f"{n} {getattr(self, n)}" for n in ("train_crop", "val_crop", "test_crop",
                                                         "ood_crop")
                     if getattr(self, n) != arch.max_input_size]
            if wrong:
                raise UserError(f"{', '.join(wrong)}: {self.arch} is built for "
                                f"{arch.max_input_size} px inputs only")
        if arch.size_kwarg is not None:  # built for one size: {size_kwarg} = train_crop
            wrong = [f"{n} {getattr(self, n)}" for n in ("val_crop", "test_crop", "ood_crop")
                     if getattr(self, n) != self.train_crop]
            if wrong:
                raise UserError(f"{', '.join(wrong)}: {self.arch} is built for one input size, "
                                f"its {arch.size_kwarg} = train_crop {self.train_crop}; set "
                                "train_crop alone: the other crops follow it")

    def to_dict(self) -> dict[str, Any]:
        """The fields by name. Each holds a scalar or a tuple of scalars, so this is
        dataclasses.asdict's result at a fifth of its cost (the sweep takes it twice per trial:
        the trial id, and the trial's Tune config)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **changes: Any) -> TrialConfig:
        return dataclasses.replace(self, **changes)

    @property
    def pretrained(self) -> bool:
        """The regime starts from ImageNet weights (trainables.regimes)."""
        return REGIMES[self.regime].pretrained

    @property
    def frozen_backbone(self) -> bool:
        """Only the heads train and the backbone stays in eval mode: the cached-feature path."""
        return REGIMES[self.regime].trains == "heads" and self.bn_mode == "frozen"

    @property
    def select_class(self) -> str | None:
        """The class whose validation recall selects the epoch, or None (accuracy)."""
        if self.select_on.startswith(SELECT_ON_RECALL):
            return self.select_on[len(SELECT_ON_RECALL):]
        return None

    def subset_seed(self, split_seed: int) -> int | None:
        """The seed of this trial's training subset (trainables.data.manifest.select_train):
        None at train size "all" (no subset is drawn); the split seed under policy "split";
        else a 32-bit number derived from the split seed and the trial seed (the same pair, the
        same subset; smaller sizes of one seed are prefixes of its permutation)."""
        if parse_train_size(self.train_size) is None:
            return None
        if self.subset_seed_policy == "split":
            return split_seed
        digest = hashlib.sha256(f"train-subset:{split_seed}:{self.seed}".encode()).digest()
        return int.from_bytes(digest[:4], "big")

    def eval_transform(self, split: str) -> tuple[int, int]:
        """(resize, crop) of the deterministic transform for "val", "test" or "ood": the split's
        own, or for a regime that sees every split through one (`Regime.eval_split`: the linear
        probe, the validation one) that one, here and in predict, export and Grad-CAM alike."""
        split = REGIMES[self.regime].eval_split or split
        return getattr(self, f"{split}_resize"), getattr(self, f"{split}_crop")


def default_inputs(arch: Arch) -> dict[str, object]:
    """The weights and their preprocessing (the registry's; a derived model's own metadata)."""
    return {"weights": arch.weights, "mean": tuple(arch.mean), "std": tuple(arch.std),
            "interpolation": arch.interpolation}


def default_sizes(config: TrialConfig, arch: Arch | None = None) -> dict[str, int]:
    """The study's crop and resize sizes for this architecture, scaled by `crop_scale`.

    Paper: train RandomResizedCrop(224); val Resize(256)/CenterCrop(224); test and OOD
    Resize(224)/CenterCrop(224) (the authors' test script); Inception v3 299 everywhere. A derived
    model gets the same protocol at its weights' crop and resize (e.g. 224 and 236)."""
    arch = arch or resolve(config.arch, config.weights)
    crop = config.train_crop or max(round(arch.input_size * config.crop_scale), arch.min_input_size)
    if arch.max_input_size is not None and not config.train_crop:
        crop = arch.max_input_size
    val_crop = config.val_crop or crop
    return {"train_crop": crop, "val_crop": val_crop,
            "val_resize": round(val_crop * arch.val_resize / arch.input_size),
            "test_crop": crop, "test_resize": config.test_crop or crop,
            "ood_crop": crop, "ood_resize": config.ood_crop or crop}


def validate_fields(config: TrialConfig) -> list[str]:
    """Every problem with a config's values, each naming the field and the valid choices."""
    problems = []
    if not isinstance(config.arch, str) or not config.arch:
        problems.append(f"--arch {config.arch!r} is unknown; choose from {', '.join(ARCHS)}, any "
                        "torchvision classifier or timm/<model>")
    else:
        problem = arch_problem(config.arch)
        if problem:
            problems.append(problem)
    if config.interpolation and config.interpolation not in INTERPOLATIONS:
        problems.append(f"interpolation {config.interpolation!r} is unknown; choose from "
                        f"{', '.join(INTERPOLATIONS)}")
    for name in ("mean", "std"):
        value = getattr(config, name)
        if value == ():
            continue
        if (not isinstance(value, tuple) or len(value) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           and math.isfinite(v) for v in value)
                or (name == "std" and min(value) <= 0)):
            problems.append(f"{name} must be three finite numbers (one per channel"
                            f"{', each above 0' if name == 'std' else ''}), got {value!r}")
    if config.regime not in REGIMES:
        problems.append(f"--regime {config.regime!r} is unknown; choose from {', '.join(REGIMES)}")
    for name, choices in (("bn_mode", BN_MODES), ("backend", BACKENDS),
                          (SUBSET_POLICY_FIELD, SUBSET_SEED_POLICIES)):
        if getattr(config, name) not in choices:
            problems.append(f"{name} {getattr(config, name)!r} is unknown; choose from "
                            f"{', '.join(choices)}")
    if config.select_on != SELECT_ON_ACCURACY and not (
            config.select_on.startswith(SELECT_ON_RECALL) and config.select_class):
        problems.append(f"select_on {config.select_on!r}: use {SELECT_ON_ACCURACY} or "
                        f"{SELECT_ON_RECALL}<class name>")
    if not isinstance(config.seed, int) or isinstance(config.seed, bool) or config.seed < 0:
        problems.append(f"--seed must be a non-negative integer, got {config.seed!r}")
    mistyped = set()
    for f in dataclasses.fields(TrialConfig):
        if f.name in ("seed", "train_size", "mean", "std"):
            continue  # checked above and below, with the CLI option's name or their own rule
        value = getattr(config, f.name)
        if f.type == "int" and (not isinstance(value, int) or isinstance(value, bool)):
            problems.append(f"{f.name} must be a whole number, got {value!r}")
        elif f.type == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                    or not math.isfinite(value)):
            problems.append(f"{f.name} must be a finite number, got {value!r}")
        elif f.type == "bool" and not isinstance(value, bool):
            problems.append(f"{f.name} must be true or false, got {value!r}")
        elif f.type == "tuple[float, ...]" and not (isinstance(value, tuple) and value and all(
                isinstance(v, float) and math.isfinite(v) and v > 0 for v in value)):
            problems.append(f"{f.name} must be one or more positive numbers, got {value!r}")
        else:
            continue
        mistyped.add(f.name)
    for name in ("epochs", "batch_size", "step_size", "eval_batch_size", "probe_max_iter"):
        if name not in mistyped and getattr(config, name) < 1:
            problems.append(f"{name} must be at least 1, got {getattr(config, name)!r}")
    for name in SIZE_FIELDS:
        if name not in mistyped and not 0 <= getattr(config, name) <= MAX_PIXELS:
            problems.append(f"{name} must be a number of pixels up to {MAX_PIXELS} (0: the "
                            f"study's), got {getattr(config, name)!r}")
    if "crop_scale" not in mistyped and config.crop_scale > MAX_CROP_SCALE:
        problems.append(f"crop_scale must be at most {MAX_CROP_SCALE:g} (crops of "
                        f"{MAX_CROP_SCALE:g} x the architecture's size), got {config.crop_scale!r}")
    for name in ("lr", "crop_scale"):
        if name not in mistyped and getattr(config, name) <= 0:
            problems.append(f"{name} must be positive, got {getattr(config, name)!r}")
    for name in ("momentum", "gamma", "aux_loss_weight"):
        if name not in mistyped and getattr(config, name) < 0:
            problems.append(f"{name} must be 0 or more, got {getattr(config, name)!r}")
    try:
        parse_train_size(config.train_size)
    except UserError as exc:
        problems.append(str(exc))
    return problems


def canonical_c_grid(value: Any) -> Any:
    """A C grid as a sorted tuple of distinct floats (from a tuple, a list, or "0.1,1 10");
    anything unreadable comes back as it was, for `validate_fields` to name."""
    if isinstance(value, str):
        items: list[Any] = value.replace(",", " ").split()
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        return value
    if any(isinstance(v, bool) for v in items):
        return value
    try:
        return tuple(sorted({float(v) for v in items}))
    except (TypeError, ValueError):
        return value


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


def canonical_train_size(value: str | int | float) -> str:
    """One spelling per train size, so "ALL", "all", "0.5", ".5", "02" and "2" give one trial id."""
    size = parse_train_size(value)
    return "all" if size is None else repr(size)


def identity_fields(regime: str) -> tuple[str, ...]:
    """The fields a trial of `regime` is identified by: its grid point and what the regime reads
    (trainables.regimes: `Regime.reads`); a regime the table does not know: every field."""
    if regime not in REGIMES:
        return tuple(f.name for f in dataclasses.fields(TrialConfig))
    return tuple(dict.fromkeys(GRID_FIELDS + REGIMES[regime].reads))


def trial_id_of(fields: dict[str, Any], manifest_hash: str) -> str:
    """`trial_id` of a config as a dict of fields (a row's config_json); a field the dict lacks
    (a row written before the field existed) counts as its default, except `subset_seed_policy`:
    such rows drew the split's one subset ("split"). The policy counts only where it draws a subset
    of its own (below train size "all", policy "per_seed"): elsewhere it changes nothing."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrialConfig)}
    defaults[SUBSET_POLICY_FIELD] = "split"  # rows from before per-seed subsets drew the split's
    picked = {name: fields.get(name, defaults.get(name))
              for name in identity_fields(str(fields.get("regime")))}
    policy = picked.get(SUBSET_POLICY_FIELD)
    if policy == "split" or parse_train_size(str(picked.get("train_size", "all"))) is None:
        picked.pop(SUBSET_POLICY_FIELD, None)  # no subset of its own: the policy changes nothing
    payload = json.dumps({"config": picked, "manifest": manifest_hash}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def trial_id(config: TrialConfig, manifest_hash: str) -> str:
    """A trial's identity: its grid point, the fields its regime reads, and the split it trains
    on. Same inputs, same id; a setting the regime never reads leaves it alone."""
    return trial_id_of(json.loads(config.to_json()), manifest_hash)


def legacy_trial_id(config: TrialConfig, manifest_hash: str) -> str:
    """The id results written before identity followed the regime's reads carry (every field
    hashed; `subset_seed_policy` only where it draws a subset of its own). The sweep recomputes
    ids from rows' config_json (`trial_id_of`), so such rows stay finished without being rerun or
    rewritten."""
    fields = config.to_dict()
    if config.subset_seed_policy == "split" or parse_train_size(config.train_size) is None:
        del fields[SUBSET_POLICY_FIELD]
    payload = json.dumps({"config": fields, "manifest": manifest_hash}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
