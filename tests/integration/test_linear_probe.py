"""The linear probe with the real MobileNetV2 ImageNet weights on the embedded demo photos:
a sensible classifier, the same numbers again, and its regularisation chosen on validation only."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import PROJECT_ROOT
from trainables.data.dataset import DecodedSplit, load_trial_data
from trainables.data.demo import prepare_data
from trainables.linear_probe import fit_probe
from trainables.presets import PRESETS
from trainables.results import tables as results
from trainables.train import main

CPU = torch.device("cpu")
SMOKE = PRESETS["smoke"].trial("mobilenet_v2", "linear_probe")


@pytest.fixture(scope="module")
def demo(torch_home):
    """The embedded demo split, decoded once for the module."""
    roots, manifest = prepare_data()
    return load_trial_data(manifest, roots, "all")


def _flipped(split: DecodedSplit) -> DecodedSplit:
    return dataclasses.replace(split, labels=1 - split.labels)


def test_real_weights_give_a_sensible_probe_on_the_demo_data(torch_home, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--arch", "mobilenet_v2", "--regime", "linear_probe", "--preset", "demo",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "regimes outside the study: linear_probe" in printed and "of 17 tried" in printed
    row = results.read_table(str(out), "trials").to_pylist()[0]
    assert row["status"] == "ok" and row["regime"] == "linear_probe"
    # chance is 57% (the larger class); ImageNet features separate ants from bees
    assert row["best_val_acc"] >= 0.85 and row["test_acc"] >= 0.85 and row["ood_acc"] >= 0.7
    # trainable: the regression only, 1280 MobileNetV2 features + 1 intercept (binary logistic)
    assert row["trainable_params"] == 1281
    assert row["total_params"] == 2_223_872 + 1281, "backbone without its ImageNet head"
    assert row["probe_c"] in PRESETS["demo"].trial("mobilenet_v2", "linear_probe").probe_c_grid
    assert row["epochs"] == row["best_epoch"] == 1 and row["model_path"] is None
    curve = json.loads(row["probe_grid_json"])
    assert len(curve["c"]) == len(curve["val_acc"]) == 17 and all(curve["converged"])
    assert curve["c"][curve["kept"]] == row["probe_c"]
    assert curve["val_acc"][curve["kept"]] == row["best_val_acc"] == max(curve["val_acc"])
    assert sum(curve["val_correct"]) == round(row["best_val_acc"] * curve["val_images"])
    epochs = results.read_table(str(out), "epochs").to_pylist()
    assert len(epochs) == 1 and epochs[0]["lr"] is None
    assert epochs[0]["val_acc"] == row["best_val_acc"]
    preds = results.read_table(str(out), "predictions").to_pandas()
    assert sorted(preds["split"].value_counts().items()) == [("ood", 168), ("test", 46)]
    assert preds["prob"].between(0.5, 1.0).all()
    assert abs(preds[preds["split"] == "test"]["correct"].mean() - row["test_acc"]) < 1e-12


def test_same_seed_same_numbers_and_the_seed_changes_nothing(demo):
    first = fit_probe(SMOKE, demo, CPU)
    again = fit_probe(SMOKE, demo, CPU)
    other_seed = fit_probe(SMOKE.replace(seed=7), demo, CPU)
    assert first.row == again.row == other_seed.row
    probs = [f.evaluate(demo.test, "test").probs for f in (first, again, other_seed)]
    assert torch.equal(probs[0], probs[1]) and torch.equal(probs[0], probs[2])


def test_every_split_is_seen_through_the_validation_transform(demo):
    """Training, validation, test and OOD features come from the one validation transform, so
    the per-split test/OOD resize and crop (which the SGD regimes use) change nothing, and the
    validation images scored as "test" get the validation accuracy the choice saw."""
    base = fit_probe(SMOKE, demo, CPU)
    val_resize, val_crop = SMOKE.eval_transform("val")
    assert json.loads(base.row["probe_grid_json"])["transform"] == {
        "split": "val", "resize": val_resize, "crop": val_crop}
    zoomed = SMOKE.replace(test_resize=2 * val_resize, test_crop=val_crop + 16,
                           ood_resize=2 * val_resize, ood_crop=val_crop + 16)
    other = fit_probe(zoomed, demo, CPU)
    for split, name in ((demo.test, "test"), (demo.ood, "ood")):
        assert torch.equal(base.evaluate(split, name).probs, other.evaluate(split, name).probs)
    assert base.evaluate(demo.val, "test").acc == base.state.best_acc


def test_regularisation_is_chosen_on_validation_only(demo):
    """Test and OOD labels (and images) cannot move the choice; validation data does."""
    base = fit_probe(SMOKE, demo, CPU)
    flipped = dataclasses.replace(demo, test=_flipped(demo.test), ood=_flipped(demo.ood))
    with_flipped = fit_probe(SMOKE, flipped, CPU)
    assert with_flipped.row == base.row, "the kept C and the whole grid curve are unchanged"
    test = base.evaluate(demo.test, "test").acc
    assert with_flipped.evaluate(flipped.test, "test").acc == pytest.approx(1 - test)
    # the same check can fail: put the test split where validation goes and the choice moves
    as_val = fit_probe(SMOKE, dataclasses.replace(demo, val=demo.test), CPU)
    assert json.loads(as_val.row["probe_grid_json"])["val_acc"] != \
        json.loads(base.row["probe_grid_json"])["val_acc"]


@pytest.mark.slow
def test_trial_speed_times_the_probe_against_the_studys_feature_extraction(torch_home, tmp_path):
    """bench/trial_speed.py: a regime without SGD epochs is timed against the study-style loop
    of the regime it stands in for (docs/linear_probe.md, "Speed")."""
    import statistics

    out = tmp_path / "speed.json"
    proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "bench" / "trial_speed.py"),
                           "--preset", "smoke", "--archs", "mobilenet_v2", "--regimes", "linear_probe",
                           "--epochs", "2", "--input-size", "64", "--seeds", "2", "--interleave",
                           "trial", "--no-warmup", "--json", str(out)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    runs = {(r["variant"], r["seed"]): r for r in report["runs"]}
    assert sorted(runs) == [("baseline", 0), ("baseline", 1), ("project", 0), ("project", 1)]
    assert all(r["seconds"] > 0 and not r["random_weights"] for r in runs.values())
    assert [len(runs["baseline", s]["step_seconds"]) for s in (0, 1)] == [3, 3]  # 2 epochs + test
    ratio = statistics.median(runs["baseline", s]["seconds"] / runs["project", s]["seconds"] for s in (0, 1))
    (row,) = report["speed_table"][1:]
    assert row.split()[:3] == ["mobilenet_v2", "linear_probe", "project"] and f"{ratio:5.2f}x" in row
    assert row.endswith("ImageNet")


@pytest.mark.slow
def test_triage_mechanics_labels_random_weights(torch_home):
    proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "bench" / "triage_mechanics.py"),
                           "--archs", "mobilenet_v2", "squeezenet1_0", "--preset", "smoke"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranking = proc.stdout[proc.stdout.index("triage ranking"):]
    assert "squeezenet1_0 (RANDOM WEIGHTS)" in ranking and "mobilenet_v2  " in ranking
    assert "mobilenet_v2 (RANDOM" not in ranking
