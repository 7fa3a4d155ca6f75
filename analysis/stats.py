"""Statistics for the report and the claims: accuracies and differences over a crossed design of
seeds x images, with a 95% interval and a p from one calculation, so they cannot disagree.

Every seed's model sees the same images, so per-image correctness is a seeds x images table whose
grand mean varies for three reasons: which seeds were run (large for an unstable scratch run),
which images were drawn (46 test images are a small sample), and which images a seed happens to
get right. From the table's two-way ANOVA the half-width of the 95% interval is

    sqrt(t(S-1)^2 MS_seed / (S I) + t(I-1)^2 max(MS_image - MS_resid, floor) / (S I))

the classic t-interval across the seeds' means (it holds the seed x image noise too) and the
image sampling those means share, added in quadrature; p is the level at which the interval
reaches 0. With one seed: the images alone, and the text says so. The floor keeps a width when
every answer agrees. Why this and not Satterthwaite's degrees of freedom or a bootstrap, and the
simulation that checks it (bench/calibration.py): docs/analysis.md, "Calibration".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps
from scipy.optimize import brentq
from scipy.special import stdtrit

ALPHA = 0.05
"""Significance level of every test in the report (two-sided; TOST and non-inferiority at this
level use the 90% interval)."""
CONFIDENCE = 1 - ALPHA
Z_POWER = float(sps.norm.ppf(0.80))
"""Power used for the smallest detectable effect (80%)."""
FEW_SEEDS = 3
"""Below this many seeds the seed variance rests on one degree of freedom (or none), and the
effect's text says so."""


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
    """Mean +/- t_{(1+c)/2, n-1} * s / sqrt(n) over the finite values."""
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


