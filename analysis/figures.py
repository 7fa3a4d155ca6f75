"""Fig. 2 (val accuracy per epoch, one panel per architecture), the learning curves, and the
layout helpers every figure shares. Matplotlib's Agg backend; each function returns the Figure.

The study's markers: square = fine-tune, x = feature extraction, circle = scratch. Fig. 2 draws
each regime's mean over seeds with a shaded band from the lowest to the highest seed; horizontal
lines mark the test accuracy of the regime best on validation (dotted), the OOD accuracy of the
transfer regime chosen on validation (solid) and of scratch (dashed), means over seeds, and the
accuracy of always answering the most common class (dash-dot, grey; also on the learning curves).

A figure with nothing to compare (one train size on the learning curves) is not drawn:
`learning_curves_missing` says which run would fill it, and the report prints that line instead.
The accuracy-vs-parameters plot: analysis.params_figure.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from analysis.load import is_full_size  # noqa: E402
from analysis.one_class import Majority  # noqa: E402
from analysis.tables import fmt_params  # noqa: E402
from trainables.regimes import SCRATCH, regime_label, regime_order, regime_record  # noqa: E402

OOD_COLOR = "#b0204a"
MAJORITY_COLOR = "#8a8a8a"
TEST_COLOR = "#222222"
BAND_ALPHA = 0.16
SEED_POINT = {"s": 10, "alpha": 0.55}
MAX_SEED_POINTS = 30
"""Learning curves draw each seed as a point up to this many seeds per regime and train size;
beyond it the points would be a smear (and a slow PDF), so only the mean and the band remain."""


def grid(n: int, n_legend: int, ncols_max: int = 3, panel: tuple[float, float] = (4.4, 3.3),
          right_gap: float = 0.25, title_lines: int = 1) -> tuple[Figure, list, int]:
    """A grid of n panels with fixed margins (in inches) and room for a figure legend below.

    Fixed margins instead of a layout engine: the engine measures every text several times per
    save, which costs seconds on a 7-panel figure. `right_gap` leaves room on each panel's right
    for the labels of its horizontal lines. Returns (figure, axes, legend columns)."""
    n = max(n, 1)
    ncols = min(ncols_max, n)
    nrows = math.ceil(n / ncols)
    left, top_title, xlabel, ylabel = 0.65, 0.22 + 0.17 * title_lines, 0.5, 0.62
    gap_w = ylabel + right_gap
    gap_h = xlabel + top_title
    needed = left + ncols * panel[0] + (ncols - 1) * gap_w + right_gap + 0.15
    width = max(needed, 7.0)
    left += (width - needed) / 2  # a narrow grid is centred
    legend_cols = max(1, min(n_legend, int(width // 3.0)))
    legend_h = 0.22 * math.ceil(n_legend / legend_cols) + 0.2
    height = top_title + 0.1 + nrows * panel[1] + (nrows - 1) * gap_h + xlabel + legend_h
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False)
    used_w = ncols * panel[0] + (ncols - 1) * gap_w
    fig.subplots_adjust(left=left / width, right=(left + used_w) / width,
                        top=1 - (top_title + 0.1) / height, bottom=(xlabel + legend_h) / height,
                        wspace=gap_w / panel[0], hspace=gap_h / panel[1])
    flat = list(axes.ravel())
    for ax in flat[n:]:
        fig.delaxes(ax)
    return fig, flat[:n], legend_cols


def legend(fig: Figure, handles: list, ncol: int) -> None:
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.005), ncol=ncol,
               fontsize=8.5, frameon=False)


def marker_kw(regime: str) -> dict:
    marker = regime_record(regime).marker
    kw = {"marker": marker, "color": regime_record(regime).colour, "markersize": 5.5}
    if marker != "x":
        kw["markerfacecolor"] = "white"
        kw["markeredgewidth"] = 1.4
    else:
        kw["markeredgewidth"] = 1.8
    return kw


def params_title(arch: str, regimes: pd.DataFrame) -> str:
    sub = regimes[regimes["arch"] == arch]
    parts = [f"{regime_record(r['regime']).short} {fmt_params(r['trainable_params'])}"
             for _, r in sub.iterrows()]
    return f"{arch}\ntrainable params: {' · '.join(parts)}"


def fig2(curves: pd.DataFrame, regimes: pd.DataFrame, choice: pd.DataFrame, ood_label: str,
         majority: Majority | None = None) -> Figure:
    """One panel per architecture: val accuracy (%) per epoch at the full train size. `choice`:
    analysis.aggregate.regime_choice (the lines); `majority`: the validation split's majority
    class (analysis.one_class), drawn as the accuracy a model that learnt nothing gets."""
    archs = list(dict.fromkeys(regimes["arch"]))
    all_regimes = regime_order(curves["regime"].unique().tolist())
    fig, axes, legend_cols = grid(len(archs), len(all_regimes) + 4, right_gap=0.95, title_lines=2)
    for ax, arch in zip(axes, archs, strict=True):
        sub = curves[curves["arch"] == arch]
        lows = []
        for regime in regime_order(sub["regime"].unique().tolist()):
            r = sub[sub["regime"] == regime]
            color = regime_record(regime).colour
            per_epoch = r.groupby("epoch")["val_acc"].agg(["mean", "min", "max"])
            x = per_epoch.index.to_numpy(float)
            if r["seed"].nunique() > 1:
                ax.fill_between(x, 100 * per_epoch["min"].to_numpy(), 100 * per_epoch["max"].to_numpy(),
                                color=color, alpha=BAND_ALPHA, linewidth=0, zorder=2)
            ax.plot(x, 100 * per_epoch["mean"].to_numpy(), linewidth=2.2, zorder=3,
                    markevery=max(1, len(x) // 10), **marker_kw(regime))
            lows.append(100 * r["val_acc"].min())
        b = choice[choice["arch"] == arch]
        b = b.iloc[0] if not b.empty else pd.Series(dtype=object)
        hlines = []
        top_test = b.get("top_test")
        if top_test is not None and isinstance(top_test, float) and np.isfinite(top_test):
            hlines.append((100 * top_test, dict(color=TEST_COLOR, linestyle=":", linewidth=1.4),
                           f"test {100 * top_test:.0f}%"))
        if majority is not None:
            hlines.append((100 * majority.accuracy, dict(color=MAJORITY_COLOR, linestyle="-.", linewidth=1.2),
                           f"majority {100 * majority.accuracy:.0f}%"))
        for tag, style in (("transfer", "-"), (SCRATCH, "--")):
            value = b.get(f"{tag}_ood")
            if value is not None and isinstance(value, float) and np.isfinite(value):
                hlines.append((100 * value, dict(color=OOD_COLOR, linestyle=style, linewidth=1.4),
                               f"OOD {tag} {100 * value:.0f}%"))
        for y, kw, _label in hlines:
            ax.axhline(y, zorder=1, **kw)
            lows.append(y)
        max_epoch = int(sub["epoch"].max()) if not sub.empty else 1
        ax.set_xlim(0.5, max_epoch + 0.5)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        low = min(lows) if lows else 0.0
        ax.set_ylim(max(0.0, 10 * math.floor((low - 3) / 10)), 101)
        ax.set_title(params_title(arch, regimes), fontsize=9.5)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(alpha=0.25, linewidth=0.6)
        # Label the horizontal lines on the right edge, without overlapping each other.
        placed: list[float] = []
        for y, kw, label in sorted(hlines, key=lambda h: h[0]):
            y_text = y
            while any(abs(y_text - p) < 4.0 for p in placed):
                y_text += 4.0
            placed.append(y_text)
            ax.annotate(label, xy=(1.0, y_text), xycoords=("axes fraction", "data"), xytext=(3, 0),
                        textcoords="offset points", va="center", fontsize=7.5, color=kw["color"],
                        annotation_clip=False)
    handles = [Line2D([], [], linewidth=2.2, label=regime_label(r), **marker_kw(r))
               for r in all_regimes]
    handles += [Patch(color="#777777", alpha=0.35, linewidth=0, label="range over seeds (min-max)"),
                Line2D([], [], color=TEST_COLOR, linestyle=":", linewidth=1.4,
                       label="test accuracy, regime best on validation (mean)"),
                Line2D([], [], color=OOD_COLOR, linestyle="-", linewidth=1.4,
                       label=f"{ood_label}, transfer regime (mean)"),
                Line2D([], [], color=OOD_COLOR, linestyle="--", linewidth=1.4,
                       label=f"{ood_label}, scratch (mean)")]
    if majority is not None:
        handles.append(Line2D([], [], color=MAJORITY_COLOR, linestyle="-.", linewidth=1.2,
                              label=f"val: always '{majority.label}' ({majority.count}/{majority.total})"))
    legend(fig, handles, legend_cols)
    return fig


def learning_curves_missing(lc: pd.DataFrame) -> str | None:
    """Why the learning-curve figure has nothing to show, with the run that would fill it."""
    sizes = list(dict.fromkeys(lc["train_size"]))
    if len(sizes) >= 2:
        return None
    have = f"one ({sizes[0]})" if sizes else "none"
    return (f"Learning curves need at least two train sizes; these results have {have}. Fill them: "
            "rerun the sweep with the same --name and `--train-sizes 10 all` (finished trials are "
            "kept, only the new sizes run).")


def _size_label(x: float, sizes: pd.DataFrame) -> str:
    """Tick label of a train size: its images per class, "(all)" under the full size."""
    match = sizes[np.isclose(sizes["x"], x)]
    full = not match.empty and is_full_size(str(match.iloc[0]["train_size"]))
    return f"{x:.0f}\n(all)" if full else f"{x:.0f}"


def learning_curves(lc: pd.DataFrame, trials: pd.DataFrame, ood_label: str,
                    majority: dict[str, Majority] | None = None) -> Figure:
    """Accuracy against training images per class (log axis): one row per architecture, test and
    OOD side by side. Per regime: every seed as a point, the mean across seeds as a line, and
    the range over seeds (min-max) shaded. `lc`: analysis.aggregate.learning_curves; `trials`:
    the per-trial rows (for the points); `majority`: per split ("test", "ood"), its majority class,
    drawn as the accuracy of always answering it."""
    archs = list(dict.fromkeys(lc["arch"]))
    metrics = [("test_acc", "test accuracy (%)")]
    if lc["ood_acc_mean"].notna().any():
        metrics.append(("ood_acc", f"{ood_label} accuracy (%)"))
    regimes_present = regime_order(lc["regime"].unique().tolist())
    fig, axes, legend_cols = grid(len(archs) * len(metrics), len(regimes_present) + 3,
                                   ncols_max=len(metrics), panel=(4.6, 3.2))
    nudge = {r: 1.05 ** (i - (len(regimes_present) - 1) / 2) for i, r in enumerate(regimes_present)}
    sizes = lc[["train_size", "x"]].drop_duplicates()
    keys = ["arch", "regime", "train_size"]
    trials = trials[keys + [m for m, _ in metrics]].merge(lc[keys + ["x"]], on=keys, how="left")
    panels = [(arch, metric) for arch in archs for metric in metrics]
    points_drawn = majority_drawn = False
    for ax, (arch, (metric, ylabel)) in zip(axes, panels, strict=True):
        sub = lc[lc["arch"] == arch]
        lows = []
        for regime in regime_order(sub["regime"].unique().tolist()):
            r = sub[sub["regime"] == regime].sort_values("x")
            kw = marker_kw(regime)
            pts = trials[(trials["arch"] == arch) & (trials["regime"] == regime)]
            y_pts = 100 * pts[metric].to_numpy(float)
            few = pts.groupby("train_size").size().max() <= MAX_SEED_POINTS if len(pts) else False
            if few and np.isfinite(y_pts).any():
                points_drawn = True
                ax.scatter(pts["x"].to_numpy(float) * nudge[regime], y_pts, color=kw["color"],
                           marker=kw["marker"], linewidths=0.9,
                           zorder=2, **SEED_POINT, facecolors="none" if kw["marker"] != "x" else None)
            if np.isfinite(y_pts).any():
                lows.append(np.nanmin(y_pts))
            spread = pts.groupby("x")[metric].agg(["min", "max"]).sort_index()
            if len(spread) > 1 and pts.groupby("x")[metric].count().max() > 1:
                ax.fill_between(spread.index.to_numpy(float) * nudge[regime], 100 * spread["min"].to_numpy(),
                                100 * spread["max"].to_numpy(), color=kw["color"], alpha=0.12, linewidth=0)
            m = 100 * r[f"{metric}_mean"].to_numpy(float)
            if np.isfinite(m).any():
                ax.plot(r["x"].to_numpy(float) * nudge[regime], m, linewidth=1.8, zorder=3, **kw)
                lows.append(np.nanmin(m))
        xs = np.unique(sub["x"].to_numpy(float))
        xs = xs[np.isfinite(xs) & (xs > 0)]
        if len(xs):
            ax.set_xscale("log")
            ax.set_xlim(xs.min() / 1.35, xs.max() * 1.35)
            if len(xs) <= 12:  # label the sizes trained on, in plain numbers
                ax.set_xticks(xs, [_size_label(x, sizes) for x in xs])
                ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        floor = (majority or {}).get(metric.removesuffix("_acc"))
        if floor is not None:
            ax.axhline(100 * floor.accuracy, color=MAJORITY_COLOR, linestyle="-.", linewidth=1.2, zorder=1)
            lows.append(100 * floor.accuracy)
            majority_drawn = True
        ax.set_title(f"{arch}: {ylabel.removesuffix(' (%)')}", fontsize=10)
        ax.set_xlabel("training images per class (log scale)")
        ax.set_ylabel(ylabel)
        ax.set_ylim(y_floor(lows), 101)
        ax.grid(alpha=0.25, linewidth=0.6)
    handles = [Line2D([], [], linewidth=1.8, label=f"{regime_label(r)} (mean over seeds)",
                      **marker_kw(r)) for r in regimes_present]
    if points_drawn:
        handles.append(Line2D([], [], linestyle="none", marker="o", markerfacecolor="none",
                              color="#555555", label="one seed"))
    handles.append(Patch(color="#777777", alpha=0.3, linewidth=0, label="range over seeds (min-max)"))
    if majority_drawn:
        handles.append(Line2D([], [], color=MAJORITY_COLOR, linestyle="-.", linewidth=1.2,
                              label="always the most common class"))
    legend(fig, handles, legend_cols)
    return fig


def y_floor(lows: list[float]) -> float:
    """A y-axis bottom a little under the lowest value, on a multiple of 10, never below 0."""
    finite = [v for v in lows if np.isfinite(v)]
    return max(0.0, 10 * math.floor((min(finite) - 3) / 10)) if finite else 0.0


def save(fig: Figure, out_dir: Path, name: str, pdf: bool = True) -> list[Path]:
    """Write NAME.png (150 dpi) and, with `pdf`, NAME.pdf; closes the figure."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png"]
    fig.savefig(paths[0], dpi=150)
    if pdf:
        paths.append(out_dir / f"{name}.pdf")
        fig.savefig(paths[1])
    plt.close(fig)
    return paths
