"""Accuracy against trainable parameters (the overparameterisation question: do bigger models do
worse with little data?), or the line of text saying which run would fill it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from analysis.figures import grid, legend, marker_kw, y_floor
from analysis.tables import fmt_params
from trainables.regimes import regime_label, regime_order


def params_missing(regimes: pd.DataFrame) -> str | None:
    """Why the accuracy-vs-parameters figure has nothing to show, with the run that would fill it."""
    archs = list(dict.fromkeys(regimes["arch"]))
    if len(archs) >= 2:
        return None
    have = f"one ({archs[0]})" if archs else "none"
    first = archs[0] if archs else "mobilenet_v2"
    others = " ".join(a for a in ("resnet18", "squeezenet1_0", "vgg11_bn") if a != first)
    return (f"Accuracy against trainable parameters needs at least two architectures; these results "
            f"have {have}. Fill it: rerun the sweep with `--archs {first} {others}` (the transfer "
            "regimes need each architecture's ImageNet weights: `python -m trainables.weights status`).")


def params_plot(regimes: pd.DataFrame, ood_label: str) -> Figure:
    """Test and OOD accuracy (mean and 95% interval over seeds and images: the `_lo`/`_hi` columns
    of analysis.aggregate.with_accuracies) against trainable parameters: colour =
    architecture, marker = regime. Regimes are nudged apart horizontally so that fine-tune and
    scratch (the same count) both show."""
    metrics = [("test_acc", "test accuracy (%)")]
    if regimes["ood_acc_mean"].notna().any():
        metrics.append(("ood_acc", f"{ood_label} accuracy (%)"))
    order = regime_order(regimes["regime"].unique().tolist())
    archs = list(dict.fromkeys(regimes["arch"]))
    fig, axes_list, legend_cols = grid(len(metrics), len(order) + len(archs), panel=(4.9, 3.6),
                                        right_gap=0.2)
    axes = [axes_list]
    nudge = {r: 1.12 ** (i - (len(order) - 1) / 2) for i, r in enumerate(order)}
    palette = plt.get_cmap("tab10")
    arch_color = {a: palette(i % 10) for i, a in enumerate(archs)}
    for ax, (metric, label) in zip(axes[0], metrics, strict=True):
        lows = []
        for _, row in regimes.iterrows():
            m = 100 * float(row[f"{metric}_mean"])
            if not np.isfinite(m):
                continue
            lo = 100 * float(row.get(f"{metric}_lo", np.nan))
            hi = 100 * float(row.get(f"{metric}_hi", np.nan))
            if not (np.isfinite(lo) and np.isfinite(hi)):
                lo = hi = m
            kw = marker_kw(row["regime"])
            kw["color"] = arch_color[row["arch"]]
            yerr = [[max(0.0, m - lo)], [max(0.0, hi - m)]]  # a mean at 0 or 100% can round past its bound
            ax.errorbar([row["trainable_params"] * nudge[row["regime"]]], [m], yerr=yerr,
                        linestyle="none", capsize=3, elinewidth=1, **kw)
            lows.append(lo)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: fmt_params(v)))
        ax.set_xlabel("trainable parameters (log scale)")
        ax.set_ylabel(label)
        ax.set_ylim(y_floor(lows), 101)
        ax.grid(alpha=0.25, linewidth=0.6, which="major")
    handles = [Line2D([], [], linestyle="none", label=regime_label(r),
                      **{**marker_kw(r), "color": "#333333"}) for r in order]
    handles += [Line2D([], [], linestyle="none", marker="o", markersize=7, color=arch_color[a], label=a)
                for a in archs]
    legend(fig, handles, legend_cols)
    fig.suptitle("Accuracy against trainable parameters (mean, 95% interval over seeds and images)",
                 fontsize=10.5)
    return fig
