"""Statistics for the report and the claims: t-intervals across seeds, paired tests on images,
and effects whose interval and p count both seeds and images (a two-level bootstrap with the
Bonett-Price adjustment, exact McNemar for one seed, Holm, TOST equivalence). docs/analysis.md
("Claims") says which is used where and why.

All functions take plain sequences or arrays and return plain numbers, so they are easy to test
against known answers (tests/unit/test_stats.py).
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


# ------------------------------------------------------------------------ effects with both noises
Z_POWER = float(sps.norm.ppf(0.80))
"""Power used for the smallest detectable effect (80%)."""
BOOTSTRAP_REPS = 4000
BOOTSTRAP_SEED = 0


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), in the input order; NaNs stay NaN."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    if m == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def bonett_price_interval(b: int, c: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Adjusted-Wald interval for a paired difference of proportions (Bonett & Price 2012):
    b, c = discordant counts (A right only, B right only) out of n pairs. With one pseudo pair
    added each way it keeps a width when the two classifiers agree on every image."""
    z = float(sps.norm.ppf((1 + confidence) / 2))
    pb, pc = (b + 1) / (n + 2), (c + 1) / (n + 2)
    d = pb - pc
    se = math.sqrt(max(pb + pc - d * d, 0.0) / (n + 2))
    return d - z * se, d + z * se


