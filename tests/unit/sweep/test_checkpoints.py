"""What a trial checkpoint holds (sweep/checkpoints.py): only what training changes, written by
time and after the last epoch; a checkpoint from other ImageNet weights is refused."""

from __future__ import annotations

import copy
import json
import logging
from types import SimpleNamespace

import pytest
import torch
from ray import tune

from sweep.checkpoints import (
    STATE_FILE,
    ResumePointers,
    checkpoint_due,
    checkpoint_payload,
    forget_finished,
    free_orphan_checkpoints,
    load_state,
    pointer_ids,
    state_from_payload,
    write_checkpoint,
)
from sweep.layout import Experiment
from trainables.engine import FitState, frozen_state_keys
from trainables.models import build_model
from trainables.presets import get_preset


def test_checkpoint_due_by_time_and_after_the_last_epoch():
    assert not checkpoint_due(3, 30, seconds_since_last=299.0, every_s=300.0)
    assert checkpoint_due(3, 30, seconds_since_last=300.0, every_s=300.0)
    assert checkpoint_due(30, 30, seconds_since_last=1.0, every_s=300.0)  # the end: always
    assert all(checkpoint_due(e, 30, 0.0, 0.0) for e in range(1, 31))  # 0: every epoch


def _state(arch: str, regime: str, bn_mode: str = "train") -> tuple[torch.nn.Module, FitState]:
    config = get_preset("paper").trial(arch, regime, 0, "all", bn_mode=bn_mode)
    torch.manual_seed(0)
    model = build_model(config, 2, pretrained=False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    model.train()
    torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 64, 64)), torch.tensor([0, 1])).backward()
    optimizer.step()
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state = FitState(epoch=2, best_epoch=1, best_state=weights, model_state=copy.deepcopy(weights),
                     optimizer_state=copy.deepcopy(optimizer.state_dict()),
                     frozen_keys=frozen_state_keys(model, config))
    return model, state


def test_fine_tuning_checkpoints_everything_and_the_best_weights_once():
    model, state = _state("resnet18", "finetune")
    payload = checkpoint_payload(state, "t0", "resnet18-f37072fd.pth")
    assert state.frozen_keys == [] and payload["weights_file"] is None
    assert payload["state"]["model_state"].keys() == model.state_dict().keys()
    assert not payload["best_is_current"]
    assert payload["state"]["best_state"].keys() == model.state_dict().keys()
    # the best epoch is this epoch: its weights are stored once and come back as both
    state.epoch = state.best_epoch
    payload = checkpoint_payload(state, "t0", None)
    assert payload["best_is_current"] and payload["state"]["best_state"] is None
    back = state_from_payload(payload)
    assert all(torch.equal(back.best_state[k], state.best_state[k]) for k in state.best_state)


