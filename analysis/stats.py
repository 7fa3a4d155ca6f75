"""Small, exact statistics for the report: t-intervals across seeds and paired tests on images.

All functions take plain sequences or arrays and return plain numbers, so they are easy to test
against known answers (tests/test_stats.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

CONFIDENCE = 0.95


@dataclass(frozen=True)
class MeanCI:
    """Mean with a two-sided t confidence interval; `half` is NaN when n < 2."""

    mean: float
    half: float
    n: int

    @property
    def lo(self) -> float:
        return self.mean - self.half

    @property
    def hi(self) -> float:
        return self.mean + self.half


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> MeanCI:
    """Mean +/- t_{(1+c)/2, n-1} * s / sqrt(n) over the finite values (seeds are the samples)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return MeanCI(math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return MeanCI(mean, math.nan, 1)
    sem = float(x.std(ddof=1)) / math.sqrt(n)
    return MeanCI(mean, float(sps.t.ppf((1 + confidence) / 2, n - 1)) * sem, n)


def t_halfwidths(std: np.ndarray, n: np.ndarray, confidence: float = CONFIDENCE) -> np.ndarray:
    """Vectorised half-widths for many groups at once (NaN where n < 2)."""
    n = np.asarray(n, dtype=float)
    std = np.asarray(std, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        tq = sps.t.ppf((1 + confidence) / 2, np.where(n >= 2, n - 1, np.nan))
        return np.where(n >= 2, tq * std / np.sqrt(n), np.nan)


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test of two classifiers on the same images.

    b: images A gets right and B wrong; c: the reverse. Under H0 (equal accuracy) b ~ Bin(b+c, 1/2).
    """

    n: int
    acc_a: float
    acc_b: float
    b: int
    c: int
    p_value: float

    @property
    def diff(self) -> float:
        return self.acc_a - self.acc_b


def mcnemar_exact(correct_a: Sequence[bool] | np.ndarray, correct_b: Sequence[bool] | np.ndarray
                  ) -> McNemar:
    """Two-sided exact McNemar test (binomial on the discordant pairs); p = 1 when none differ."""
    a = np.asarray(correct_a, dtype=bool)
    b_ = np.asarray(correct_b, dtype=bool)
    if a.shape != b_.shape:
        raise ValueError(f"paired test needs the same images: {a.shape} vs {b_.shape}")
    n = len(a)
    b = int(np.sum(a & ~b_))
    c = int(np.sum(~a & b_))
    p = 1.0 if b + c == 0 else float(sps.binomtest(b, b + c, 0.5).pvalue)
    acc_a = float(a.mean()) if n else math.nan
    acc_b = float(b_.mean()) if n else math.nan
    return McNemar(n, acc_a, acc_b, b, c, min(p, 1.0))


def paired_bootstrap(correct_a: Sequence[bool] | np.ndarray, correct_b: Sequence[bool] | np.ndarray,
                     reps: int = 2000, seed: int = 0, confidence: float = CONFIDENCE
                     ) -> tuple[float, float, float]:
    """(acc_a - acc_b, lo, hi): percentile interval from resampling images with replacement,
    keeping each image's pair together."""
    a = np.asarray(correct_a, dtype=float)
    b = np.asarray(correct_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired test needs the same images: {a.shape} vs {b.shape}")
    if len(a) == 0:
        return math.nan, math.nan, math.nan
    d = a - b
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(reps, len(d)))
    boots = d[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    return float(d.mean()), float(lo), float(hi)


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, int]:
    """(rho, two-sided p, n) over finite pairs; NaNs when fewer than 3 pairs."""
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(xa) & np.isfinite(ya)
    n = int(keep.sum())
    if n < 3 or np.ptp(xa[keep]) == 0 or np.ptp(ya[keep]) == 0:
        return math.nan, math.nan, n
    res = sps.spearmanr(xa[keep], ya[keep])
    return float(res.statistic), float(res.pvalue), n
