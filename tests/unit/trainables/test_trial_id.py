"""A trial's id is what can change its numbers: its grid point, the split, and exactly the
`TrialConfig` fields its regime reads (trainables.regimes)."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest

from trainables.config import TrialConfig, legacy_trial_id, trial_id, trial_id_of
from trainables.regimes import GRID_FIELDS, REGIMES, UNHASHED_FIELDS

CLASSIFY = ("classify it in trainables/regimes.py: add it to the group of the regimes that read it "
            "(INPUT_FIELDS, EVAL_SIZES, SGD_FIELDS, PROBE_FIELDS, or a regime's own `reads`), or "
            "to UNHASHED_FIELDS with why no trial reads it; then give it a changed value in "
            "CHANGED of tests/unit/trainables/test_trial_id.py")

CHANGED: dict[str, object] = {
    "arch": "resnet18", "regime": None, "seed": 3, "train_size": "5", "epochs": 4,
    "batch_size": 3, "lr": 0.01, "momentum": 0.5, "step_size": 2, "gamma": 0.5,
    "aux_loss_weight": 0.3, "crop_scale": 0.5, "train_crop": 96, "val_resize": 120,
    "val_crop": 100, "test_resize": 110, "test_crop": 100, "ood_resize": 110, "ood_crop": 100,
    "weights": "MobileNet_V2_Weights.IMAGENET1K_V2", "mean": (0.5, 0.5, 0.5),
    "std": (0.2, 0.2, 0.2), "interpolation": "bicubic", "bn_mode": "frozen",
    "select_on": "recall:ants", "backend": "tensor", "eval_batch_size": 16,
    "channels_last": True, "bf16": True, "tf32": True, "cudnn_benchmark": True,
    "deterministic": True, "probe_c_grid": (0.1, 1.0), "probe_standardize": False,
    "probe_max_iter": 50, "preset": "smoke", "subset_seed_policy": "split",
}
"""A valid value other than the base config's, per field (regime: changed separately)."""

FIELDS = [f.name for f in dataclasses.fields(TrialConfig)]


def base(regime: str) -> TrialConfig:
    return TrialConfig(arch="mobilenet_v2", regime=regime, seed=1, train_size="10", epochs=2)


def test_every_field_is_classified():
    read = set(GRID_FIELDS) | {f for r in REGIMES.values() for f in r.reads}
    unclassified = [f for f in FIELDS if f not in read and f not in UNHASHED_FIELDS]
    assert not unclassified, f"TrialConfig field(s) {unclassified} unclassified: {CLASSIFY}"
    both = sorted(read & set(UNHASHED_FIELDS))
    assert not both, f"{both}: read by a regime and also in UNHASHED_FIELDS; {CLASSIFY}"
    untested = [f for f in FIELDS if f not in CHANGED]
    assert not untested, f"no changed value for {untested}: {CLASSIFY}"


def with_field(config: TrialConfig, name: str, value: object) -> TrialConfig:
    """`config` with one field changed and nothing else (no defaults filled in again, and no
    refusal of weights a study entry does not load: the id reads fields only)."""
    changed = copy.copy(config)
    object.__setattr__(changed, name, value)
    return changed


@pytest.mark.parametrize("regime", list(REGIMES))
def test_the_id_changes_with_exactly_the_fields_the_regime_reads(regime):
    config = base(regime)
    before = trial_id(config, "m")
    reads = set(GRID_FIELDS) | set(REGIMES[regime].reads)
    wrong = []
    for name in FIELDS:
        if name == "regime":
            continue
        changed = with_field(config, name, CHANGED[name])
        assert getattr(changed, name) != getattr(config, name), name
        moved = trial_id(changed, "m") != before
        if moved != (name in reads):
            wrong.append(f"{name} ({'changes' if moved else 'leaves'} the id)")
    assert not wrong, f"{regime}: {', '.join(wrong)}"
    assert trial_id(config, "other split") != before


def test_regimes_get_distinct_ids_and_a_row_gives_back_its_id():
    ids = {trial_id(base(r), "m") for r in REGIMES}
    assert len(ids) == len(REGIMES)
    config = base("finetune")
    row = json.loads(config.to_json())
    assert trial_id_of(row, "m") == trial_id(config, "m")
    row.pop("probe_max_iter")  # a row written before the field existed: its default
    assert trial_id_of(row, "m") == trial_id(config, "m")


def test_the_legacy_id_hashes_every_field():
    config = base("finetune")
    assert legacy_trial_id(config, "m") != trial_id(config, "m")
    assert legacy_trial_id(config.replace(probe_max_iter=5), "m") != legacy_trial_id(config, "m")
