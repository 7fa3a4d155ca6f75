"""The triage ranking and "does ImageNet accuracy predict transfer here?" on synthetic results
with known answers: intervals, order, shortlist, correlations, the figure (1, 2 and several
architectures), the claim's verdicts and the report's section."""

from __future__ import annotations

import json
import math
from html import unescape

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import imagenet_transfer, probe_triage
from analysis import verdicts as claims
from analysis.load import load_results
from analysis.stats import wilson
from tests.synthetic import write_synthetic_trial
from trainables.results import tables as results

TOP1 = {"squeezenet1_0": 58.092, "resnet18": 69.758, "vgg11_bn": 70.37, "mobilenet_v2": 71.878,
        "densenet161": 77.138, "inception_v3": 77.294, "resnet152": 78.312}


def write_probe_trial(root, arch: str, val_correct: list[bool], test: float = 0.8,
                      ood: float = 0.7, c: float = 1.0, val_loss: float = 0.3,
                      test_images: int = 50, **kw) -> str:
    """A linear-probe trial as fit_probe writes it: its grid curve, kept C and confusion."""
    acc = float(np.mean(val_correct))
    tid = write_synthetic_trial(root, arch, "linear_probe", 0, val=[acc], test=test, ood=ood,
                                best_val_loss=val_loss, params=1281, **kw)
    row = next(r for r in results.read_table(str(root), "trials").to_pylist() if r["trial_id"] == tid)
    right = round(test * test_images)
    curve = {"c": [c], "val_acc": [acc], "val_loss": [val_loss], "kept": 0,
             "val_images": len(val_correct), "val_correct": [int(v) for v in val_correct]}
    extra = {"probe_c": c, "probe_grid_json": json.dumps(curve), "total_seconds": 5.0,
             "test_confusion_json": json.dumps([[right, 0], [test_images - right, 0]])}
    results.write_table_atomic(str(root), "trials", tid, [{**row, **extra}])
    return tid


# ------------------------------------------------------------------------------ triage ranking
def test_wilson_matches_scipys():
    for k, n in ((40, 46), (0, 10), (10, 10), (7, 23)):
        ci = sps.binomtest(k, n).proportion_ci(0.95, method="wilson")
        assert wilson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_ranking_order_intervals_and_shortlist(tmp_path):
    n = 46
    best = [True] * 40 + [False] * 6
    close = [True] * 38 + [False] * 2 + [True] * 1 + [False] * 5  # 39/46, differs on 3 images
    worse = [False] * 20 + [True] * 20 + [True] * 6  # 26/46: 20 images only #1 gets right, 6 the reverse
    write_probe_trial(tmp_path, "resnet18", best, val_loss=0.2, test=0.5)
    write_probe_trial(tmp_path, "vgg11_bn", close, val_loss=0.3, test=0.99)
    write_probe_trial(tmp_path, "densenet161", close, val_loss=0.25)  # same accuracy, lower loss
    write_probe_trial(tmp_path, "squeezenet1_0", worse)
    ranked = probe_triage.rank(probe_triage.read_probe_trials(str(tmp_path)))
    assert ranked["arch"].tolist() == ["resnet18", "densenet161", "vgg11_bn", "squeezenet1_0"]
    top = ranked.iloc[0]
    assert (top["val_lo"], top["val_hi"]) == pytest.approx(wilson(40, n))
    assert ranked["val_images"].tolist() == [n] * 4
    # exact McNemar on the validation images against #1: 2 vs 1 discordant -> p = 1
    assert ranked.iloc[1]["p_vs_best"] == pytest.approx(1.0)
    assert ranked.iloc[3]["p_vs_best"] == pytest.approx(sps.binomtest(20, 26).pvalue)
    assert ranked["shortlisted"].tolist() == [True, True, True, False]
    assert probe_triage.recommendation(ranked) == (
        "fine-tune resnet18 and densenet161, vgg11_bn (not significantly worse)")
    text = "\n".join(probe_triage.lines(ranked))
    assert "87.0 [74.3, 93.9]" in text and "ImageNet top-1 %" in text and "69.8" in text
    # test accuracy never ranks: vgg11_bn's 99% test does not lift it
    assert ranked.set_index("arch").loc["vgg11_bn", "rank"] == 3


