"""Spearman's rank correlation with an exact permutation p, for the handful of architectures a
study runs (ImageNet accuracy vs transfer; the size trend of the overparameterisation claim).
scipy's default p is asymptotic: at n = 3 it can print p < 0.001 where the exact p cannot go
below 1/3."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class RankCorrelation:
    rho: float
    p_value: float
    n: int
    exact: bool


def spearman_exact(x: Sequence[float], y: Sequence[float], exact_up_to: int = 8) -> RankCorrelation:
    """Spearman's rho with a two-sided permutation p over finite pairs: exact (every ordering)
    up to `exact_up_to` points, 50,000 seeded orderings above (never the asymptotic p, which is
    wrong for a handful of architectures: at n = 3 the smallest exact p is 1/3). NaNs below 3."""
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    n = len(xa)
    if n < 3 or np.ptp(xa) == 0 or np.ptp(ya) == 0:
        return RankCorrelation(math.nan, math.nan, n, True)
    rx, ry = sps.rankdata(xa), sps.rankdata(ya)
    exact = n <= exact_up_to

    def stat(b: np.ndarray, axis: int = -1) -> np.ndarray:
        a = rx - rx.mean()
        bc = b - b.mean(axis=axis, keepdims=True)
        return (a * bc).sum(axis=axis) / np.sqrt((a * a).sum() * (bc * bc).sum(axis=axis))

    res = sps.permutation_test((ry,), stat, vectorized=True, permutation_type="pairings",
                               n_resamples=math.factorial(n) if exact else 50_000,
                               alternative="two-sided", rng=np.random.default_rng(0))
    return RankCorrelation(float(stat(ry)), float(min(1.0, res.pvalue)), n, exact)
