"""Fixtures the integration tests share: a small two-class pool, and one trial's fit over it
(the sweep CLI in this process, `sweep_main`, is in tests/conftest.py)."""

from __future__ import annotations

import pytest

from trainables.dataset import load_trial_data
from trainables.device import select_device
from trainables.engine import fit, seed_everything
from trainables.folders import build_manifest
from trainables.manifest import DataRoots
from trainables.models import arch_of, build_model


@pytest.fixture
def small_pool(make_pool):
    """Enough images for reproducibility checks, few enough to keep them fast."""
    pool = make_pool({"blue": 10, "red": 10})
    return pool, build_manifest(pool, split_seed=0)


def fit_on_pool(config, manifest, pool, state=None, on_epoch=None):
    """(FitState, model) of one trial's training on `pool`, on this machine's device."""
    data = load_trial_data(manifest, DataRoots(str(pool)), config.train_size)
    seed_everything(config.seed)
    model = build_model(config, len(data.classes))
    return fit(model, arch_of(config), config, data, select_device(None), state, on_epoch), model