def test_ranking_takes_one_trial_per_architecture_and_handles_none(tmp_path):
    assert probe_triage.rank(probe_triage.read_probe_trials(str(tmp_path))).empty
    write_probe_trial(tmp_path, "resnet18", [True, False, True])
    write_synthetic_trial(tmp_path, "resnet18", "finetune", 0)  # not a probe: ignored
    ranked = probe_triage.rank(probe_triage.read_probe_trials(str(tmp_path)))
    assert ranked["arch"].tolist() == ["resnet18"] and probe_triage.recommendation(ranked) == (
        "fine-tune resnet18")


def test_triage_summary_ranks_each_size_and_shortlists_the_largest(tmp_path):
    from sweep.grid import GridPoint
    from sweep.triage import summary
    from trainables.presets import PRESETS

    grid = []
    for size, per_class, (a, b) in (("all", 60.0, (19, 10)), ("4", 4.0, (10, 19))):
        write_probe_trial(tmp_path, "resnet18", [True] * a + [False] * (20 - a),
                          train_size=size, per_class=per_class)
        write_probe_trial(tmp_path, "vgg11_bn", [True] * b + [False] * (20 - b),
                          train_size=size, per_class=per_class)
        for arch in ("resnet18", "vgg11_bn"):
            config = PRESETS["smoke"].trial(arch, "linear_probe", 0, size)
            grid.append(GridPoint(config, f"{arch}-linear_probe-0-{size}"))
    text = "\n".join(summary(str(tmp_path), grid, ["--triage", "--archs", "resnet18", "vgg11_bn"]))
    assert text.index("train size 4:") < text.index("train size all:")
    assert text.endswith("--archs resnet18\n(the linear probe is not the study's feature "
                         "extraction: docs/linear_probe.md)")


# ------------------------------------------------------------------ ImageNet accuracy vs transfer
def test_fisher_interval_known_answer_and_only_from_ten_architectures():
    # r = 0.5, n = 10: tanh(atanh(0.5) -/+ 1.96 / sqrt(7)) = [-0.189, 0.859]
    lo, hi = imagenet_transfer.fisher_interval(0.5, 10, 1 / math.sqrt(7))
    assert (lo, hi) == pytest.approx((-0.1892, 0.8590), abs=5e-4)
    assert all(math.isnan(v) for v in imagenet_transfer.fisher_interval(0.5, 9, 1.0))
    x = np.arange(10.0)
    y = x + np.random.default_rng(1).normal(0, 2, 10)
    c = imagenet_transfer.correlate("finetune", "test", x, y)
    assert (c.pearson_lo, c.pearson_hi) == pytest.approx(tuple(sps.pearsonr(x, y).confidence_interval()))
    few = imagenet_transfer.correlate("finetune", "test", x[:9], y[:9])
    assert math.isnan(few.pearson_lo) and math.isnan(few.spearman_lo) and math.isfinite(few.spearman_p)


def _hits(acc: float, n: int) -> list[bool]:
    return [i < round(acc * n) for i in range(n)]


def _study(root, archs, accs, seeds=3, regime="finetune"):
    for arch, acc in zip(archs, accs, strict=True):
        for seed in range(seeds):
            write_synthetic_trial(root, arch, regime, seed, test=_hits(acc + 0.01 * seed, 100),
                                  ood=_hits(acc - 0.2 + 0.01 * seed, 100))


