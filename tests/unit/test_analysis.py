"""Analysis on synthetic Parquet results with known answers: Table II, OOD labels, failed
trials, one-class models, the best-model rule, and the report CLI's errors (bands:
test_bands.py; claims: test_claims.py; comparisons and the answer: test_answer.py).

`tests.synthetic.write_synthetic_trial` writes a trial through trainables.results (the real
schema and writer), so these tests read exactly what a sweep would leave behind."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis import aggregate, tables
from analysis import claims as claims_mod
from analysis.effects import Correctness
from analysis.load import ANTS_BEES_CAVEAT, load_results, read_predictions
from analysis.regime_effects import regime_accuracies
from tests.synthetic import STEP_LR_15, write_synthetic_trial
from trainables.data.demo import SHIFT_LABEL
from trainables.results import tables as results


# ------------------------------------------------------------------------------- Table II
@pytest.fixture
def study(tmp_path) -> Path:
    """Two architectures x three regimes x two seeds, real OOD, plus one failed trial."""
    root = tmp_path / "exp" / "results"
    plan = {  # (arch, regime, seed): (plateau val, test, ood, best_val_loss)
        ("resnet18", "finetune", 0): (0.96, 0.95, 0.70, 0.2),
        ("resnet18", "finetune", 1): (0.98, 0.97, 0.72, 0.2),
        ("resnet18", "feature_extract", 0): (0.99, 0.93, 0.60, 0.1),  # best transfer on val
        ("resnet18", "feature_extract", 1): (0.94, 0.92, 0.90, 0.1),  # best OOD, not chosen
        ("resnet18", "scratch", 0): (0.70, 0.68, 0.50, 0.5),
        ("resnet18", "scratch", 1): (0.74, 0.66, 0.54, 0.5),
        ("squeezenet1_0", "finetune", 0): (0.90, 0.88, 0.60, 0.3),
        ("squeezenet1_0", "finetune", 1): (0.92, 0.90, 0.62, 0.3),
        ("squeezenet1_0", "feature_extract", 0): (0.89, 0.87, 0.58, 0.3),
        ("squeezenet1_0", "feature_extract", 1): (0.91, 0.89, 0.61, 0.3),
        ("squeezenet1_0", "scratch", 0): (0.60, 0.58, 0.65, 0.6),
        ("squeezenet1_0", "scratch", 1): (0.62, 0.60, 0.63, 0.6),
    }
    for (arch, regime, seed), (v, test, ood, loss) in plan.items():
        vals = [0.4] * 7 + [v] * 8  # the band: the second half, epochs 8-15
        write_synthetic_trial(root, arch, regime, seed, val=vals, lr=STEP_LR_15, test=test, ood=ood,
                              best_val_loss=loss)
    write_synthetic_trial(root, "resnet18", "scratch", 2, status="failed",
                          error="RuntimeError: CUDA out of memory")
    return root


def test_failed_trials_are_listed_and_excluded(study):
    res = load_results(str(study))
    assert len(res.trials) == 12 and len(res.failed) == 1
    assert set(res.epochs["trial_id"]) == set(res.trials["trial_id"])
    regimes = aggregate.regime_summary(res)
    assert regimes.set_index(["arch", "regime"]).loc[("resnet18", "scratch"), "n"] == 2
    failed = tables.failed_table(res.failed).markdown()
    assert "CUDA out of memory" in failed and "resnet18" in failed


def test_table2_known_answers(study):
    res = load_results(str(study))
    regimes = aggregate.regime_summary(res)
    choice = aggregate.regime_choice(res)
    r = regimes.set_index(["arch", "regime"])
    assert r.loc[("resnet18", "finetune"), "band"] == "96-98%"
    assert r.loc[("resnet18", "finetune"), "best_val_acc_mean"] == pytest.approx(0.97)
    assert (r.loc[("resnet18", "finetune"), "best_val_acc_min"],
            r.loc[("resnet18", "finetune"), "best_val_acc_max"]) == (0.96, 0.98)
    assert r.loc[("squeezenet1_0", "scratch"), "band"] == "60-62%"
    assert r.loc[("resnet18", "feature_extract"), "trainable_params"] == 2_000
    b = choice.set_index("arch")
    # the transfer regime is chosen on mean validation accuracy over seeds (fine-tune 0.97 vs
    # feature extraction 0.965), not on OOD (feature extraction's seed 1 has the best OOD)
    assert b.loc["resnet18", "transfer_regime"] == "finetune" and b.loc["resnet18", "transfer_n"] == 2
    assert b.loc["resnet18", "transfer_ood"] == pytest.approx(0.71)  # mean of 0.70, 0.72
    assert b.loc["resnet18", "scratch_ood"] == pytest.approx(0.52)
    assert b.loc["resnet18", "top_regime"] == "finetune"
    assert b.loc["resnet18", "top_test"] == pytest.approx(0.96)
    flag = "seed 1 predicts 'a' for 9 of 9 test images"
    t2 = tables.table2(res, regimes, choice, {("resnet18", "scratch"): flag})
    md = t2.markdown()
    assert md.splitlines()[0] == ("| Architecture | Fine-tune (val) | Feature extraction (val) | From "
                                  "scratch (val) | OOD (real) with transfer | OOD (real) without transfer |")
    row = next(line for line in md.splitlines() if line.startswith("| resnet18"))
    fe, sc = r.loc[("resnet18", "feature_extract"), "band"], r.loc[("resnet18", "scratch"), "band"]
    assert row == f"| resnet18 | 96-98% | {fe} | {sc} | 71% | 52% |"  # whole percent, as the study prints
    assert "epochs 8-15" in md and "2 seeds" in md and "convention" in md
    assert "same numbers as the answer box" in md
    # the means in a second table: best val with its lowest and highest seed; no per-image
    # predictions here, so test and OOD show the mean without an interval
    detail = next(line for line in md.splitlines() if line.startswith("| resnet18 | Fine-tune |"))
    assert "| 97.0 (96.0-98.0) | 96.0 (2 seeds) |" in detail
    scratch = next(line for line in md.splitlines() if line.startswith("| resnet18 | From scratch |"))
    assert scratch.endswith("| seed 1 predicts 'a' for 9 of 9 test images |")
    csv = pd.read_csv(pd.io.common.StringIO(t2.csv()))
    assert len(csv) == 6
    assert {"band", "best_val_acc_min", "transfer_ood", "transfer_regime"} <= set(csv.columns)
    tex = t2.latex()
    assert "resnet18 & 96-98\\% & " + fe.replace("%", "\\%") + " & " in tex and r"71\% & 52\% \\" in tex
    assert r"\begin{tabular}{lccccc}" in tex
    assert "resnet18" in md and md.index("resnet18") < md.index("squeezenet1_0")


def test_table2_intervals_count_seeds_and_images(tmp_path):
    """With per-image predictions the test and OOD cells carry the crossed interval; seeds that
    agree exactly still get a width (the images are a sample)."""
    right = [True] * 40 + [False] * 6
    for seed in range(3):
        write_synthetic_trial(tmp_path, "resnet18", "finetune", seed, val=[0.9], test=right, ood=right[:20])
        write_synthetic_trial(tmp_path, "resnet18", "scratch", seed, val=[0.6], test=right[::-1],
                              ood=right[:20])
    res = load_results(str(tmp_path))
    corr = Correctness(res, res.trials["trial_id"].tolist())
    regimes = aggregate.with_accuracies(aggregate.regime_summary(res), regime_accuracies(res, corr))
    ft = regimes.set_index("regime").loc["finetune"]
    assert ft["test_acc_mean"] == pytest.approx(40 / 46) and ft["test_acc_lo"] < 40 / 46 < ft["test_acc_hi"]
    md = tables.table2(res, regimes, aggregate.regime_choice(res)).markdown()
    detail = next(line for line in md.splitlines() if line.startswith("| resnet18 | Fine-tune |"))
    assert f"| 87.0 [{100 * ft['test_acc_lo']:.1f}, {100 * ft['test_acc_hi']:.1f}] |" in detail


@pytest.mark.parametrize(("kind", "label"), [("real", "OOD (real)"), (SHIFT_LABEL, "OOD (synthetic shift)")])
def test_ood_columns_are_labelled_by_kind(tmp_path, kind, label):
    for regime in ("finetune", "scratch"):
        write_synthetic_trial(tmp_path, "resnet18", regime, 0, ood_kind=kind)
    res = load_results(str(tmp_path))
    assert res.ood_label == label
    t2 = tables.table2(res, aggregate.regime_summary(res), aggregate.regime_choice(res))
    assert f"{label} with transfer" in t2.header


def test_no_ood_set_means_no_ood_columns_or_claim(tmp_path):
    for regime in ("finetune", "scratch"):
        write_synthetic_trial(tmp_path, "resnet18", regime, 0, ood_kind="none")
    res = load_results(str(tmp_path))
    regimes, choice = aggregate.regime_summary(res), aggregate.regime_choice(res)
    t2 = tables.table2(res, regimes, choice)
    assert not any("OOD" in h for h in t2.header)
    keys = [c.key for c in claims_mod.check_claims(res)]
    assert "transfer_beats_scratch_ood" not in keys


# ------------------------------------------------------------------------- one-class models
def test_one_class_models_and_the_majority_class_from_predictions(tmp_path):
    # classes alternate alpha, beta: answering "alpha" everywhere is right on the even images
    collapsed = [i % 2 == 0 for i in range(20)]
    write_synthetic_trial(tmp_path, "resnet18", "scratch", 0, test=collapsed, ood=collapsed[:10])
    write_synthetic_trial(tmp_path, "resnet18", "scratch", 1, test=[True] * 19 + [False], ood=[True] * 10)
    write_synthetic_trial(tmp_path, "resnet18", "finetune", 0, test=[True] * 20, ood=[True] * 10)
    res = load_results(str(tmp_path))
    corr = Correctness(res, res.trials["trial_id"].tolist())
    flags = corr.one_class
    broken = flags[("resnet18-scratch-0-all", "test")]
    assert (broken.label, broken.count, broken.total) == ("alpha", 20, 20)
    assert broken.text() == "predicts 'alpha' for 20 of 20 test images"
    assert ("resnet18-scratch-1-all", "test") not in flags  # 19 of 20 right: it answers both classes
    assert corr.majority["test"].accuracy == pytest.approx(0.5) and corr.majority["ood"].total == 10
    from analysis.answer import broken_lines

    lines = broken_lines(res, corr)
    assert lines[("resnet18", "scratch", "all")] == (
        "seed 0 predicts 'alpha' for 20 of 20 test images; seed 0 predicts 'alpha' for 10 of 10 OOD (real) "
        "images (of 2 seeds)")
    assert ("resnet18", "finetune", "all") not in lines


def test_one_class_flags_recorded_on_the_rows_win(tmp_path):
    """Results that carry `one_class_<split>` (the class, or null) are read as they are, with the
    counts from the confusion matrix."""
    import json

    from analysis.one_class import from_columns

    trials = pd.DataFrame({"trial_id": ["t0", "t1"], "classes_json": [json.dumps(["ants", "bees"])] * 2,
                           "one_class_test": ["bees", None],
                           "test_confusion_json": [json.dumps([[0, 20], [1, 25]]),
                                                   json.dumps([[20, 0], [0, 26]])]})
    flags = from_columns(trials)
    assert list(flags) == [("t0", "test")]
    assert flags[("t0", "test")].text() == "predicts 'bees' for 45 of 46 test images"


def test_one_class_label_is_the_class_of_95_percent_of_the_predictions():
    classes = ["ants", "bees"]
    assert results.one_class_label([1] * 46, classes) == "bees"
    assert results.one_class_label([0] * 44 + [1] * 2, classes) == "ants"  # 95.7%
    assert results.one_class_label([0] * 43 + [1] * 3, classes) is None  # 93.5%
    assert results.one_class_label([], classes) is None


def test_one_class_columns_are_read_and_files_without_them_still_load(tmp_path):
    """Rows of schema 4 carry the flag (read even without predictions); a trials file of an older
    schema, without the columns, loads and the flag is counted from the predictions."""
    import json

    import pyarrow.parquet as pq

    new, old = tmp_path / "new", tmp_path / "old"
    collapsed = [i % 2 == 0 for i in range(20)]  # answers "alpha" for every image
    tid = write_synthetic_trial(new, "resnet18", "scratch", 0, test=[True] * 20, ood=None, ood_kind="none")
    row = results.read_table(str(new), "trials").to_pylist()[0]
    row.update(one_class_test="beta", test_confusion_json=json.dumps([[1, 9], [0, 10]]))
    results.write_table_atomic(str(new), "trials", tid, [row])
    res = load_results(str(new))
    assert res.trials["one_class_test"].tolist() == ["beta"]
    flag = Correctness(res, [tid]).one_class[(tid, "test")]
    assert flag.text() == "predicts 'beta' for 19 of 20 test images"  # the row's, not a recount

    tid = write_synthetic_trial(old, "resnet18", "scratch", 0, test=collapsed, ood=None, ood_kind="none")
    path = old / "trials" / f"{tid}.parquet"
    v3 = pq.read_table(path).drop_columns(["one_class_test", "one_class_ood", "train_subset_seed"])
    pq.write_table(v3.replace_schema_metadata(None), path)
    assert "one_class_test" not in pq.read_schema(path).names
    res = load_results(str(old))
    assert res.trials["one_class_test"].isna().all()
    counted = Correctness(res, [tid]).one_class[(tid, "test")]
    assert counted.text() == "predicts 'alpha' for 20 of 20 test images"


def test_predictions_fall_back_to_a_filtered_scan(tmp_path):
    tid = write_synthetic_trial(tmp_path, "resnet18", "finetune", 0, test=[True, False, True])
    other = write_synthetic_trial(tmp_path, "resnet18", "scratch", 0, test=[False, False])
    # a compacted layout: both trials' predictions in one file, no per-trial files
    merged = pd.concat([read_predictions(str(tmp_path), [tid]), read_predictions(str(tmp_path), [other])])
    for f in (tmp_path / "predictions").glob("*.parquet"):
        f.unlink()
    results.write_table_atomic(str(tmp_path), "predictions", "part-0", merged.to_dict("records"))
    got = read_predictions(str(tmp_path), [tid])
    assert len(got) == 3 and set(got["trial_id"]) == {tid}


# ------------------------------------------------------------------------------ best model
def test_best_model_ties_go_to_lower_val_loss_then_earlier_epoch_never_the_seed(tmp_path):
    # seed 0 and seed 1 reach the same best-val accuracy; seed 1 has the lower val loss
    write_synthetic_trial(tmp_path, "resnet18", "finetune", 0, val=[0.5, 0.9], test=0.7, best_val_loss=0.4)
    write_synthetic_trial(tmp_path, "resnet18", "finetune", 1, val=[0.5, 0.9], test=0.8, best_val_loss=0.3)
    # seed 2 ties with seed 1 on accuracy and loss too, but got there one epoch later
    write_synthetic_trial(tmp_path, "resnet18", "finetune", 2, val=[0.5, 0.6, 0.9], test=0.6,
                          best_val_loss=0.3)
    res = load_results(str(tmp_path))
    best = aggregate.best_overall(res, "resnet18")
    assert int(best["seed"]) == 1
    assert aggregate.rank(res.trials)["seed"].tolist() == [1, 2, 0]


# --------------------------------------------------------------------------- loading, errors
def test_missing_and_empty_results_give_a_clear_error(tmp_path, capsys):
    from analysis.report import main

    missing = tmp_path / "nope" / "results"
    assert main(["--results", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err and "python -m sweep.run" in err
    (tmp_path / "empty" / "trials").mkdir(parents=True)
    assert main(["--results", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "no finished trials" in err and "python -m sweep.run" in err and "Traceback" not in err


def test_all_failed_is_an_error_naming_the_errors(tmp_path, capsys):
    from analysis.report import main

    write_synthetic_trial(tmp_path, "resnet18", "finetune", 0, status="failed", error="ValueError: boom")
    assert main(["--results", str(tmp_path)]) == 2
    assert "ValueError: boom" in capsys.readouterr().err


def test_caveat_from_manifest_layout_or_ants_bees_classes(tmp_path):
    from trainables.data.demo import CAVEAT
    from trainables.data.manifest import Entry, Manifest

    a = tmp_path / "a" / "results"
    write_synthetic_trial(a, "resnet18", "finetune", 0, classes=("ants", "bees"))
    assert load_results(str(a)).caveat == ANTS_BEES_CAVEAT
    b = tmp_path / "b" / "results"
    manifest = Manifest(classes=["x", "y"], entries=[Entry("data", "x/1.jpg", "x", "test", "h")],
                        layout="embedded-demo", split_seed=0, ood_kind=SHIFT_LABEL)
    manifest.save(tmp_path / "b" / "manifest.json")
    write_synthetic_trial(b, "resnet18", "finetune", 0, classes=("x", "y"), manifest_hash=manifest.hash)
    res = load_results(str(b))
    assert res.manifest_path.endswith("b/manifest.json") and res.caveat == CAVEAT
    c = tmp_path / "c" / "results"
    write_synthetic_trial(c, "resnet18", "finetune", 0)
    assert load_results(str(c)).caveat is None


def test_learning_curves_use_every_train_size(tmp_path):
    for size, per_class in (("5", 5.0), ("20", 20.0), ("all", 60.0)):
        for seed in (0, 1):
            write_synthetic_trial(tmp_path, "resnet18", "finetune", seed, train_size=size,
                                  per_class=per_class, test=0.5 + per_class / 200 + 0.01 * seed)
    res = load_results(str(tmp_path))
    assert res.full_size == "all"
    lc = aggregate.learning_curves(res)
    assert lc["x"].tolist() == [5.0, 20.0, 60.0]
    assert lc["test_acc_mean"].tolist() == pytest.approx([0.53, 0.605, 0.805])
    assert (lc["test_acc_n"] == 2).all()