@pytest.mark.parametrize("bn_mode", ["train", "frozen"])
def test_feature_extraction_leaves_the_frozen_backbone_out(bn_mode):
    model, state = _state("resnet18", "feature_extract", bn_mode)
    payload = checkpoint_payload(state, "t0", "resnet18-f37072fd.pth")
    kept = set(payload["state"]["model_state"])
    assert payload["weights_file"] == "resnet18-f37072fd.pth"
    assert {"fc.weight", "fc.bias"} <= kept
    assert "conv1.weight" not in kept and "layer4.1.bn2.weight" not in kept
    stats = {k for k in model.state_dict()
             if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    # BatchNorm statistics only when they move
    assert stats & kept == (stats if bn_mode == "train" else set())
    assert set(payload["state"]["best_state"]) == kept
    full = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    saved = sum(v.numel() * v.element_size() for v in payload["state"]["model_state"].values())
    assert saved < full / 100


def test_a_partial_state_is_completed_from_the_model_and_must_match_it():
    model, state = _state("resnet18", "feature_extract")
    payload = checkpoint_payload(state, "t0", "w.pth")
    resumed = FitState.from_dict(copy.deepcopy(payload["state"]))
    resumed.fill_frozen(model)
    full = model.state_dict()
    assert resumed.model_state.keys() == full.keys()
    assert all(torch.equal(resumed.model_state[k], full[k]) for k in full)
    broken = FitState.from_dict(copy.deepcopy(payload["state"]))
    broken.frozen_keys = []  # the model does not say these may be missing
    with pytest.raises(ValueError, match="does not match the model"):
        broken.fill_frozen(model)


def test_load_state_refuses_another_trial_or_other_weights(tmp_path):
    _, state = _state("resnet18", "feature_extract")
    write_checkpoint(tmp_path, checkpoint_payload(state, "t0", "resnet18-f37072fd.pth"))
    checkpoint = tune.Checkpoint.from_directory(str(tmp_path))
    assert load_state(checkpoint, "t0", "resnet18-f37072fd.pth").epoch == 2
    assert load_state(checkpoint, "t1", "resnet18-f37072fd.pth") is None
    assert load_state(checkpoint, "t0", "resnet18-other.pth") is None


def test_finished_trials_lose_their_pointer_and_checkpoint_and_orphans_go(tmp_path):
    """One listing of resume/ finds the pointers; a finished trial's pointer and the checkpoint
    it names go, an unfinished trial's stay; a checkpoint no pointer names goes too."""
    exp = Experiment(str(tmp_path / "exp"))
    ray_dir = tmp_path / "exp" / "ray"
    checkpoints = {}
    for tid in ("done", "running", "orphan"):
        checkpoints[tid] = ray_dir / f"trial-{tid}" / "checkpoint_000001"
        checkpoints[tid].mkdir(parents=True)
    (tmp_path / "exp" / "resume").mkdir()
    for tid in ("done", "running"):
        (tmp_path / "exp" / "resume" / f"{tid}.json").write_text(
            json.dumps({"path": str(checkpoints[tid])}))
    assert pointer_ids(exp) == {"done", "running"}
    assert forget_finished(exp, ["done", "never-checkpointed"]) == 1
    assert pointer_ids(exp) == {"running"} and not checkpoints["done"].exists()
    assert free_orphan_checkpoints(exp) == 1
    assert checkpoints["running"].exists() and not checkpoints["orphan"].exists()
    assert pointer_ids(Experiment(str(tmp_path / "elsewhere"))) == set()


@pytest.fixture
def written(tmp_path):
    """A checkpoint folder as report_epoch writes it (before Ray uploads it)."""
    _, state = _state("resnet18", "scratch")
    folder = tmp_path / "checkpoint_000001"
    folder.mkdir()
    write_checkpoint(folder, checkpoint_payload(state, "t0", None))
    return folder


@pytest.mark.parametrize("damage", ["truncated", "changed", "no_check_file"])
def test_an_incomplete_checkpoint_is_named_and_discarded_and_the_trial_says_it_restarts(
        damage, written, caplog):
    """An upload whose close() failed leaves a short file; a changed byte keeps the size (torch
    would load it); a missing check file: the upload stopped before it."""
    state_file = written / STATE_FILE
    data = bytearray(state_file.read_bytes())
    if damage == "truncated":
        state_file.write_bytes(data[: len(data) // 2])
    elif damage == "changed":
        data[len(data) // 2] ^= 0xFF
        state_file.write_bytes(bytes(data))
    else:
        (written / "fit_state.json").unlink()
    with caplog.at_level(logging.WARNING, logger="sweep.checkpoints"):
        assert load_state(tune.Checkpoint(str(written)), "t0", None) is None
    message = caplog.text
    assert str(written) in message and "incomplete" in message, message
    assert "restarts from its first epoch" in message, message


def test_the_driver_records_no_resume_pointer_for_an_incomplete_checkpoint(written, tmp_path,
                                                                          caplog):
    exp = Experiment(str(tmp_path / "exp"))
    trial = SimpleNamespace(config={"point": {"trial_id": "t0"}})
    pointers = ResumePointers(exp)
    pointers.on_checkpoint(1, [], trial, tune.Checkpoint(str(written)))
    assert json.loads((tmp_path / "exp" / "resume" / "t0.json").read_text())["path"] == str(written)
    later = tmp_path / "checkpoint_000002"
    later.mkdir()
    for name in (STATE_FILE, "fit_state.json"):
        (later / name).write_bytes((written / name).read_bytes())
    (later / STATE_FILE).write_bytes((written / STATE_FILE).read_bytes()[:1000])  # close failed
    with caplog.at_level(logging.WARNING, logger="sweep.checkpoints"):
        pointers.on_checkpoint(2, [], trial, tune.Checkpoint(str(later)))
    assert json.loads((tmp_path / "exp" / "resume" / "t0.json").read_text())["path"] == str(written)
    assert written.exists() and not later.exists(), "the complete one stays, the incomplete goes"
    assert str(later) in caplog.text and "incomplete" in caplog.text