@pytest.mark.parametrize("archs", [["resnet18"], ["resnet18", "vgg11_bn"]])
def test_fewer_than_three_architectures_give_one_line_and_no_figure(tmp_path, archs):
    _study(tmp_path, archs, [0.8, 0.9][:len(archs)])
    out = imagenet_transfer.analyse(load_results(str(tmp_path)))
    assert out.archs == len(archs) and imagenet_transfer.figure(out, "OOD (real)") is None
    assert f"{len(archs)} architecture" in out.text and "needs at least 3" in out.text
    assert out.claim.verdict == claims.UNTESTABLE
    assert imagenet_transfer.write_figure(out, "OOD (real)", tmp_path / "fig") == []


def test_several_architectures_figure_table_correlations_and_claim(tmp_path):
    archs = ["squeezenet1_0", "resnet18", "vgg11_bn", "mobilenet_v2", "resnet152"]  # by top-1
    _study(tmp_path, archs, [0.70, 0.75, 0.80, 0.85, 0.90])
    write_probe_trial(tmp_path, "resnet18", [True] * 9 + [False], test=0.9)  # 1 trial: Wilson
    write_synthetic_trial(tmp_path, "mynet", "finetune", 0, test=0.99)  # no ImageNet metadata
    out = imagenet_transfer.analyse(load_results(str(tmp_path)))
    pts = out.points.set_index(["arch", "regime"])
    assert pts.loc[("resnet18", "finetune"), "imagenet_top1"] == pytest.approx(TOP1["resnet18"])
    assert pts.loc[("resnet18", "finetune"), "test_how"] == "3 seeds × 100 images"
    assert pts.loc[("resnet18", "linear_probe"), "test_how"] == "1 trial × 50 images (Wilson)"
    assert (pts.loc[("resnet18", "linear_probe"), "test_lo"],
            pts.loc[("resnet18", "linear_probe"), "test_hi"]) == pytest.approx(
        wilson(45, 50))
    assert out.missing == ["mynet"] and "mynet" in out.notes[0] and "mynet" in out.claim.evidence
    ft = {c.split: c for c in out.correlations if c.regime == "finetune"}
    assert ft["test"].n == 5 and ft["test"].spearman == pytest.approx(1.0)
    assert ft["test"].spearman_p == pytest.approx(2 / math.factorial(5))  # exact permutation
    x = np.array([TOP1[a] for a in archs])
    assert ft["test"].pearson == pytest.approx(np.corrcoef(x, [0.71, 0.76, 0.81, 0.86, 0.91])[0, 1])
    assert ft["ood"].n == 5
    assert [c.regime for c in out.correlations] == ["finetune", "finetune"], \
        "one probe architecture: no correlation for the probe"
    assert out.claim.verdict == claims.HOLDS and out.claim.key == "imagenet_accuracy_predicts_transfer"
    assert "exact p 0.017 (n=5)" in out.claim.evidence
    fig = imagenet_transfer.figure(out, "OOD (real)")
    assert [ax.get_xlabel() for ax in fig.axes] == ["ImageNet top-1 accuracy (%)"] * 2
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0].startswith("Fine-tune (r +") and "n=5" in labels[0]
    assert any(t.startswith("Linear probe") for t in labels)
    paths = imagenet_transfer.write_figure(out, "OOD (real)", tmp_path / "fig")
    assert paths[0].name == "imagenet_transfer.png" and paths[0].stat().st_size > 5_000
    table = imagenet_transfer.points_tab(out.points, "OOD (real)").markdown()
    assert "| resnet18 | Fine-tune | 69.8 |" in table
    corr_md = imagenet_transfer.correlations_tab(out.correlations, "OOD").markdown()
    assert "+1.00 (no interval below 10)" in corr_md and "[+1.00, +1.00]" not in corr_md


def test_fewer_than_five_architectures_are_not_testable(tmp_path):
    archs = ["squeezenet1_0", "resnet18", "vgg11_bn", "mobilenet_v2"]
    _study(tmp_path, archs, [0.70, 0.75, 0.80, 0.85])
    out = imagenet_transfer.analyse(load_results(str(tmp_path)))
    assert out.claim.verdict == claims.UNTESTABLE and "not testable: needs 5, has 4" in out.claim.evidence
    assert imagenet_transfer.figure(out, "OOD (real)") is not None  # the correlations are still shown
    ft = next(c for c in out.correlations if c.split == "test")
    assert ft.spearman_p == pytest.approx(2 / 24)  # exact: 1/12, never below at n = 4