def wilson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (NaNs when n = 0)."""
    if n <= 0:
        return math.nan, math.nan
    ci = sps.binomtest(int(k), int(n)).proportion_ci(confidence, method="wilson")
    return float(ci.low), float(ci.high)


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


# ------------------------------------------------------------------- the crossed seeds x images mean
@dataclass(frozen=True)
class Crossed:
    """The grand mean of a seeds x images table and the two parts of its variance.

    var_seeds:  MS_seed / (S I), the squared standard error of the mean across seeds (what a
                t-interval over the per-seed means uses; it holds the seed x image noise too);
                t with S - 1 degrees of freedom. NaN with one seed.
    var_images: max(MS_image - MS_resid, 0) / (S I), the image-sampling variance the per-seed
                means share (an interval across seeds leaves it out), floored at `floor`;
                t with I - 1 degrees of freedom (with one seed: all of MS_image / I)."""

    mean: float
    var_seeds: float
    var_images: float
    n_seeds: int
    n_images: int

    @property
    def se(self) -> float:
        return math.sqrt(self.var_images + (self.var_seeds if self.n_seeds > 1 else 0.0))

    def half(self, confidence: float = CONFIDENCE) -> float:
        """Half-width of the two-sided interval: the across-seeds and the across-images
        half-widths added in quadrature (each with its own t quantile)."""
        level = (1 + confidence) / 2  # stdtrit: scipy's t quantile without the distribution overhead
        h2 = float(stdtrit(self.n_images - 1, level)) ** 2 * self.var_images
        if self.n_seeds > 1:
            h2 += float(stdtrit(self.n_seeds - 1, level)) ** 2 * self.var_seeds
        return math.sqrt(h2)

    def level(self, distance: float) -> float:
        """The two-sided level alpha at which half(1 - alpha) = |distance| (the dual p): 1 at
        distance 0, smaller the further the estimate lies from the null."""
        d = abs(distance)
        if d == 0:
            return 1.0
        if self.se == 0:
            return 0.0
        if self.half(1 - 1e-15) <= d:
            return 1e-15
        return float(brentq(lambda a: self.half(1 - a) - d, 1e-15, 1.0, xtol=1e-12, rtol=1e-10))

    def one_sided_p(self, distance: float) -> float:
        """p of the one-sided test whose null lies `distance` below the estimate (negative:
        above it), dual to the one-sided bound centre - half(1 - 2 p)."""
        a = self.level(distance) / 2
        return a if distance > 0 else 1 - a


def crossed_mean(values: np.ndarray, floor: float = 0.0) -> Crossed:
    """Two-way ANOVA of `values` (seeds x images; every seed saw every image): the grand mean and
    the two variance parts above. `floor` is the smallest image-part variance allowed (so that
    a table of identical answers still has an interval)."""
    x = np.atleast_2d(np.asarray(values, dtype=float))
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] < 2:
        raise ValueError(f"need a seeds x images table with 2+ images, got shape {x.shape}")
    s, i = x.shape
    grand = float(x.mean())
    ms_image = s * float(np.sum((x.mean(axis=0) - grand) ** 2)) / (i - 1)
    if s == 1:  # one seed: the images only; seed noise cannot be measured
        return Crossed(grand, math.nan, max(ms_image / i, floor), 1, i)
    ms_seed = i * float(np.sum((x.mean(axis=1) - grand) ** 2)) / (s - 1)
    resid = x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + grand
    ms_resid = float(np.sum(resid ** 2)) / ((s - 1) * (i - 1))
    return Crossed(grand, ms_seed / (s * i), max((ms_image - ms_resid) / (s * i), floor), s, i)


def _seed_note(n_seeds: int) -> str:
    if n_seeds == 1:
        return "1 seed: seed noise is not measured, the interval and p count the images only (run 3+ seeds)"
    if n_seeds < FEW_SEEDS:
        return (f"{n_seeds} seeds: the seed variance rests on {n_seeds - 1} degree of freedom, so the "
                "interval is wide (run 3+ seeds)")
    return ""


@dataclass(frozen=True)
class Effect:
    """A difference A - B (or one accuracy) with its 95% interval and p, counting seeds and images.

    estimate: mean over seeds and images (the mean per-seed accuracy difference);
    lo, hi:   95% interval of the crossed design (analysis.stats.crossed_mean);
    p_value:  two-sided p of "no difference", dual to the interval (p < 0.05 exactly when the
              interval excludes 0); NaN for an accuracy;
    tost:     two one-sided tests p of |A - B| < margin; noninferiority: p of the null
              A - B <= -margin (both when a margin was given); lo90, hi90: the 90% interval."""

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
    noninferiority: float | None = None

    def mde(self, alpha: float = ALPHA) -> float:
        """Smallest true difference a two-sided test at `alpha` finds with 80% power (normal
        approximation from the standard error)."""
        return min_detectable(self.se, alpha)

    @property
    def note(self) -> str:
        """Why the interval is wide or conditional (few seeds), else ""."""
        return _seed_note(self.n_seeds)

    def short(self) -> str:
        """'+4.3 [-1.2, +9.8]' (percentage points)."""
        return f"{100 * self.estimate:+.1f} [{100 * self.lo:+.1f}, {100 * self.hi:+.1f}]"

    def text(self) -> str:
        """'+4.3 pp [-1.2, +9.8], p = 0.12 (3 seeds × 46 images)'."""
        return (f"{100 * self.estimate:+.1f} pp [{100 * self.lo:+.1f}, {100 * self.hi:+.1f}], "
                f"{fmt_p(self.p_value)} ({self.n_seeds} seed{'s' if self.n_seeds != 1 else ''}"
                f" × {self.n_images} images)")


def fmt_p(p: float | None, name: str = "p") -> str:
    """'p = 0.012', 'p < 0.001', 'p n/a'."""
    if p is None or not math.isfinite(p):
        return f"{name} n/a"
    return f"{name} = {p:.2g}" if p >= 0.001 else f"{name} < 0.001"


def min_detectable(se: float, alpha: float = ALPHA, z_power: float = Z_POWER) -> float:
    """Smallest true effect a two-sided test at `alpha` finds with 80% power, given the standard
    error (normal approximation): (z_{1-alpha/2} + z_{0.8}) * se."""
    return (float(sps.norm.ppf(1 - alpha / 2)) + z_power) * se


METHOD = ("crossed seeds x images: t across seeds (S - 1 df) and t across images (I - 1 df), "
          "half-widths added in quadrature")


def effect_of(values: np.ndarray, *, margin: float | None = None, confidence: float = CONFIDENCE,
              bounds: tuple[float, float] = (-1.0, 1.0)) -> Effect:
    """The effect whose per-(seed, image) values are `values` (seeds x images of differences in
    [-1, 1]): their mean, the crossed-design interval (clipped to `bounds`) and its dual p, and
    with a margin the TOST and non-inferiority p from the same half-widths. The image part's
    variance is at least Bonett and Price's for one image each way on I images, 2 / (I + 2)^2."""
    x = np.atleast_2d(np.asarray(values, dtype=float))
    c = crossed_mean(x, floor=2.0 / (x.shape[1] + 2) ** 2)
    h = c.half(confidence)
    method = METHOD if c.n_seeds > 1 else "one seed: t across images"
    out: dict = dict(estimate=c.mean, lo=max(c.mean - h, bounds[0]), hi=min(c.mean + h, bounds[1]),
                     p_value=c.level(c.mean), n_seeds=c.n_seeds, n_images=c.n_images, se=c.se,
                     method=method)
    if margin is not None:
        h90 = c.half(1 - 2 * (1 - confidence))
        below = c.one_sided_p(c.mean + margin)  # H0: effect <= -margin
        above = c.one_sided_p(margin - c.mean)  # H0: effect >= +margin
        out.update(margin=margin, tost=max(below, above), lo90=c.mean - h90, hi90=c.mean + h90,
                   noninferiority=below)
    return Effect(**out)


