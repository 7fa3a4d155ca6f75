"""The study's own 18 validation logs, read the way a user would (`analysis.external_logs`),
rebuild Table II within the tolerance the project promises (every band endpoint within 5 points
of the printed one, 1 point on average) and Fig. 2; malformed logs give `error: ...`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis import external_logs as ext
from analysis.band_comparison import compare_bands, comparison_summary
from tests.conftest import SHARED_DATA
from tests.synthetic import write_synthetic_trial

PAPER = SHARED_DATA / "paper_study"
LOGS, LINES, PRINTED = PAPER / "val_curves.csv", PAPER / "figure2_lines.csv", PAPER / "table2.csv"
STUDY_ARCHS = ["inception_v3", "densenet161", "resnet152", "resnet18", "vgg11_bn", "squeezenet1_0"]
MAX_ERR, MEAN_ERR = 5.0, 1.0


@pytest.fixture(scope="module")
def rebuilt() -> ext.ExternalTables:
    return ext.rebuild(ext.load_external_logs(LOGS, LINES))


def test_table2_bands_reproduce_the_printed_ones(rebuilt):
    cmp = compare_bands(rebuilt.regimes, PRINTED)
    assert len(cmp) == 18 and cmp["arch"].unique().tolist() == STUDY_ARCHS
    mean, worst, where = comparison_summary(cmp)
    assert worst <= MAX_ERR, where
    assert mean <= MEAN_ERR
    assert rebuilt.rule.spec == "half"
    r = rebuilt.regimes.set_index(["arch", "regime"])
    assert r.loc[("vgg11_bn", "scratch"), "band"] == "72-80%"  # printed 70-80%; 2 epochs gave 78%
    assert set(r["plateau_first"]) == {16} and set(r["plateau_last"]) == {30}


@pytest.mark.parametrize("first", ["29", "last-lr-step"])
def test_the_two_epoch_rule_misses_the_tolerance(first):
    """Epochs 29-30 (the earlier rule under StepLR(7) over 30 epochs; without recorded rates
    "last-lr-step" keeps epoch 30 alone) are narrower than the printed ranges."""
    t = ext.rebuild(ext.load_external_logs(LOGS, LINES), first)
    mean, worst, _ = comparison_summary(compare_bands(t.regimes, PRINTED))
    assert worst > MAX_ERR and mean > MEAN_ERR


@pytest.mark.parametrize("first", ["12", "15", "20", "22"])
def test_the_tolerance_does_not_hinge_on_one_start_epoch(first):
    t = ext.rebuild(ext.load_external_logs(LOGS, LINES), first)
    mean, worst, where = comparison_summary(compare_bands(t.regimes, PRINTED))
    assert worst <= MAX_ERR and mean <= MEAN_ERR, where


def test_table2_ood_columns_and_best_models_come_from_the_lines(rebuilt):
    best = rebuilt.choice.set_index("arch")
    assert best.index.tolist() == STUDY_ARCHS
    assert best.loc["densenet161", "transfer_ood"] == pytest.approx(0.83)
    assert best.loc["vgg11_bn", "scratch_ood"] == pytest.approx(0.6615)
    assert best.loc["inception_v3", "transfer_regime"] == "finetune"
    md = rebuilt.table2.markdown()
    assert md.splitlines()[0].endswith("OOD (real) with transfer | OOD (real) without transfer |")
    row = next(line for line in md.splitlines() if line.startswith("| densenet161"))
    assert row.startswith("| densenet161 | 100% |") and row.endswith("| 83% | 58% |")  # as printed
    detail = next(line for line in md.splitlines() if line.startswith("| densenet161 | Fine-tune |"))
    assert "| 100.0 (1 seed) |" in detail
    assert "convention" in md and "epochs 16-30" in md


def test_fig2_has_a_panel_per_architecture_with_the_study_lines(rebuilt):
    fig = ext.fig2(rebuilt)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().splitlines()[0] for ax in axes] == STUDY_ARCHS
    vgg = axes[STUDY_ARCHS.index("vgg11_bn")]
    flat = {round(line.get_ydata()[0], 2) for line in vgg.get_lines() if len(set(line.get_ydata())) == 1}
    assert {97.8, 83.08, 66.15} <= flat  # test 0.978, OOD transfer 0.8308, OOD scratch 0.6615
    curves = [line for line in vgg.get_lines() if len(line.get_xdata()) == 30]
    assert len(curves) == 3  # fine-tune, feature extraction, scratch


def test_cli_rebuilds_and_compares(tmp_path, capsys):
    rc = ext.main([str(LOGS), "--lines", str(LINES), "--compare", str(PRINTED), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "Mean absolute endpoint error 0.77 points, worst 4.57" in out
    for name in ("table2.md", "table2.csv", "fig2.png", "band_comparison.md", "band_comparison.json"):
        assert (tmp_path / name).is_file(), name
    summary = json.loads((tmp_path / "band_comparison.json").read_text())
    assert summary["band_from_epoch"] == "half" and summary["max_abs_error"] <= MAX_ERR


# ----------------------------------------------------------------------- the CSV layout
GOOD = "arch,regime,epoch,val_acc\nresnet18,finetune,1,0.5\nresnet18,finetune,2,0.75\n"


def test_optional_columns_and_defaults(tmp_path):
    p = tmp_path / "logs.csv"
    p.write_text("arch,regime,seed,train_size,epoch,val_acc,val_loss,lr,trainable_params,note\n"
                 "resnet18,finetune,3,all,1,0.5,0.7,0.001,11177538,x\n"
                 "resnet18,finetune,3,all,2,0.75,0.5,0.001,11177538,y\n"
                 "resnet18,finetune,3,all,3,0.75,0.4,0.0001,11177538,z\n"
                 "resnet18,scratch,,,1,0.5,,,,\n")
    res = ext.load_external_logs(p)
    t = res.trials.set_index("regime")
    assert t.loc["finetune", "seed"] == 3 and t.loc["scratch", "seed"] == 0
    assert t.loc["finetune", "train_size"] == "all" and t.loc["scratch", "train_size"] == "all"
    # tie on 0.75: the lower val loss (epoch 3) is kept
    assert t.loc["finetune", "best_epoch"] == 3 and t.loc["finetune", "trainable_params"] == 11177538
    assert res.predictions(["x"]).empty and res.ood_kinds == [] and res.select_on == []


@pytest.mark.parametrize(("text", "expect"), [
    ("arch,regime,val_acc\nresnet18,finetune,0.5\n", "missing column(s) epoch"),
    (GOOD + "resnet18,finetune,3,abc\n", "line 4: column val_acc has 'abc', not a number"),
    (GOOD + "resnet18,finetune,3,87\n", "line 4: column val_acc has 87, outside [0, 1] (a fraction"),
    (GOOD + "resnet18,finetune,0,0.5\n", "line 4: column epoch has 0, outside"),
    (GOOD + "resnet18,finetune,2.5,0.5\n", "line 4: column epoch has '2.5', not an integer"),
    (GOOD + "resnet18,finetuning,3,0.5\n", "line 4: column regime has 'finetuning'; expected one of"),
    (GOOD + ",finetune,3,0.5\n", "line 4: column arch is empty"),
    (GOOD + "resnet18,finetune,2,0.8\n", "lines 3 and 4: the same arch, regime, seed, train_size and epoch"),
    (GOOD + "resnet18,finetune,3,\n", "line 4: column val_acc is empty"),
    ("arch,regime,epoch,val_acc,seed\nresnet18,finetune,1,0.5,x\n", "line 2: column seed has 'x'"),
    ("arch,regime,epoch,val_acc,train_size\nresnet18,finetune,1,0.5,lots\n", "line 2: column train_size"),
    ("arch,regime,epoch,val_acc\n", "has a header but no rows"),
    ("", "is empty"),
    ('arch,regime,epoch,val_acc\n"resnet18,finetune,1,0.5\n', "not a readable CSV"),
])
def test_malformed_logs_are_errors_naming_file_line_and_column(tmp_path, capsys, text, expect):
    p = tmp_path / "bad logs.csv"
    p.write_text(text)
    assert ext.main([str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(p) in err and expect in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize(("text", "expect"), [
    ("arch,ood_acc_best_transfer\nalexnet,0.8\n", "line 2: architecture 'alexnet' has no runs in"),
    ("arch,ood_acc_best_transfer\nresnet18,80\n", "line 2: column ood_acc_best_transfer has 80, outside"),
    ("arch,whatever\nresnet18,1\n", "none of the columns"),
    ("arch,ood_acc_best_transfer\nresnet18,0.8\nresnet18,0.7\n", "line 3: architecture 'resnet18' appears"),
])
def test_malformed_lines_are_errors(tmp_path, capsys, text, expect):
    logs, lines = tmp_path / "logs.csv", tmp_path / "lines.csv"
    logs.write_text(GOOD)
    lines.write_text(text)
    assert ext.main([str(logs), "--lines", str(lines)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(lines) in err and expect in err, err


def test_missing_files_and_bad_options(tmp_path, capsys):
    assert ext.main([str(tmp_path / "nope.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    logs = tmp_path / "logs.csv"
    logs.write_text(GOOD)
    assert ext.main([str(logs), "--band-from-epoch", "zero"]) == 2
    assert "--band-from-epoch 'zero' is not valid" in capsys.readouterr().err
    printed = tmp_path / "printed.csv"
    printed.write_text("arch,val_band_finetune\nresnet18,most\n")
    assert ext.main([str(logs), "--compare", str(printed)]) == 2
    assert "resnet18 val_band_finetune: not a band" in capsys.readouterr().err


def test_report_puts_external_logs_beside_a_sweep(tmp_path, capsys):
    from analysis.report import main

    root = tmp_path / "exp" / "results"
    for regime in ("finetune", "scratch"):
        write_synthetic_trial(root, "resnet18", regime, 0, test=[True, False] * 10, ood=[True] * 8)
    out = tmp_path / "report"
    rc = main(["--results", str(root), "--out", str(out), "--no-gradcam", "--external-logs", str(LOGS),
               "--external-lines", str(LINES), "--band-from-epoch", "half", "--equivalence-margin", "4"])
    assert rc == 0, capsys.readouterr().err
    html = (out / "report.html").read_text()
    assert f"External logs: {LOGS}" in html and "squeezenet1_0" in html
    assert "--equivalence-margin 4" in html and "convention" in html
    assert (out / "external_fig2.png").is_file() and (out / "external_table2.md").is_file()
    for bad, msg in ((["--band-from-epoch", "-1"], "--band-from-epoch"),
                     (["--equivalence-margin", "0"], "--equivalence-margin"),
                     (["--external-lines", str(LINES)], "--external-lines needs --external-logs")):
        assert main(["--results", str(root), "--out", str(out), "--no-gradcam", *bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and msg in err
    assert Path(out / "report.html").is_file()


def test_table2_ood_columns_match_the_printed_ones(rebuilt):
    """The OOD columns, rebuilt from the Fig. 2 lines, against Table II as printed: within 1.2
    points (rounding), except ResNet18's transfer OOD, where the source itself disagrees (the
    figure draws 0.6923, the table prints 79%; ../shared/README.md)."""
    import pandas as pd

    printed = pd.read_csv(PRINTED).set_index("arch")
    best = rebuilt.choice.set_index("arch")
    for arch in STUDY_ARCHS:
        for col, tag in (("ood_pct_with_transfer", "transfer"), ("ood_pct_without_transfer", "scratch")):
            gap = abs(100 * best.loc[arch, f"{tag}_ood"] - printed.loc[arch, col])
            if (arch, tag) == ("resnet18", "transfer"):
                assert gap == pytest.approx(79 - 69.23, abs=0.01)
            else:
                assert gap <= 1.2, (arch, tag, gap)
