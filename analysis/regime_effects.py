"""Regimes compared over all their seeds: the numbers the answer box, Table II, the comparison
table and the transfer-vs-scratch claims share, so one question gets one number everywhere.

Per architecture and train size:

- *the transfer regime* is the one of the study's transfer regimes (fine-tune, feature
  extraction) with the higher mean best-val accuracy over its seeds (ties: more seeds, then the
  study's order). Chosen on validation only, so its test and OOD numbers are honest.
- *its accuracy* on a split is `analysis.stats.crossed_accuracy` over all its seeds and the
  split's images (mean, 95% interval over seeds and images);
- *transfer - scratch* is `analysis.stats.paired_effect` of every seed of the transfer regime
  against the same seed's scratch model on the same images, and its p is Holm-adjusted across
  every comparison shown (architectures x train sizes x splits), so that the box's count of
  significant results holds as a family.

Every interval is conditional on the one train/val/test split the sweep drew: a new split
would move every number (the report says so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pandas as pd

from analysis.aggregate import best_regime
from analysis.effects import Correctness, Pair, seed_pairs
from analysis.load import Results, arch_order, is_full_size
from analysis.stats import Effect, crossed_accuracy, fmt_p, holm, paired_effect
from trainables.regimes import SCRATCH, TRANSFER_REGIMES

SPLITS = ("test", "ood")


def sizes_smallest_first(res: Results) -> list[tuple[str, float]]:
    """(train size, mean training images per class), smallest first, "all" last."""
    per = res.trials.groupby("train_size")["train_images_per_class"].mean()
    sizes = sorted(per.index, key=lambda s: (is_full_size(s), per.get(s, math.inf)))
    return [(s, float(per.get(s, math.nan))) for s in sizes]


def chosen_transfer(trials: pd.DataFrame) -> dict[str, str]:
    """Per architecture (of these trials, one train size): its transfer regime."""
    out = {}
    for arch, sub in trials.groupby("arch", sort=False):
        regime = best_regime(sub, TRANSFER_REGIMES)
        if regime is not None:
            out[str(arch)] = regime
    return out


@dataclass(frozen=True)
class Comparison:
    """Transfer regime minus scratch, one architecture x train size x split, over all seeds."""

    arch: str
    train_size: str
    per_class: float
    split: str
    """"test" or "ood"."""
    split_label: str
    transfer_regime: str
    effect: Effect
    transfer: Effect
    scratch: Effect
    p_holm: float = math.nan
    dropped_images: int = 0

    @property
    def size_label(self) -> str:
        per = f"{self.per_class:.0f}" if math.isfinite(self.per_class) else "?"
        return f"all ({per}/class)" if is_full_size(self.train_size) else f"{per}/class"

    @property
    def cell(self) -> str:
        """'+30.4 [+17.2, +43.1] p = 0.001, Holm p = 0.004'."""
        holm_text = f", {fmt_p(self.p_holm, 'Holm p')}" if math.isfinite(self.p_holm) else ""
        return f"{self.effect.short()} {fmt_p(self.effect.p_value)}{holm_text}"


def compare(res: Results, corr: Correctness, sizes: list[str] | None = None) -> list[Comparison]:
    """Every architecture x train size (smallest first) x split with a transfer regime and
    scratch trials of the same seeds evaluated on shared images; Holm across all of them."""
    per_class = dict(sizes_smallest_first(res))
    out = []
    for size in sizes or list(per_class):
        at = res.trials[res.trials["train_size"] == size]
        chosen = chosen_transfer(at)
        scratch = at[at["regime"] == SCRATCH]
        for arch in arch_order(at["arch"].unique().tolist()):
            if arch not in chosen:
                continue
            transfer = at[at["regime"] == chosen[arch]]
            pairs = seed_pairs(transfer, scratch, arch)
            for split in SPLITS:
                c = _comparison(corr, pairs, split, res, arch, size, per_class.get(size, math.nan),
                                chosen[arch])
                if c is not None:
                    out.append(c)
    adjusted = holm([c.effect.p_value for c in out])
    return [replace(c, p_holm=float(q)) for c, q in zip(out, adjusted, strict=True)]


def _comparison(corr: Correctness, pairs: list[Pair], split: str, res: Results, arch: str, size: str,
                per_class: float, regime: str) -> Comparison | None:
    if not pairs:
        return None
    a, b, used, dropped = corr.paired(pairs, split)
    if not used or a.shape[1] < 2:
        return None
    label = "test" if split == "test" else res.ood_label
    return Comparison(arch, size, per_class, split, label, regime, paired_effect(a, b),
                      crossed_accuracy(a), crossed_accuracy(b), dropped_images=dropped)


def full_size(comparisons: list[Comparison], res: Results) -> list[Comparison]:
    return [c for c in comparisons if c.train_size == res.full_size]


def regime_accuracies(res: Results, corr: Correctness, size: str | None = None) -> pd.DataFrame:
    """Per architecture x regime (at `size`, default the full train size) and split: the crossed
    accuracy over all its seeds and the split's images. Columns arch, regime, split, mean, lo,
    hi, n_seeds, n_images, how; empty for splits without per-image predictions."""
    size = size or res.full_size
    at = res.trials[res.trials["train_size"] == size]
    rows = []
    for (arch, regime), g in at.groupby(["arch", "regime"], sort=False):
        ids = g.sort_values("seed")["trial_id"].astype(str).tolist()
        for split in SPLITS:
            x, used, _ = corr.seeds_by_images(ids, split)
            if not used or x.shape[1] < 2:
                continue
            e = crossed_accuracy(x)
            rows.append({"arch": arch, "regime": regime, "split": split, "mean": e.estimate, "lo": e.lo,
                         "hi": e.hi, "n_seeds": e.n_seeds, "n_images": e.n_images, "how": e.method})
    return pd.DataFrame(rows, columns=["arch", "regime", "split", "mean", "lo", "hi", "n_seeds", "n_images",
                                       "how"])


def accuracy_text(mean: float, lo: float, hi: float, n_seeds: int) -> str:
    """'93.5 [88.1, 96.9]' (percent)."""
    if not math.isfinite(mean):
        return "n/a"
    if not math.isfinite(lo):
        return f"{100 * mean:.1f} ({n_seeds} seed{'s' if n_seeds != 1 else ''})"
    return f"{100 * mean:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def comparisons_frame(comparisons: list[Comparison]) -> pd.DataFrame:
    """paired.csv: one row per comparison with every number."""
    rows = []
    for c in comparisons:
        e = c.effect
        rows.append({"arch": c.arch, "train_size": c.train_size, "per_class": c.per_class, "split": c.split,
                     "transfer_regime": c.transfer_regime, "seeds": e.n_seeds, "images": e.n_images,
                     "acc_transfer": c.transfer.estimate, "acc_transfer_lo": c.transfer.lo,
                     "acc_transfer_hi": c.transfer.hi, "acc_scratch": c.scratch.estimate,
                     "acc_scratch_lo": c.scratch.lo, "acc_scratch_hi": c.scratch.hi, "diff": e.estimate,
                     "diff_lo": e.lo, "diff_hi": e.hi, "p_value": e.p_value, "p_holm": c.p_holm,
                     "images_dropped": c.dropped_images})
    return pd.DataFrame(rows, columns=["arch", "train_size", "per_class", "split", "transfer_regime", "seeds",
                                       "images", "acc_transfer", "acc_transfer_lo", "acc_transfer_hi",
                                       "acc_scratch", "acc_scratch_lo", "acc_scratch_hi", "diff", "diff_lo",
                                       "diff_hi", "p_value", "p_holm", "images_dropped"])