def paired_effect(correct_a: np.ndarray, correct_b: np.ndarray, margin: float | None = None, *,
                  confidence: float = CONFIDENCE) -> Effect:
    """Accuracy of A minus B on the same images, over seed-paired models (seeds x images arrays
    of 0/1 correctness; row s of A and of B are one seed's two models)."""
    a = np.atleast_2d(np.asarray(correct_a, dtype=float))
    b = np.atleast_2d(np.asarray(correct_b, dtype=float))
    if a.shape != b.shape:
        raise ValueError(f"paired effect needs the same seeds and images: {a.shape} vs {b.shape}")
    return effect_of(a - b, margin=margin, confidence=confidence)


def crossed_accuracy(correct: np.ndarray, confidence: float = CONFIDENCE) -> Effect:
    """One regime's accuracy (seeds x images 0/1) with its 95% interval over seeds and images.
    One seed: the Wilson interval over the images. More: the crossed half-width around the
    mean, clipped to [0, 1]; the image part's variance is at least the binomial variance of
    (right + 1) / (cells + 2) over S (I + 2) cells, so a table of identical answers (all right,
    say) keeps a width."""
    x = np.atleast_2d(np.asarray(correct, dtype=float))
    s, i = x.shape
    if s == 1:
        lo, hi = wilson(int(round(float(x.sum()))), i, confidence)
        p = float(x.mean())
        return Effect(p, lo, hi, math.nan, 1, i, math.sqrt(p * (1 - p) / i),
                      "one seed: Wilson interval over the images")
    adjusted = (float(x.sum()) + 1) / (s * i + 2)
    c = crossed_mean(x, floor=adjusted * (1 - adjusted) / (s * (i + 2)))
    h = c.half(confidence)
    return Effect(c.mean, max(c.mean - h, 0.0), min(c.mean + h, 1.0), math.nan, s, i, c.se, METHOD)


LOG_ODDS_METHOD = ("log-odds: each group's pooled accuracy (k + 1/2) / (n + 1) on the logit scale, "
                   "the crossed seeds x images interval of its delta-method linearisation")


def log_odds_contrast(correct: np.ndarray, signs: Sequence[int], *,
                      confidence: float = CONFIDENCE) -> Effect:
    """sum_g signs[g] * logit(accuracy of group g), with the crossed-design interval and p.

    `correct` is seeds x groups x images of 0/1 (row s of every group: one seed's models, on the
    same images). Each group's accuracy is smoothed to (k + 1/2) / (n + 1) over its n = S I
    answers, so a group at 100% has a finite log-odds; each (seed, image) cell is replaced by its
    delta-method value logit(p_g) + (x - mean_g) / (p_g (1 - p_g)), whose mean is the contrast,
    and the crossed-design interval (`crossed_mean`) of those values is the contrast's. The image
    part's variance is at least the binomial one of each smoothed p_g over I + 2 images, on the
    logit scale, so a group at the ceiling (where the log-odds are barely determined) widens the
    interval instead of narrowing it. A difference of differences at the ceiling is squeezed on
    the accuracy scale; this scale is not."""
    x = np.asarray(correct, dtype=float)
    if x.ndim != 3 or x.shape[1] != len(signs):
        raise ValueError(f"need seeds x {len(signs)} groups x images, got shape {x.shape}")
    s, _, i = x.shape
    values = np.zeros((s, i))
    floor = 0.0
    for g, sign in enumerate(signs):
        cells = x[:, g, :]
        p = (cells.sum() + 0.5) / (cells.size + 1)
        slope = 1.0 / (p * (1 - p))
        values += sign * (math.log(p / (1 - p)) + (cells - cells.mean()) * slope)
        floor += slope / (s * (i + 2))
    c = crossed_mean(values, floor=floor)
    h = c.half(confidence)
    return Effect(c.mean, c.mean - h, c.mean + h, c.level(c.mean), s, i, c.se,
                  LOG_ODDS_METHOD if s > 1 else "one seed: " + LOG_ODDS_METHOD)
