"""A trial resumed from a checkpoint as the sweep writes it (sweep/checkpoints.py: frozen
backbone left out, serialised and read back) continues bit for bit like an uninterrupted one."""

from __future__ import annotations

import io

import pytest
import torch

from sweep.checkpoints import checkpoint_payload, state_from_payload
from tests.integration.conftest import fit_on_pool
from trainables.archs import ARCHS
from trainables.engine import FitState
from trainables.presets import PRESETS
from trainables.weights import weights_file

SMOKE = PRESETS["smoke"]


def _round_trip(payload: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    buffer.seek(0)
    return torch.load(buffer, map_location="cpu", weights_only=False)


@pytest.mark.parametrize(("regime", "bn_mode"), [("feature_extract", "train"),
                                                 ("feature_extract", "frozen"),
                                                 ("finetune", "train")])
def test_resume_from_a_checkpoint_without_the_backbone_is_exact(small_pool, torch_home, regime, bn_mode):
    pool, manifest = small_pool
    config = SMOKE.trial("mobilenet_v2", regime, seed=1, epochs=3, bn_mode=bn_mode)
    weights = weights_file(ARCHS["mobilenet_v2"])
    saved: dict[int, dict] = {}
    sizes: dict[int, int] = {}

    def keep(row, state: FitState):
        payload = checkpoint_payload(state, "t", weights)
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        sizes[row["epoch"]] = buffer.tell()
        saved[row["epoch"]] = _round_trip(payload)

    full, full_model = fit_on_pool(config, manifest, pool, on_epoch=keep)
    resumed, resumed_model = fit_on_pool(config, manifest, pool, state=state_from_payload(saved[1]))
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in full.rows]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.rows] == strip
    assert resumed.resumed_from_epoch == 1 and resumed.best_epoch == full.best_epoch
    assert resumed.best_state.keys() == full.best_state.keys() == full_model.state_dict().keys()
    assert all(torch.equal(resumed.best_state[k], full.best_state[k]) for k in full.best_state)
    whole = sum(v.numel() * v.element_size() for v in full_model.state_dict().values())
    if regime == "feature_extract":
        assert sizes[1] < whole / 10, "the frozen backbone must stay out of the checkpoint"
    else:  # weights and momentum (epoch 1 is the best so far: its weights are stored once)
        assert 1.8 * whole < sizes[1] < 2.1 * whole