@pytest.mark.parametrize("accs, verdict", [
    ([0.90, 0.85, 0.80, 0.75, 0.70], claims.FAILS),  # better on ImageNet, worse here
    ([0.70, 0.90, 0.75, 0.85, 0.80], claims.NOT_SHOWN),
])
def test_claim_verdicts(tmp_path, accs, verdict):
    archs = ["squeezenet1_0", "resnet18", "vgg11_bn", "mobilenet_v2", "resnet152"][:len(accs)]
    _study(tmp_path, archs, accs)
    assert imagenet_transfer.analyse(load_results(str(tmp_path))).claim.verdict == verdict


def test_partly_when_one_regime_shows_it_and_another_does_not(tmp_path):
    archs = ["squeezenet1_0", "resnet18", "vgg11_bn", "mobilenet_v2", "resnet152"]
    _study(tmp_path, archs, [0.70, 0.75, 0.80, 0.85, 0.90])
    _study(tmp_path, archs, [0.70, 0.90, 0.75, 0.85, 0.80], regime="feature_extract")
    assert imagenet_transfer.analyse(load_results(str(tmp_path))).claim.verdict == claims.PARTLY


# ------------------------------------------------------------------------------------ report
@pytest.mark.parametrize("n_archs", [1, 2, 5])
def test_report_shows_the_ranking_and_the_imagenet_question(tmp_path, n_archs):
    from analysis.report import build

    root = tmp_path / "results"
    archs = ["squeezenet1_0", "resnet18", "vgg11_bn", "mobilenet_v2", "resnet152"][:n_archs]
    _study(root, archs, [0.70, 0.75, 0.80, 0.85, 0.90][:n_archs], seeds=2)
    for i, arch in enumerate(archs):
        write_probe_trial(root, arch, [True] * (5 + i) + [False] * (5 - i))
    report = build(str(root), str(tmp_path / "report"), with_gradcam=False)
    html = unescape((tmp_path / "report" / "report.html").read_text())
    assert "Linear-probe triage" in html and "not the study's feature extraction" in html
    assert "ImageNet accuracy predicts transfer accuracy on this dataset" in html
    drawn = (tmp_path / "report" / "imagenet_transfer.png").exists()
    assert drawn == (n_archs >= 3)
    assert ("a correlation needs at least 3" in html) == (n_archs < 3)
    assert ("Spearman rho [95% CI]" in html) == (n_archs >= 3)  # no empty table ("None.")
    assert any(line.startswith("Linear-probe triage") for line in report.probe_console)
    csv = pd.read_csv(tmp_path / "report" / "imagenet_transfer.csv")
    assert set(csv["arch"]) == set(archs)


def test_the_probe_is_shown_beside_the_transfer_regimes_never_as_one(tmp_path):
    """Its C was chosen on the validation images, so its best-val accuracy is optimistic: the
    best transfer model (Table II, the claims) and the answer box's winner come from the study's
    regimes even when the probe's validation accuracy is higher."""
    from analysis import aggregate, answer

    for seed in range(2):
        write_synthetic_trial(tmp_path, "resnet18", "finetune", seed, val=[0.7, 0.8], test=0.8)
        write_synthetic_trial(tmp_path, "resnet18", "scratch", seed, val=[0.5, 0.6], test=0.6)
    write_probe_trial(tmp_path, "resnet18", [True] * 19 + [False], test=0.9)  # val 0.95
    res = load_results(str(tmp_path))
    choice = aggregate.regime_choice(res)
    assert set(res.trials["regime"]) == {"finetune", "scratch", "linear_probe"}
    assert choice["transfer_regime"].eq("finetune").all() and choice["top_regime"].eq("finetune").all()
    winner = answer.best_on_validation(aggregate.regime_summary(res))
    assert winner["regime"] == "finetune"
