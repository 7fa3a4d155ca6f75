"""The validation-accuracy band of Table II, defined once (see docs/analysis.md).

The study prints each architecture x regime as a band such as "98-100%": the range its
validation accuracy moved in once training had settled, read off the curves by hand. No rule
reproduces a range read by eye exactly; this module fixes one rule, the same for every
architecture and regime, as the project's convention:

    band epochs = the second half of each trial: the epochs after floor(E / 2), where E is the
                  trial's last epoch (30 epochs: 16-30; 15: 8-15; 2: 2; 1: 1);
    band        = [min, max] of val_acc over the band epochs of every seed of the group.

On the study's own 18 validation logs this lands within 4.6 points of every printed endpoint,
0.8 points on average (tests/unit/test_paper_study.py; the alternatives tried are in
docs/analysis.md). Other rules stay available (`BandRule.parse`, `--band-from-epoch`): a fixed
first epoch N, or "last-lr-step" (the epochs after the trial's last learning-rate step, this
project's earlier rule: epochs 29-30 under StepLR(7, 0.1) over 30 epochs).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trainables.errors import UserError

GROUP = ["arch", "regime", "train_size"]
HALF, LAST_LR_STEP, FROM = "half", "last-lr-step", "from"
BAND_RULE_HELP = ("which epochs of each trial make its validation band: 'half' (default: the second "
                  "half of the trial's epochs), 'last-lr-step' (the epochs after the last "
                  "learning-rate step) or a number N (epochs N to the last)")


@dataclass(frozen=True)
class BandRule:
    """Which epochs of a trial count towards its band (module docstring)."""

    kind: str = HALF
    from_epoch: int | None = None

    @classmethod
    def parse(cls, text: str | int | BandRule | None) -> BandRule:
        """'half', 'last-lr-step' or a first epoch N >= 1; anything else is a UserError."""
        if text is None:
            return cls()
        if isinstance(text, BandRule):
            return text
        value = str(text).strip().lower()
        if value == HALF:
            return cls(HALF)
        if value in (LAST_LR_STEP, "last_lr_step"):
            return cls(LAST_LR_STEP)
        if re.fullmatch(r"\d+", value) and int(value) >= 1:
            return cls(FROM, int(value))
        raise UserError(f"--band-from-epoch {text!r} is not valid: use 'half', 'last-lr-step' or an "
                        "epoch number >= 1")

    @property
    def spec(self) -> str:
        """The value that gives this rule back through `parse` (and on the command line)."""
        return str(self.from_epoch) if self.kind == FROM else self.kind

    def describe(self) -> str:
        """One sentence for legends and reports."""
        if self.kind == HALF:
            which = "the second half of each trial's epochs (after epoch ⌊E/2⌋ of E)"
        elif self.kind == LAST_LR_STEP:
            which = "the epochs after each trial's last learning-rate step"
        else:
            which = f"epochs {self.from_epoch} to the last of each trial"
        return (f"validation-accuracy range (min-max, pooled over seeds) over {which}; the project's "
                f"convention (--band-from-epoch {self.spec}) for a range the study read off its "
                "curves by hand, not an exact reproduction of it")

    def mask(self, epochs: pd.DataFrame) -> pd.Series:
        """True for each epoch row inside its trial's band. Needs trial_id and epoch (and lr for
        'last-lr-step'); rows may come in any order; the mask has the frame's index."""
        if self.kind == LAST_LR_STEP:
            return plateau_mask(epochs)
        last = epochs.groupby(epochs["trial_id"], sort=False, observed=True)["epoch"].transform("max")
        if self.kind == HALF:
            first = last // 2 + 1
        else:  # a fixed first epoch, but never past the trial's own last epoch
            first = np.minimum(self.from_epoch, last)
        return pd.Series(epochs["epoch"].to_numpy() >= np.asarray(first), index=epochs.index)


DEFAULT_RULE = BandRule()


def plateau_mask(epochs: pd.DataFrame) -> pd.Series:
    """True for each epoch row after its trial's last learning-rate step (the "last-lr-step" rule).

    `epochs` needs trial_id, epoch, lr. Rows may come in any order; the mask has the frame's index."""
    e = epochs[["trial_id", "epoch", "lr"]].reset_index(drop=True)
    order = e.sort_values(["trial_id", "epoch"], kind="stable")
    tid = order["trial_id"]
    last_lr = order.groupby(tid, sort=False, observed=True)["lr"].transform("last")
    changed = ~np.isclose(order["lr"].to_numpy(float), last_lr.to_numpy(float), rtol=1e-6, atol=0.0)
    # NaN rates (not recorded): only the final epoch counts as the plateau.
    unknown = last_lr.isna().to_numpy()
    last_epoch = order.groupby(tid, sort=False, observed=True)["epoch"].transform("max").to_numpy()
    changed = np.where(unknown, order["epoch"].to_numpy() < last_epoch, changed)
    boundary = (order["epoch"].where(changed).groupby(tid, sort=False, observed=True).transform("max")
                .fillna(0).to_numpy())
    mask = np.empty(len(e), dtype=bool)
    mask[order.index.to_numpy()] = order["epoch"].to_numpy() > boundary
    return pd.Series(mask, index=epochs.index)


def val_bands(epochs: pd.DataFrame, by: list[str] | None = None,
              rule: BandRule | str | None = None) -> pd.DataFrame:
    """The band per group (default arch x regime x train size), pooled over its seeds.

    Columns: band_lo, band_hi (fractions), plateau_first, plateau_last (the first and last epoch
    inside the band, over the group's trials), band (text), band_rule (the rule's spec)."""
    by = by or GROUP
    rule = BandRule.parse(rule)
    inside = epochs[rule.mask(epochs)]
    out = inside.groupby(by, sort=False, observed=True).agg(
        band_lo=("val_acc", "min"), band_hi=("val_acc", "max"), plateau_first=("epoch", "min"),
        plateau_last=("epoch", "max")).reset_index()
    for col in by:  # plain values, whatever the epochs frame's dtypes (categoricals from load)
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype(out[col].cat.categories.dtype)
    out["band"] = [format_band(lo, hi) for lo, hi in zip(out["band_lo"], out["band_hi"], strict=True)]
    out["band_rule"] = rule.spec
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


def parse_band(text: str) -> tuple[float, float]:
    """(lo, hi) in percent from a printed band: "98-100%" -> (98, 100), "90%" -> (90, 90)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%?\s*(?:[-–]\s*(\d+(?:\.\d+)?)\s*%?)?\s*", str(text))
    if not m:
        raise ValueError(f"not a band: {text!r} (expected e.g. '98-100%' or '90%')")
    lo = float(m.group(1))
    hi = float(m.group(2)) if m.group(2) is not None else lo
    return lo, hi


def format_epochs(first: int, last: int) -> str:
    return f"{first}" if first == last else f"{first}-{last}"
