"""The report on real results: smoke trials trained here (run_trial) and, slow, a real smoke
sweep (python -m sweep.run) followed by `python -m analysis.report` with its defaults."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.claims import VERDICTS
from analysis.report import main
from tests.conftest import PROJECT_ROOT, write_image
from tests.synthetic import write_synthetic_trial
from trainables.presets import PRESETS
from trainables.results import read_table

COLORS = {"a": (200, 40, 40), "b": (40, 40, 200)}


def _folder(root: Path, per_class: int, seed0: int) -> Path:
    for ci, (cls, color) in enumerate(COLORS.items()):
        for i in range(per_class):
            write_image(root / cls / f"img_{i:03d}.jpg", color, seed=seed0 + 100 * ci + i)
    return root


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory, torch_home):
    """mobilenet_v2 x 3 regimes x 2 seeds, smoke preset, a real OOD folder, models kept, in the
    sweep's layout (<exp>/manifest.json, <exp>/results); plus one failed trial."""
    from trainables.datasource import prepare_data
    from trainables.train import run_trial

    base = tmp_path_factory.mktemp("report")
    pool = _folder(base / "pool", 10, 0)
    ood = _folder(base / "ood", 4, 1000)
    roots, manifest = prepare_data(pool, ood)
    exp = base / "exp"
    manifest.save(exp / "manifest.json")
    results = exp / "results"
    for seed in (0, 1):
        for regime in ("finetune", "feature_extract", "scratch"):
            config = PRESETS["smoke"].trial("mobilenet_v2", regime, seed)
            run_trial(config, manifest, roots, str(results), keep_model=True)
    write_synthetic_trial(results, "mobilenet_v2", "finetune", 7, status="failed",
                          error="RuntimeError: injected failure for the report test")
    return exp, pool, ood


def test_report_on_real_smoke_trials(smoke_results, capsys):
    exp, pool, ood = smoke_results
    results = exp / "results"
    assert main(["--results", str(results), "--data", str(pool), "--ood", str(ood), "--gradcam-n", "2"]) == 0
    out = capsys.readouterr().out
    report = exp / "report"  # the default: <results>/../report
    for name in ("report.html", "table2.md", "table2.csv", "table2.tex", "paired.csv", "fig2.png",
                 "fig2.pdf", "learning_curves.png", "params.png", "gradcam_mobilenet_v2.png"):
        assert (report / name).stat().st_size > 100, name
    # the printed Table II is the file's
    table = (report / "table2.md").read_text()
    assert table.strip() in out and "| mobilenet_v2 |" in table and "OOD (real): best transfer" in table
    assert str(report / "report.html") in out and "gradcam_mobilenet_v2.png" in out

    # numbers agree with the Parquet results they come from
    trials = read_table(str(results), "trials").to_pandas()
    ok = trials[trials["status"] == "ok"]
    csv = pd.read_csv(report / "table2.csv").set_index("regime")
    for regime, group in ok.groupby("regime"):
        assert csv.loc[regime, "n"] == 2
        assert csv.loc[regime, "best_val_acc_mean"] == pytest.approx(group["best_val_acc"].mean())
        assert csv.loc[regime, "ood_acc_mean"] == pytest.approx(group["ood_acc"].mean())
        assert csv.loc[regime, "trainable_params"] == group["trainable_params"].iloc[0]
    epochs = read_table(str(results), "epochs").to_pandas()
    final = epochs[epochs["epoch"] == 2]  # smoke: StepLR(1) over 2 epochs, the plateau is epoch 2
    for regime in ("finetune", "scratch"):
        vals = final.loc[final["regime"] == regime, "val_acc"]
        assert (csv.loc[regime, "band_lo"], csv.loc[regime, "band_hi"]) == (vals.min(), vals.max())
    paired = pd.read_csv(report / "paired.csv")
    assert set(paired["split"]) == {"test", "ood"} and (paired["n"] > 0).all()

    html = (report / "report.html").read_text()
    assert "<link" not in html and not re.search(r"src=\"(?!data:)", html)  # self-contained
    assert html.count('src="data:image/png;base64,') == 4  # fig2, learning curves, params, Grad-CAM
    assert "injected failure for the report test" in html  # failed trials listed
    assert "OOD (real)" in html and "synthetic" not in html
    assert "Caveat" not in html  # classes a/b from a user's folder: no ImageNet caveat
    for verdict in VERDICTS:
        html = html.replace(f">{verdict}<", ">VERDICT<")
    assert html.count(">VERDICT<") == 6


def test_report_without_data_folder_skips_gradcam_with_a_reason(smoke_results, tmp_path, capsys):
    exp, _, _ = smoke_results
    assert main(["--results", str(exp / "results"), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "Grad-CAM for mobilenet_v2 skipped" in out and "--data" in out
    assert not list((tmp_path / "r").glob("gradcam_*.png"))
    assert (tmp_path / "r" / "report.html").is_file()


@pytest.mark.slow
def test_report_after_a_real_smoke_sweep(tmp_path, torch_home):
    """The sweep CLI on the embedded demo set, then the report with default --out."""
    storage = tmp_path / "runs"
    sweep = subprocess.run(
        [sys.executable, "-m", "sweep.run", "--preset", "smoke", "--storage", str(storage), "--name", "s",
         "--archs", "mobilenet_v2", "--regimes", "finetune", "scratch", "--seeds", "1"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
    results = storage / "s" / "results"
    report = subprocess.run([sys.executable, "-m", "analysis.report", "--results", str(results),
                             "--gradcam-n", "2"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=600)
    assert report.returncode == 0, report.stderr
    out_dir = storage / "s" / "report"
    assert "| mobilenet_v2 |" in report.stdout and "OOD (synthetic shift)" in report.stdout
    html = (out_dir / "report.html").read_text()
    assert "Caveat" in html and "ImageNet" in html  # the embedded ants/bees set
    assert (out_dir / "gradcam_mobilenet_v2.png").stat().st_size > 10_000  # models kept by default
    csv = pd.read_csv(out_dir / "table2.csv")
    assert sorted(csv["regime"]) == ["finetune", "scratch"] and (csv["n"] == 1).all()
    assert json.loads((storage / "s" / "manifest.json").read_text())["layout"] == "embedded-demo"


@pytest.mark.parametrize("case", ["scratch-only", "one-seed-no-ood", "no-all-size"])
def test_report_on_sparse_results(tmp_path, case, capsys):
    """Odd but valid result sets still give a full report, with "not testable" where it must."""
    results = tmp_path / "results"
    if case == "scratch-only":
        for seed in (0, 1):
            write_synthetic_trial(results, "resnet18", "scratch", seed, val=[0.5, 0.6])
    elif case == "one-seed-no-ood":
        write_synthetic_trial(results, "vgg11_bn", "finetune", 0, ood_kind="none")
        write_synthetic_trial(results, "vgg11_bn", "feature_extract", 0, ood_kind="none")
    else:
        for size, per_class in (("5", 5.0), ("20", 20.0)):
            for regime in ("finetune", "scratch"):
                write_synthetic_trial(results, "mobilenet_v2", regime, 0, train_size=size,
                                      per_class=per_class, test=[True, False, True, True])
    assert main(["--results", str(results)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    html = (tmp_path / "report" / "report.html").read_text()
    assert "not testable" in html and "No Grad-CAM figure" in html
    assert html.count('src="data:image/png;base64,') == 3
    if case == "one-seed-no-ood":
        assert "(n=1)" in out and "OOD" not in out.split("report:")[0]
    if case == "no-all-size":
        assert "Train size: 20." in out  # the largest size stands in for "all"
