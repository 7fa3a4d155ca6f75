"""The validation-accuracy band of Table II, defined once (see docs/analysis.md).

The study reports each architecture x regime as a band such as "98-100%": the range the
validation accuracy moves in once training has settled. Here that is made exact:

    plateau epochs = the epochs after the trial's last learning-rate step, i.e. the epochs whose
                     learning rate (the ``lr`` column, the rate an epoch trained with) is the rate
                     of the final epoch, after the last epoch that trained with a different one;
    band           = [min, max] of val_acc over the plateau epochs of every seed of the group.

With StepLR(7, 0.1) over 30 epochs the plateau is epochs 29-30; demo (15 epochs): epoch 15; smoke
(2 epochs, step 1): epoch 2. A trial whose rate never changes has all its epochs on the plateau.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

GROUP = ["arch", "regime", "train_size"]


def plateau_mask(epochs: pd.DataFrame) -> pd.Series:
    """True for each epoch row on its trial's plateau (after the last learning-rate step).

    `epochs` needs trial_id, epoch, lr. Rows may come in any order; the mask has the frame's index."""
    e = epochs[["trial_id", "epoch", "lr"]].reset_index(drop=True)
    order = e.sort_values(["trial_id", "epoch"], kind="stable")
    tid = order["trial_id"]
    last_lr = order.groupby(tid, sort=False)["lr"].transform("last")
    changed = ~np.isclose(order["lr"].to_numpy(float), last_lr.to_numpy(float), rtol=1e-6, atol=0.0)
    # NaN rates (not recorded): only the final epoch counts as the plateau.
    unknown = last_lr.isna().to_numpy()
    last_epoch = order.groupby(tid, sort=False)["epoch"].transform("max").to_numpy()
    changed = np.where(unknown, order["epoch"].to_numpy() < last_epoch, changed)
    boundary = (order["epoch"].where(changed).groupby(tid, sort=False).transform("max")
                .fillna(0).to_numpy())
    mask = np.empty(len(e), dtype=bool)
    mask[order.index.to_numpy()] = order["epoch"].to_numpy() > boundary
    return pd.Series(mask, index=epochs.index)


def val_bands(epochs: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """The band per group (default arch x regime x train size), pooled over its seeds.

    Columns: band_lo, band_hi (fractions), plateau_first, plateau_last (epochs), band (text)."""
    by = by or GROUP
    plateau = epochs[plateau_mask(epochs)]
    out = plateau.groupby(by, sort=False).agg(band_lo=("val_acc", "min"), band_hi=("val_acc", "max"),
                                              plateau_first=("epoch", "min"),
                                              plateau_last=("epoch", "max")).reset_index()
    for col in by:  # plain values, whatever the epochs frame's dtypes (categoricals from load)
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype(out[col].cat.categories.dtype)
    out["band"] = [format_band(lo, hi) for lo, hi in zip(out["band_lo"], out["band_hi"], strict=True)]
    return out


def pct(x: float) -> int:
    """Whole percent, halves rounded up (0.985 -> 99), as the study prints them."""
    return int(math.floor(x * 100.0 + 0.5 + 1e-9))


def format_band(lo: float, hi: float) -> str:
    """"98-100%", or a single value ("97%") when both ends round to the same percent."""
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return "n/a"
    a, b = pct(lo), pct(hi)
    return f"{a}%" if a == b else f"{a}-{b}%"


def format_epochs(first: int, last: int) -> str:
    return f"{first}" if first == last else f"{first}-{last}"
