"""Figures from synthetic results: files written, one panel per architecture, the study's
markers, seed bands and bold means, the test and OOD lines, readable parameter counts, learning
curves with per-seed points on a log axis, and the line of text that replaces an empty figure."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from matplotlib.collections import PathCollection, PolyCollection

from analysis import aggregate, figures, params_figure, tables
from analysis.load import load_results
from analysis.one_class import Majority
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


def _fig2(res, majority=None):
    regimes, choice = aggregate.regime_summary(res), aggregate.regime_choice(res)
    return figures.fig2(aggregate.epoch_curves(res), regimes, choice, res.ood_label, majority), regimes


def test_fig2_panels_markers_and_lines(res, tmp_path):
    fig, regimes = _fig2(res, Majority("val", "alpha", 13, 20))
    assert len(fig.axes) == len(ARCHS)
    for ax, arch in zip(fig.axes, ARCHS, strict=True):
        title = ax.get_title()
        assert title.startswith(arch) and "trainable params" in title
        assert "FT 1M" in title and "FE 2k" in title and "SC 1M" in title
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(bands) == 3  # a seed band per regime
        means = {line.get_marker(): line for line in ax.get_lines() if line.get_linewidth() == 2.2}
        assert set(means) == {"s", "x", "o"}  # fine-tune, feature extraction, scratch
        assert len(means["s"].get_xdata()) == 15
        flat = [line for line in ax.get_lines() if len(set(line.get_ydata())) == 1
                and line.get_linewidth() < 2]
        styles = sorted(line.get_linestyle() for line in flat)
        assert styles == ["-", "--", "-.", ":"]  # OOD transfer, OOD scratch, majority class, test
        majority = next(line for line in flat if line.get_linestyle() == "-.")
        assert majority.get_ydata()[0] == pytest.approx(65.0)
        choice = aggregate.regime_choice(res).set_index("arch").loc[arch]
        ood = next(line for line in flat if line.get_linestyle() == "-")
        assert ood.get_ydata()[0] == pytest.approx(100 * choice["transfer_ood"])  # Table II's number
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "OOD (real), transfer regime (mean)" in labels and "OOD (real), scratch (mean)" in labels
    assert "val: always 'alpha' (13/20)" in labels
    assert "range over seeds (min-max)" in labels
    paths = figures.save(fig, tmp_path / "out", "fig2")
    assert [p.name for p in paths] == ["fig2.png", "fig2.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:5] == b"%PDF-"
    assert all(p.stat().st_size > 5_000 for p in paths)


def test_fig2_seed_band_spans_the_seeds(tmp_path):
    """The band runs from the lowest to the highest seed at each epoch; the bold line is the mean."""
    for seed in range(4):
        write_synthetic_trial(tmp_path, "resnet18", "finetune", seed, val=[0.5, 0.6 + 0.1 * seed])
    fig, _ = _fig2(load_results(str(tmp_path)))
    ax = fig.axes[0]
    band = next(c for c in ax.collections if isinstance(c, PolyCollection))
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(50) and ys.max() == pytest.approx(90)
    assert {round(y, 6) for y in ys} >= {50.0, 60.0, 90.0}
    mean = next(line for line in ax.get_lines() if line.get_linewidth() == 2.2)
    assert mean.get_ydata()[-1] == pytest.approx(100 * np.mean([0.6, 0.7, 0.8, 0.9]))


def test_one_seed_draws_no_band(tmp_path):
    write_synthetic_trial(tmp_path, "resnet18", "finetune", 0, val=[0.5, 0.6])
    fig, _ = _fig2(load_results(str(tmp_path)))
    assert not [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]


@pytest.mark.parametrize(("n", "text"), [(950, "950"), (2_562, "2.6k"), (2_226_434, "2.2M"),
                                         (1_000_000, "1M"), (26_480_000, "26M"), (138_357_544, "138M"),
                                         (float("nan"), "n/a")])
def test_parameter_counts_are_readable(n, text):
    assert tables.fmt_params(n) == text


def test_no_ood_set_draws_no_ood_lines(tmp_path):
    for regime in ("finetune", "scratch"):
        write_synthetic_trial(tmp_path, "resnet18", regime, 0, ood_kind="none")
    fig, _ = _fig2(load_results(str(tmp_path)))
    flat = [line for line in fig.axes[0].get_lines() if len(set(line.get_ydata())) == 1
            and line.get_linewidth() < 2]
    assert [line.get_linestyle() for line in flat] == [":"]


def test_learning_curves_and_params_plot(res, tmp_path):
    lc = aggregate.learning_curves(res)
    assert figures.learning_curves_missing(lc) is None
    majority = {"test": Majority("test", "alpha", 12, 20), "ood": Majority("ood", "beta", 7, 10)}
    fig = figures.learning_curves(lc, res.trials, res.ood_label, majority)
    assert len(fig.axes) == 2 * len(ARCHS)  # one row per architecture: test, OOD
    ax_test, ax_ood = fig.axes[0], fig.axes[1]
    assert ax_test.get_title() == "resnet18: test accuracy" and "OOD (real)" in ax_ood.get_title()
    for ax in (ax_test, ax_ood):
        assert ax.get_xscale() == "log"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["5", "60\n(all)"]
        means = [line for line in ax.get_lines() if line.get_linestyle() != "-."]
        assert len(means) == 3 and all(len(line.get_xdata()) == 2 for line in means)
        floor = [line for line in ax.get_lines() if line.get_linestyle() == "-."]
        assert [line.get_ydata()[0] for line in floor] == [60.0 if ax is ax_test else 70.0]
        points = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert len(points) == 3 and all(len(c.get_offsets()) == 6 for c in points)  # 3 seeds x 2 sizes
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(bands) == 3
    # the points are the seeds' own accuracies, the line their mean
    sub = res.trials[(res.trials["arch"] == "resnet18") & (res.trials["regime"] == "finetune")]
    ft_points = next(c for c in ax_test.collections if isinstance(c, PathCollection))
    assert sorted(ft_points.get_offsets()[:, 1]) == pytest.approx(sorted(100 * sub["test_acc"]))
    ft_line = next(line for line in ax_test.get_lines() if line.get_marker() == "s")
    assert ft_line.get_ydata()[-1] == pytest.approx(100 * sub[sub["train_size"] == "all"]["test_acc"].mean())
    path = figures.save(fig, tmp_path, "learning_curves", pdf=False)[0]
    assert path.stat().st_size > 5_000

    regimes = aggregate.regime_summary(res).assign(test_acc_lo=0.5, test_acc_hi=0.95)
    assert params_figure.params_missing(regimes) is None
    fig = params_figure.params_plot(regimes, res.ood_label)
    assert len(fig.axes) == 2 and "OOD (real)" in fig.axes[1].get_ylabel()
    assert fig.axes[0].get_xscale() == "log"
    fig.canvas.draw()
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert "1M" in ticks and all("e" not in t and "$" not in t for t in ticks), ticks
    markers = {line.get_marker() for line in fig.axes[0].get_lines()}
    assert {"s", "x", "o"} <= markers
    matplotlib.pyplot.close("all")


def test_learning_curves_drop_the_points_when_seeds_are_many(res, monkeypatch):
    monkeypatch.setattr(figures, "MAX_SEED_POINTS", 2)  # the fixture has 3 seeds
    fig = figures.learning_curves(aggregate.learning_curves(res), res.trials, res.ood_label)
    assert not [c for c in fig.axes[0].collections if isinstance(c, PathCollection)]
    assert len([c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]) == 3
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "one seed" not in labels and "range over seeds (min-max)" in labels
    matplotlib.pyplot.close("all")


def test_figures_with_nothing_to_show_say_what_run_fills_them(tmp_path):
    for regime in ("finetune", "scratch"):
        write_synthetic_trial(tmp_path, "resnet18", regime, 0)
    res = load_results(str(tmp_path))
    lc_text = figures.learning_curves_missing(aggregate.learning_curves(res))
    assert "one (all)" in lc_text and "--train-sizes 10 all" in lc_text
    params_text = params_figure.params_missing(aggregate.regime_summary(res))
    assert "one (resnet18)" in params_text and "--archs resnet18 " in params_text


def test_params_plot_without_ood_has_one_panel(tmp_path):
    for regime in ("finetune", "scratch"):
        write_synthetic_trial(tmp_path, "resnet18", regime, 0, ood_kind="none")
    res = load_results(str(tmp_path))
    assert len(params_figure.params_plot(aggregate.regime_summary(res), res.ood_label).axes) == 1
