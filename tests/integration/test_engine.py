"""The fixed-config loop: it learns, it is reproducible, it resumes exactly, it keeps the best."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import fit_on_pool
from trainables.data.folders import build_manifest
from trainables.data.manifest import DataRoots
from trainables.engine import FitState
from trainables.presets import PRESETS
from trainables.results import tables as results
from trainables.train import run_trial

SMOKE = PRESETS["smoke"]


@pytest.fixture
def colour_pool(make_pool):
    """Red vs blue noisy images: learnable in a couple of epochs."""
    pool = make_pool({"blue": 40, "red": 40})
    return pool, build_manifest(pool, split_seed=0)


def test_loop_learns_on_smoke_data(colour_pool, torch_home, tmp_path):
    """Three seeds, judged on their mean: one seed's best-val epoch can come early enough to
    miss a test image or four (16 per split), and which seed does depends on the CPU type."""
    pool, manifest = colour_pool
    rows = []
    for seed in range(3):
        config = SMOKE.trial("mobilenet_v2", "finetune", seed=seed, epochs=3, step_size=7)
        out = str(tmp_path / f"out{seed}")
        row = run_trial(config, manifest, DataRoots(str(pool)), out)
        epochs = results.read_table(out, "epochs").to_pylist()
        assert row["status"] == "ok"
        assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
        cm = json.loads(row["test_confusion_json"])
        assert [sum(r) for r in cm] == [8, 8], "confusion rows are true labels (8 test images each)"
        rows.append(row)
    assert sum(r["best_val_acc"] for r in rows) / 3 >= 0.9
    assert sum(r["test_acc"] for r in rows) / 3 >= 0.85
    assert min(r["test_acc"] for r in rows) >= 0.7  # chance is 0.5


def test_scratch_trains_every_parameter(small_pool, tmp_path):
    pool, manifest = small_pool
    config = SMOKE.trial("resnet18", "scratch", seed=0, epochs=1)
    out = str(tmp_path / "out")
    row = run_trial(config, manifest, DataRoots(str(pool)), out)
    assert row["trainable_params"] == row["total_params"] > 11_000_000
    # the one-class flag on the row agrees with the predictions it was computed from
    preds = results.read_table(out, "predictions").to_pandas()
    test = preds.loc[preds["split"] == "test", "pred_label"].value_counts()
    flagged = test.index[0] if test.iloc[0] >= 0.95 * test.sum() else None
    stored = results.read_table(out, "trials").to_pylist()[0]
    assert stored["one_class_test"] == row["one_class_test"] == flagged
    assert stored["one_class_ood"] is None  # no OOD set


def test_same_seed_identical_metrics_different_seed_not(small_pool, torch_home):
    pool, manifest = small_pool
    config = SMOKE.trial("mobilenet_v2", "feature_extract", seed=3, epochs=2)
    first, _ = fit_on_pool(config, manifest, pool)
    second, _ = fit_on_pool(config, manifest, pool)
    assert first.rows and [
        {k: v for k, v in r.items() if k != "seconds"} for r in first.rows] == [
        {k: v for k, v in r.items() if k != "seconds"} for r in second.rows]
    other, _ = fit_on_pool(config.replace(seed=4), manifest, pool)
    assert [r["train_loss"] for r in other.rows] != [r["train_loss"] for r in first.rows]


@pytest.mark.parametrize("bn_mode", ["train", "frozen"])
def test_resume_from_checkpoint_continues_exactly(small_pool, torch_home, bn_mode):
    """A trial resumed after epoch 1 produces the same epochs 2..3 as an uninterrupted one."""
    pool, manifest = small_pool
    config = SMOKE.trial("mobilenet_v2", "feature_extract", seed=1, epochs=3, bn_mode=bn_mode)
    saved: dict[int, dict] = {}

    def keep(row, state: FitState):
        import copy

        saved[row["epoch"]] = copy.deepcopy(state.to_dict())

    full, _ = fit_on_pool(config, manifest, pool, on_epoch=keep)
    resumed, _ = fit_on_pool(config, manifest, pool, state=FitState.from_dict(saved[1]))
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in full.rows]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.rows] == strip
    assert resumed.resumed_from_epoch == 1 and resumed.best_epoch == full.best_epoch


def test_best_epoch_is_earliest_maximum(small_pool, torch_home):
    pool, manifest = small_pool
    config = SMOKE.trial("mobilenet_v2", "feature_extract", seed=0, epochs=4)
    state, _ = fit_on_pool(config, manifest, pool)
    accs = [r["val_acc"] for r in state.rows]
    assert state.best_epoch == accs.index(max(accs)) + 1
    assert state.best_acc == max(accs)


def test_learning_rate_follows_steplr(small_pool, torch_home):
    pool, manifest = small_pool
    config = SMOKE.trial("mobilenet_v2", "feature_extract", seed=0, epochs=3, step_size=2)
    state, _ = fit_on_pool(config, manifest, pool)
    lrs = [r["lr"] for r in state.rows]
    assert lrs[0] == lrs[1] == pytest.approx(0.001) and lrs[2] == pytest.approx(0.0001)


def test_recall_selection_keeps_the_epoch_with_the_best_class_recall(small_pool, torch_home):
    """select_on=recall:<class> (the authors' code's option) picks on that class's val recall."""
    pool, manifest = small_pool
    config = SMOKE.trial("mobilenet_v2", "scratch", seed=2, epochs=4, select_on="recall:red")
    state, _ = fit_on_pool(config, manifest, pool)
    scores = [r["select_score"] for r in state.rows]
    assert state.best_epoch == scores.index(max(scores)) + 1
    assert state.best_score == max(scores)
    assert state.best_acc == state.rows[state.best_epoch - 1]["val_acc"]
    by_acc, _ = fit_on_pool(config.replace(select_on="val_acc"), manifest, pool)
    assert [r["select_score"] for r in by_acc.rows] == [r["val_acc"] for r in by_acc.rows]


def test_each_split_is_evaluated_with_its_own_transform(small_pool, tmp_path):
    """val at Resize(val_resize)/CenterCrop, test and OOD at their own sizes (the authors'
    protocol: 256/224 for validation, 224/224 for test): changing only test_resize changes only
    the test numbers."""
    pool, manifest = small_pool
    config = SMOKE.trial("resnet18", "scratch", seed=0, epochs=1)
    assert (config.val_resize, config.val_crop) == (73, 64)
    assert (config.test_resize, config.test_crop) == (64, 64)
    a = run_trial(config, manifest, DataRoots(str(pool)), str(tmp_path / "a"))
    b = run_trial(config.replace(test_resize=200), manifest, DataRoots(str(pool)), str(tmp_path / "b"))
    assert a["best_val_acc"] == b["best_val_acc"] and a["best_val_loss"] == b["best_val_loss"]
    probs = [results.read_table(str(tmp_path / x), "predictions").column("true_prob").to_pylist()
             for x in ("a", "b")]
    assert probs[0] != probs[1]
