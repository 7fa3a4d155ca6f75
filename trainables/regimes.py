"""The regime table, as data: one record per regime, no torch imports.

Every fact about a regime lives in its record and is read from here: whether it starts from
ImageNet weights, what trains, how it fits, whether its seed matters, what it costs per training
image, how figures draw it and what the report calls it, and which `TrialConfig` fields it reads.

Adding a regime is one record below plus its fit function (`fit`, "module:function", with the
signature of `trainables.engine.fit_sgd`); docs/regimes.md walks through it. An unknown name is
refused by name (`get_regime`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trainables.errors import UserError

TRAINS: tuple[str, ...] = ("all", "heads", "none")
"""What SGD updates: every parameter, only the new head(s), or nothing in the model (the linear
probe fits a logistic regression on the model's features instead)."""

INPUT_FIELDS: tuple[str, ...] = ("subset_seed_policy", "weights", "mean", "std", "interpolation",
                                 "crop_scale", "backend", "eval_batch_size", "channels_last", "bf16", "tf32",
                                 "cudnn_benchmark", "deterministic")
"""Fields every regime reads: which training images it keeps below train size "all"
(`subset_seed_policy`; trainables.config.trial_id leaves it out at "all", where no subset is
drawn), the model's weights and input pipeline, and the device settings that can change a
forward pass's bits."""
EVAL_SIZES: tuple[str, ...] = ("val_resize", "val_crop", "test_resize", "test_crop", "ood_resize",
                               "ood_crop")
SGD_FIELDS: tuple[str, ...] = ("epochs", "batch_size", "lr", "momentum", "step_size", "gamma",
                               "aux_loss_weight", "train_crop", "select_on")
"""The SGD loop's fields (trainables.engine): schedule, batch, augmentation crop, epoch choice."""
PROBE_SIZES: tuple[str, ...] = ("val_resize", "val_crop")
"""The linear probe sees every split through the validation transform (trainables/linear_probe.py)."""
PROBE_FIELDS: tuple[str, ...] = ("probe_c_grid", "probe_standardize", "probe_max_iter", "select_on")
GRID_FIELDS: tuple[str, ...] = ("arch", "regime", "seed", "train_size")
"""The grid point: hashed into every trial id (with the split's hash)."""
UNHASHED_FIELDS: dict[str, str] = {
    "preset": "names the starting point a run came from; its settings are the fields themselves",
}
"""Fields no trial reads, with why: kept on each row (config_json), never in the trial id. A
speed-only setting proven bit-identical (tests/integration/test_equivalence.py) goes here too.

Every `TrialConfig` field is in GRID_FIELDS, in some regime's `reads` or here
(tests/unit/trainables/test_trial_id.py checks it): a trial's id (`trainables.config.trial_id`)
is what can change its numbers, so changing a setting one regime never reads (probe_max_iter for
fine-tuning) reuses that regime's finished trials."""


@dataclass(frozen=True)
class Regime:
    name: str
    label: str
    """How the report and figures name it ("Fine-tune")."""
    short: str
    """Two letters for crowded plots ("FT")."""
    marker: str
    """matplotlib marker of its points."""
    colour: str
    pretrained: bool
    """Starts from the architecture's ImageNet weights (False: random init)."""
    trains: str
    """"all", "heads" or "none" (`TRAINS`): which parameters SGD updates."""
    fit: str
    """"module:function" that fits a trial of this regime (imported when a trial runs)."""
    reads: tuple[str, ...]
    """The `TrialConfig` fields this regime reads besides its grid point (arch, regime, seed,
    train size): what can change its numbers."""
    seedless: bool = False
    """The seed changes nothing (no random init, shuffling, augmentation or dropout): the sweep
    runs it with seed 0 only, whatever --seeds says."""
    passes_per_image: float = 3.0
    """Forward-pass equivalents per training image per epoch, for the cost model (forward +
    backward as far as it reaches: 3 when everything trains, 1 when only the head does)."""
    uses_epochs: bool = True
    """Trains for `epochs` passes (False: one pass over every image, as the probe's features)."""
    eval_split: str = ""
    """The eval transform every split is seen through ("val": the linear probe, which has no
    augmentation and is scored through the lens it was fitted through); "" each split its own
    (the study's per-split transforms). `TrialConfig.eval_transform` reads it."""
    legacy_rows: bool = True
    """Its rows written before trial ids followed `reads` (their stored id hashes every field)
    still count as finished (sweep.preflight.stored_ids). False when its computation changed in
    that same release, so that such rows run again: the linear probe then moved to one eval
    transform for every split."""
    in_study: bool = True
    """One of the study's three regimes."""
    transfer: bool = False
    """Counts as "with transfer" in Table II, the answer and the claims (the study's fine-tune and
    feature extraction; never the linear probe, whose C is chosen on the validation images the
    choice between regimes would use)."""
    description: str = ""

    def fit_function(self) -> Callable[..., Any]:
        module, _, function = self.fit.partition(":")
        return getattr(importlib.import_module(module), function)


REGIMES: dict[str, Regime] = {}


def register(regime: Regime) -> Regime:
    if regime.trains not in TRAINS:
        raise ValueError(f"regime {regime.name}: trains {regime.trains!r} is not one of {TRAINS}")
    REGIMES[regime.name] = regime
    return regime


FINETUNE = register(Regime(
    "finetune", "Fine-tune", "FT", "s", "#1f5fa8", pretrained=True, trains="all",
    fit="trainables.engine:fit_sgd", reads=INPUT_FIELDS + EVAL_SIZES + SGD_FIELDS, transfer=True,
    description="pretrained, every parameter trains")).name
FEATURE_EXTRACT = register(Regime(
    "feature_extract", "Feature extraction", "FE", "x", "#d9781a", pretrained=True, trains="heads",
    fit="trainables.engine:fit_sgd", reads=INPUT_FIELDS + EVAL_SIZES + SGD_FIELDS + ("bn_mode",),
    passes_per_image=1.0, transfer=True,
    description="pretrained, only the new head(s) train (SGD, the whole model in train mode "
                "unless bn_mode is frozen)")).name
SCRATCH = register(Regime(
    "scratch", "From scratch", "SC", "o", "#3a8f3a", pretrained=False, trains="all",
    fit="trainables.engine:fit_sgd", reads=INPUT_FIELDS + EVAL_SIZES + SGD_FIELDS,
    description="random init (weights=None), every parameter trains")).name
LINEAR_PROBE = register(Regime(
    "linear_probe", "Linear probe", "LP", "^", "#7b3fa0", pretrained=True, trains="none",
    fit="trainables.linear_probe:fit_probe", reads=INPUT_FIELDS + PROBE_SIZES + PROBE_FIELDS,
    seedless=True, passes_per_image=1.0, uses_epochs=False, eval_split="val", legacy_rows=False,
    in_study=False,
    description="the pretrained backbone's features once per image, then an L2-regularised "
                "logistic regression with C chosen on validation (docs/linear_probe.md)")).name

STUDY_REGIMES: tuple[str, ...] = tuple(r.name for r in REGIMES.values() if r.in_study)
TRANSFER_REGIMES: tuple[str, ...] = tuple(r.name for r in REGIMES.values() if r.transfer)


def get_regime(name: str) -> Regime:
    try:
        return REGIMES[name]
    except KeyError:
        raise UserError(f"--regime {name!r} is unknown; choose from {', '.join(REGIMES)}") from None


def regime_record(name: str) -> Regime:
    """The table's record, or a grey placeholder for a name the table does not know (results of a
    regime since removed, or external logs): labelled with the name itself."""
    if name in REGIMES:
        return REGIMES[name]
    return Regime(name, name, name[:2].upper(), "D", "#555555", pretrained=False, trains="all",
                  fit="", reads=(), in_study=False)


def regime_label(name: str) -> str:
    """The regime's label, or the name itself for one the table does not know."""
    return regime_record(name).label


def regime_order(names: Any) -> list[str]:
    """The names present, in the table's order; unknown ones after, alphabetically."""
    present = list(dict.fromkeys(names))
    return [r for r in REGIMES if r in present] + sorted(r for r in present if r not in REGIMES)