def two_level_bootstrap(values: np.ndarray, reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED,
                        pseudo: Sequence[float] = ()) -> np.ndarray:
    """Replicates of the grand mean of `values` (seeds x images), resampling seeds and images
    independently with replacement (a crossed design: every seed saw the same images).

    `pseudo` adds columns with these values to every seed before resampling (the paired
    difference uses (+1, -1): the Bonett-Price adjustment, one pseudo image each way)."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"need a non-empty seeds x images matrix, got shape {x.shape}")
    if len(pseudo):
        x = np.hstack([x, np.tile(np.asarray(pseudo, dtype=float), (x.shape[0], 1))])
    n_s, n_i = x.shape
    rng = np.random.default_rng(seed)
    w_seed = _draw_counts(rng, reps, n_s)
    w_img = _draw_counts(rng, reps, n_i)
    # Integer values (correctness differences) sum exactly in float32 while every partial sum
    # stays below 2^24: the same numbers as float64 at half the cost for thousands of seeds.
    if np.array_equal(x, np.round(x)) and float(np.abs(x).max(initial=0)) * n_s * n_i * 4 < 2 ** 24:
        w_seed, w_img, x = w_seed.astype(np.float32), w_img.astype(np.float32), x.astype(np.float32)
    # mean over the drawn (seed, image) cells = sum_s sum_i w_s x_si v_i / (n_s n_i)
    total = np.einsum("bi,bi->b", w_seed @ x, w_img).astype(np.float64)
    return total / (n_s * n_i)


def _draw_counts(rng: np.random.Generator, reps: int, n: int) -> np.ndarray:
    """reps x n: how often each of n units is drawn in n draws with replacement, per replicate."""
    idx = rng.integers(0, n, size=(reps, n)) + (np.arange(reps) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=reps * n).reshape(reps, n).astype(float)


def percentile_interval(replicates: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(np.asarray(replicates, dtype=float), [alpha, 1 - alpha])
    return float(lo), float(hi)


def bootstrap_p(replicates: np.ndarray, null: float = 0.0) -> float:
    """Two-sided p of `null` from bootstrap replicates: twice the smaller tail share (ties count
    in both tails), with the +1 correction so a finite number of draws never gives p = 0."""
    r = np.asarray(replicates, dtype=float)
    k = min(int(np.sum(r <= null)), int(np.sum(r >= null)))
    return min(1.0, 2.0 * (k + 1) / (len(r) + 1))


def tost_p(replicates: np.ndarray, margin: float) -> float:
    """Two one-sided tests of |effect| < margin from bootstrap replicates: the larger of the
    one-sided p's of "effect <= -margin" and "effect >= +margin". Equivalence at level alpha
    <=> p < alpha <=> the (1 - 2 alpha) percentile interval lies inside (-margin, +margin)."""
    r = np.asarray(replicates, dtype=float)
    n = len(r)
    p_low = (int(np.sum(r <= -margin)) + 1) / (n + 1)
    p_high = (int(np.sum(r >= margin)) + 1) / (n + 1)
    return min(1.0, max(p_low, p_high))


def tost_normal(estimate: float, se: float, margin: float) -> float:
    """The same TOST p under a normal approximation (for checks and hand calculation)."""
    p_low = float(sps.norm.sf((estimate + margin) / se))
    p_high = float(sps.norm.cdf((estimate - margin) / se))
    return max(p_low, p_high)


def min_detectable(se: float, alpha: float = 1 - CONFIDENCE, z_power: float = Z_POWER) -> float:
    """Smallest true effect a two-sided test at `alpha` finds with 80% power, given the
    standard error (normal approximation): (z_{1-alpha/2} + z_{0.8}) * se."""
    return (float(sps.norm.ppf(1 - alpha / 2)) + z_power) * se


@dataclass(frozen=True)
class Effect:
    """Difference A - B with a 95% interval and p, counting seeds and images as noise.

    estimate: mean over seeds of the per-seed accuracy difference on the shared images.
    lo, hi:   two-level (seeds x images) percentile bootstrap, Bonett-Price adjusted.
    p_value:  exact McNemar with one seed; the bootstrap's two-sided p with two or more.
    tost:     two-one-sided-tests p for |A - B| < margin (when a margin was given).
    """

    estimate: float
    lo: float
    hi: float
    p_value: float
    n_seeds: int
    n_images: int
    se: float
    method: str
    margin: float | None = None
    tost: float | None = None
    lo90: float | None = None
    hi90: float | None = None
    mcnemar: McNemar | None = None

    def mde(self, alpha: float = 1 - CONFIDENCE) -> float:
        return min_detectable(self.se, alpha)

    def text(self) -> str:
        """'+4.3 pp [-1.2, +9.8], p = 0.12 (3 seeds x 46 images)'."""
        return (f"{100 * self.estimate:+.1f} pp [{100 * self.lo:+.1f}, {100 * self.hi:+.1f}], "
                f"{fmt_p(self.p_value)} ({self.n_seeds} seed{'s' if self.n_seeds != 1 else ''}"
                f" × {self.n_images} images)")


def fmt_p(p: float | None, name: str = "p") -> str:
    """'p = 0.012', 'p < 0.001' (below what a 4000-draw bootstrap resolves), 'p n/a'."""
    if p is None or not math.isfinite(p):
        return f"{name} n/a"
    return f"{name} = {p:.2g}" if p >= 0.001 else f"{name} < 0.001"


def effect_of(values: np.ndarray, *, pseudo: Sequence[float] = (1.0, -1.0), margin: float | None = None,
              mcnemar: McNemar | None = None, reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED,
              confidence: float = CONFIDENCE) -> Effect:
    """The effect whose per-(seed, image) values are `values` (seeds x images): their mean, the
    two-level bootstrap interval, and p (the exact McNemar p when given, else the bootstrap's)."""
    x = np.atleast_2d(np.asarray(values, dtype=float))
    boots = two_level_bootstrap(x, reps=reps, seed=seed, pseudo=pseudo)
    lo, hi = percentile_interval(boots, confidence)
    n_s, n_i = x.shape
    if mcnemar is not None:
        p, method = mcnemar.p_value, "exact McNemar p; Bonett-Price adjusted bootstrap interval over images"
    else:
        p = bootstrap_p(boots)
        method = ("two-level bootstrap over seeds and images (Bonett-Price adjusted)" if n_s > 1 else
                  "bootstrap over images (Bonett-Price adjusted); one seed, so seed noise is not measured")
    out: dict = dict(estimate=float(x.mean()), lo=lo, hi=hi, p_value=p, n_seeds=n_s, n_images=n_i,
                     se=float(np.std(boots, ddof=1)), method=method, mcnemar=mcnemar)
    if margin is not None:
        lo90, hi90 = percentile_interval(boots, 1 - 2 * (1 - confidence))  # TOST's interval
        out.update(margin=margin, tost=tost_p(boots, margin), lo90=lo90, hi90=hi90)
    return Effect(**out)


def paired_effect(correct_a: np.ndarray, correct_b: np.ndarray, *, margin: float | None = None,
                  reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED,
                  confidence: float = CONFIDENCE) -> Effect:
    """Accuracy of A minus B on the same images, over seed-paired models (seeds x images arrays
    of 0/1 correctness; row s of A and of B are one seed's two models). With one seed, p is the
    exact McNemar test's; with more, the two-level bootstrap's."""
    a = np.atleast_2d(np.asarray(correct_a, dtype=float))
    b = np.atleast_2d(np.asarray(correct_b, dtype=float))
    if a.shape != b.shape:
        raise ValueError(f"paired effect needs the same seeds and images: {a.shape} vs {b.shape}")
    mc = mcnemar_exact(a[0].astype(bool), b[0].astype(bool)) if a.shape[0] == 1 else None
    return effect_of(a - b, margin=margin, mcnemar=mc, reps=reps, seed=seed, confidence=confidence)
