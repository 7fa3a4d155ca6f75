"""Table I as data and as a figure: rows of images with one class-activation map per model
column (TableOne, built by analysis.gradcam.compute), drawn with one colour bar.

Rows = images (target class first, then the other classes), columns = image | ImageNet model |
transfer-trained model [| from-scratch model]. Each map is scaled to [0, 1] within its image by
pytorch-grad-cam, so the colour bar reads "weight within this image".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analysis.image_roots import ChosenImage


@dataclass
class CamRow:
    image: ChosenImage
    rgb: np.ndarray
    cams: list[np.ndarray]
    """One map per model column: ImageNet, transfer, [scratch]."""
    notes: list[str]
    """One caption per model column (what the model predicts)."""


@dataclass
class TableOne:
    arch: str
    columns: list[str]
    rows: list[CamRow]
    info: dict[str, Any] = field(default_factory=dict)


def figure(table: TableOne):
    """Rows = images, columns = image | ImageNet model | transfer model [| scratch model], one
    colour bar for all maps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    info = table.info
    ncols = len(table.columns)
    size = (2.35 * ncols + 1.0, 2.45 * len(table.rows) + 1.1)
    fig, axes = plt.subplots(len(table.rows), ncols, figsize=size, squeeze=False, layout="constrained")
    for r_i, (row, axs) in enumerate(zip(table.rows, axes, strict=True)):
        axs[0].imshow(row.rgb)
        marker = "target class" if row.image.label == info["target_class"] else "other class"
        axs[0].set_title(f"{Path(row.image.rel_path).name}\ntrue: {row.image.label} ({marker})",
                         fontsize=7.5)
        for ax, cam, note in zip(axs[1:], row.cams, row.notes, strict=True):
            ax.imshow(row.rgb)
            ax.imshow(cam, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
            ax.set_title(note, fontsize=7.5)
        for c_i, ax in enumerate(axs):
            ax.set_xticks([])
            ax.set_yticks([])
            if r_i == 0:
                ax.annotate(table.columns[c_i], xy=(0.5, 1.0), xycoords="axes fraction",
                            xytext=(0, 24), textcoords="offset points", ha="center", va="bottom",
                            fontsize=8.5, fontweight="bold")
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap="jet"), ax=axes[:, 1:].ravel().tolist(),
                       shrink=min(0.6, 2.0 / len(table.rows) + 0.2), aspect=25, pad=0.02)
    bar.set_label("Grad-CAM weight (scaled to [0, 1] in each image)", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    who = f"{info['regime']} seed {info['seed']}, trial {info['trial_id']}"
    if info["scratch_trial"]:
        who += f"; scratch seed {info['scratch_seed']}, trial {info['scratch_trial']}"
    layer = f"{info['layer']} ({'default' if info['layer_default'] else 'chosen'})"
    fig.suptitle(f"Table I · Grad-CAM ({info['method']}) of {info['arch']}, target layer {layer}\n"
                 f"{who}; train size {info['train_size']}", fontsize=9)
    return fig


def save(table: TableOne, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig = figure(table)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
