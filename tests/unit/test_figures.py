"""Figures from synthetic results: files written, one panel per architecture, the study's
markers, thin seed lines and bold means, the test and OOD lines."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from matplotlib.collections import LineCollection

from analysis import aggregate, figures
from analysis.load import load_results
from tests.synthetic import STEP_LR_15, write_synthetic_trial

ARCHS = ("resnet18", "vgg11_bn", "squeezenet1_0", "mobilenet_v2")  # the study's order


@pytest.fixture
def res(tmp_path):
    rng = np.random.default_rng(0)
    for arch in reversed(ARCHS):  # written in another order than the study's
        for regime in ("finetune", "feature_extract", "scratch"):
            for seed in range(3):
                for size, per_class in (("5", 5.0), ("all", 60.0)):
                    vals = np.clip(np.linspace(0.5, 0.9, 15) + rng.normal(0, 0.02, 15), 0, 1).tolist()
                    write_synthetic_trial(tmp_path, arch, regime, seed, val=vals, lr=STEP_LR_15,
                                          train_size=size, per_class=per_class,
                                          test=float(rng.uniform(0.6, 0.9)), ood=float(rng.uniform(0.4, 0.8)))
    return load_results(str(tmp_path))


def _fig2(res):
    regimes, best = aggregate.regime_summary(res), aggregate.best_models(res)
    top = {a: aggregate.best_overall(res, a) for a in regimes["arch"].unique()}
    return figures.fig2(aggregate.epoch_curves(res), regimes, best, top, res.ood_label), regimes


def test_fig2_panels_markers_and_lines(res, tmp_path):
    fig, regimes = _fig2(res)
    assert len(fig.axes) == len(ARCHS)
    for ax, arch in zip(fig.axes, ARCHS, strict=True):
        title = ax.get_title()
        assert title.startswith(arch) and "trainable params" in title
        assert "FT 1M" in title and "FE 0.002M" in title and "SC 1M" in title
        thin = [c for c in ax.collections if isinstance(c, LineCollection)]
        assert len(thin) == 3 and all(len(c.get_segments()) == 3 for c in thin)  # 3 seeds each
        means = {line.get_marker(): line for line in ax.get_lines() if line.get_linewidth() == 2.2}
        assert set(means) == {"s", "x", "o"}  # fine-tune, feature extraction, scratch
        assert len(means["s"].get_xdata()) == 15
        flat = [line for line in ax.get_lines() if len(set(line.get_ydata())) == 1
                and line.get_linewidth() < 2]
        styles = sorted(line.get_linestyle() for line in flat)
        assert styles == ["-", "--", ":"]  # OOD transfer, OOD scratch, test
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "OOD (real), best transfer model" in labels and "OOD (real), best scratch model" in labels
    paths = figures.save(fig, tmp_path / "out", "fig2")
    assert [p.name for p in paths] == ["fig2.png", "fig2.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:5] == b"%PDF-"
    assert all(p.stat().st_size > 5_000 for p in paths)


def test_fig2_caps_thin_lines_but_not_the_mean(tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "MAX_SEED_LINES", 2)
    for seed in range(4):
        write_synthetic_trial(tmp_path, "resnet18", "finetune", seed, val=[0.5, 0.6 + 0.1 * seed])
    res = load_results(str(tmp_path))
    fig, _ = _fig2(res)
    ax = fig.axes[0]
    assert len(ax.collections[0].get_segments()) == 2
    mean = next(line for line in ax.get_lines() if line.get_linewidth() == 2.2)
    assert mean.get_ydata()[-1] == pytest.approx(100 * np.mean([0.6, 0.7, 0.8, 0.9]))


def test_no_ood_set_draws_no_ood_lines(tmp_path):
    for regime in ("finetune", "scratch"):
        write_synthetic_trial(tmp_path, "resnet18", regime, 0, ood_kind="none")
    fig, _ = _fig2(load_results(str(tmp_path)))
    flat = [line for line in fig.axes[0].get_lines() if len(set(line.get_ydata())) == 1
            and line.get_linewidth() < 2]
    assert [line.get_linestyle() for line in flat] == [":"]


def test_learning_curves_and_params_plot(res, tmp_path):
    lc = aggregate.learning_curves(res)
    fig = figures.learning_curves(lc, res.ood_label)
    assert len(fig.axes) == len(ARCHS)
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert sorted(line.get_linestyle() for line in lines) == ["-"] * 3 + ["--"] * 3
    assert all(list(line.get_xdata()) == [5.0, 60.0] for line in lines)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["5", "60"]
    assert len(ax.collections) == 6  # a CI band per regime and metric
    path = figures.save(fig, tmp_path, "learning_curves", pdf=False)[0]
    assert path.stat().st_size > 5_000

    regimes = aggregate.regime_summary(res)
    fig = figures.params_plot(regimes, res.ood_label)
    assert len(fig.axes) == 2 and "OOD (real)" in fig.axes[1].get_ylabel()
    assert fig.axes[0].get_xscale() == "log"
    markers = {line.get_marker() for line in fig.axes[0].get_lines()}
    assert {"s", "x", "o"} <= markers
    matplotlib.pyplot.close("all")


def test_params_plot_without_ood_has_one_panel(tmp_path):
    for regime in ("finetune", "scratch"):
        write_synthetic_trial(tmp_path, "resnet18", regime, 0, ood_kind="none")
    res = load_results(str(tmp_path))
    assert len(figures.params_plot(aggregate.regime_summary(res), res.ood_label).axes) == 1
