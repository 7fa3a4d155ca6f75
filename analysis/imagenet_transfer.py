"""Does ImageNet accuracy predict transfer accuracy on this dataset?

The question of Kornblith, Shlens & Le, *Do Better ImageNet Models Transfer Better?* (CVPR 2019),
who found r = 0.99 (fixed features) and 0.96 (fine-tuned) over 16 networks and 12 datasets,
except on small fine-grained sets; later work finds the relation breaks on practical data.

Points: one per architecture x transfer regime at the full train size.
  x  the ImageNet-1K top-1 accuracy of the architecture's pretrained weights, from torchvision's
     weights metadata (`trainables.weights.imagenet_top1`). Architectures whose weights carry
     none are left out and named.
  y  test and OOD accuracy: the mean across seeds with a 95% t-interval when a regime has 2 or
     more seeds; with one trial (the linear probe, whose seed changes nothing, or one seed) the
     Wilson 95% interval over the test (OOD) images. The table says which.
Per regime and split: Pearson r with a 95% interval by Fisher's z (SE 1/sqrt(n-3)) and Spearman
rho with a 95% interval by Fisher's z with Bonett & Wright's SE sqrt((1 + rho^2/2)/(n-3))
(both need n >= 4 architectures), each with a two-sided p (Pearson: t-test; Spearman: exact
permutation test over all orderings up to 8 architectures, 50,000 seeded orderings above).
With fewer than MIN_ARCHS architectures there is no figure: one line of text says so.

Claim (`claim`): "ImageNet accuracy predicts transfer accuracy on this dataset", judged on the
Spearman rho of test accuracy in each transfer regime with at least MIN_ARCHS architectures:
holds when rho > 0 with p < ALPHA in every such regime; partly holds when in some and no
regime shows the opposite; does not hold when rho < 0 with p < ALPHA somewhere and > 0 nowhere;
not shown otherwise (too few architectures, or mixed); not testable below MIN_ARCHS.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis import claims as claims_mod
from analysis.load import Results, arch_order
from analysis.probe_triage import imagenet_top1_of, wilson
from analysis.stats import CONFIDENCE, mean_ci
from analysis.tables import Tab
from trainables.regimes import REGIMES, regime_label, regime_order, regime_record
from trainables.results.tables import read_table

MIN_ARCHS = 3
ALPHA = 0.05
EXACT_UP_TO = 8
SPLITS = (("test", "test_acc", "test_confusion_json"), ("ood", "ood_acc", "ood_confusion_json"))


def _images(confusion: object) -> int:
    return int(np.sum(json.loads(confusion))) if isinstance(confusion, str) else 0


def points(res: Results) -> tuple[pd.DataFrame, list[str]]:
    """(points, architectures left out for want of ImageNet accuracy metadata)."""
    full = res.full[res.full["regime"].isin([r for r in REGIMES if REGIMES[r].pretrained])]
    extra = read_table(res.root, "trials", columns=["trial_id", "test_confusion_json",
                                                    "ood_confusion_json"]).to_pandas()
    full = full.merge(extra, on="trial_id", how="left")
    top1 = {a: imagenet_top1_of(a) for a in full["arch"].unique()}
    missing = [a for a in arch_order(list(top1)) if top1[a] is None]
    rows = []
    for (arch, regime), g in full.groupby(["arch", "regime"], sort=False):
        if top1[arch] is None:
            continue
        row = {"arch": arch, "regime": regime, "imagenet_top1": top1[arch], "n": len(g)}
        for split, col, confusion in SPLITS:
            values = g[col].dropna().to_numpy(float)
            ci = mean_ci(values)
            if ci.n >= 2:
                lo, hi, how = max(0.0, ci.lo), min(1.0, ci.hi), f"t, {ci.n} seeds"
            elif ci.n == 1:
                images = _images(g[confusion].dropna().iloc[0]) if g[confusion].notna().any() else 0
                lo, hi = wilson(round(ci.mean * images), images)
                how = f"Wilson, {images} images"
            else:
                lo = hi = math.nan
                how = ""
            row.update({split: ci.mean, f"{split}_lo": lo, f"{split}_hi": hi, f"{split}_how": how})
        rows.append(row)
    cols = ["arch", "regime", "imagenet_top1", "n"] + [
        f"{s}{suffix}" for s, _, _ in SPLITS for suffix in ("", "_lo", "_hi", "_how")]
    out = pd.DataFrame(rows, columns=cols)
    if not out.empty:
        a_key = {a: i for i, a in enumerate(arch_order(out["arch"].tolist()))}
        r_key = {r: i for i, r in enumerate(regime_order(out["regime"].tolist()))}
        out = out.assign(_r=out["regime"].map(r_key), _a=out["arch"].map(a_key)).sort_values(
            ["_r", "_a"]).drop(columns=["_r", "_a"]).reset_index(drop=True)
    return out, missing


def fisher_interval(r: float, n: int, se: float, confidence: float = CONFIDENCE
                    ) -> tuple[float, float]:
    if n < 4 or not math.isfinite(r):
        return math.nan, math.nan
    z = math.atanh(max(-0.999999, min(0.999999, r)))
    q = float(sps.norm.ppf((1 + confidence) / 2))
    return math.tanh(z - q * se), math.tanh(z + q * se)


def _pearson_along(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    a = a - a.mean(axis=axis, keepdims=True)
    b = b - b.mean(axis=axis, keepdims=True)
    return (a * b).sum(axis=axis) / np.sqrt((a * a).sum(axis=axis) * (b * b).sum(axis=axis))


def spearman_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided permutation p of Spearman's rho: exact (every ordering of y against x) up to
    EXACT_UP_TO points, 50,000 seeded random orderings above."""
    rx = sps.rankdata(x)
    n_orderings = math.factorial(len(x))
    res = sps.permutation_test((sps.rankdata(y),), lambda b, axis=-1: _pearson_along(rx, b, axis),
                               vectorized=True, permutation_type="pairings",
                               n_resamples=n_orderings if len(x) <= EXACT_UP_TO else 50_000,
                               alternative="two-sided", rng=np.random.default_rng(0))
    return float(res.pvalue)


@dataclass(frozen=True)
class Correlation:
    regime: str
    split: str
    n: int
    pearson: float = math.nan
    pearson_lo: float = math.nan
    pearson_hi: float = math.nan
    pearson_p: float = math.nan
    spearman: float = math.nan
    spearman_lo: float = math.nan
    spearman_hi: float = math.nan
    spearman_p: float = math.nan


def correlate(regime: str, split: str, x: np.ndarray, y: np.ndarray) -> Correlation:
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = len(x)
    if n < MIN_ARCHS or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Correlation(regime, split, n)
    r = float(np.corrcoef(x, y)[0, 1])
    rho = float(np.corrcoef(sps.rankdata(x), sps.rankdata(y))[0, 1])
    se = 1 / math.sqrt(n - 3) if n > 3 else math.inf
    se_s = math.sqrt((1 + rho * rho / 2) / (n - 3)) if n > 3 else math.inf
    return Correlation(regime, split, n, r, *fisher_interval(r, n, se),
                       float(sps.pearsonr(x, y).pvalue), rho, *fisher_interval(rho, n, se_s),
                       spearman_p(x, y))


def correlations(pts: pd.DataFrame) -> list[Correlation]:
    """Per transfer regime with MIN_ARCHS or more architectures, per split."""
    out = []
    for regime in regime_order(pts["regime"].tolist()) if not pts.empty else []:
        sub = pts[pts["regime"] == regime]
        for split, _, _ in SPLITS:
            if sub[split].notna().sum() >= MIN_ARCHS:
                out.append(correlate(regime, split, sub["imagenet_top1"].to_numpy(float),
                                     sub[split].to_numpy(float)))
    return out


def _r(value: float, lo: float, hi: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    ci = f" [{lo:+.2f}, {hi:+.2f}]" if math.isfinite(lo) else " (no interval: n < 4)"
    return f"{value:+.2f}{ci}"


def _p(p: float) -> str:
    return "n/a" if not math.isfinite(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _acc(mean: float, lo: float, hi: float) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{100 * mean:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]" if math.isfinite(lo) else \
        f"{100 * mean:.1f}"


def points_tab(pts: pd.DataFrame, ood_label: str) -> Tab:
    rows = [[r["arch"], regime_label(r["regime"]), f"{r['imagenet_top1']:.1f}",
             _acc(r["test"], r["test_lo"], r["test_hi"]), r["test_how"],
             _acc(r["ood"], r["ood_lo"], r["ood_hi"])] for r in pts.to_dict("records")]
    return Tab(["Architecture", "Regime", "ImageNet top-1 %", "Test % [95% CI]", "Interval",
                f"{ood_label} % [95% CI]"], rows,
               "ImageNet top-1: torchvision's metadata of the pretrained weights. Accuracy: mean "
               "across seeds with a 95% t-interval (2+ seeds), or one trial's Wilson 95% interval "
               "over the images; clipped to [0, 100].")


def correlations_tab(corr: list[Correlation], ood_label: str) -> Tab:
    rows = [[regime_label(c.regime), "Test" if c.split == "test" else ood_label,
             str(c.n), _r(c.pearson, c.pearson_lo, c.pearson_hi), _p(c.pearson_p),
             _r(c.spearman, c.spearman_lo, c.spearman_hi), _p(c.spearman_p)] for c in corr]
    return Tab(["Regime", "Accuracy", "Architectures", "Pearson r [95% CI]", "p",
                "Spearman rho [95% CI]", "p"], rows,
               "Intervals: Fisher's z (Spearman: Bonett-Wright standard error), approximate with "
               f"few architectures. p: two-sided; Spearman's by exact permutation up to "
               f"{EXACT_UP_TO} architectures. Across architectures, one point per architecture.")


@dataclass
class Outcome:
    """Everything the report shows about this question."""

    points: pd.DataFrame
    missing: list[str]
    correlations: list[Correlation]
    archs: int
    claim: claims_mod.Claim
    text: str
    """One line: the answer, or why there is no figure."""
    notes: list[str] = field(default_factory=list)


def _missing_note(missing: list[str]) -> list[str]:
    if not missing:
        return []
    return [f"left out (no ImageNet accuracy in their weights' metadata): {', '.join(missing)}"]


def analyse(res: Results) -> Outcome:
    pts, missing = points(res)
    corr = correlations(pts)
    archs = int(pts["arch"].nunique()) if not pts.empty else 0
    claim = make_claim(corr, archs, missing)
    if archs < MIN_ARCHS:
        text = (f"ImageNet accuracy vs transfer: {archs} architecture{'s' if archs != 1 else ''} "
                f"with ImageNet accuracy in these results; a correlation needs at least {MIN_ARCHS} "
                "(run more, e.g. --archs resnet18 resnet152 densenet161 vgg11_bn)")
    else:
        text = f"ImageNet accuracy vs transfer: {claim.verdict}. {claim.evidence}"
    return Outcome(pts, missing, corr, archs, claim, text, _missing_note(missing))


STATEMENT = "ImageNet accuracy predicts transfer accuracy on this dataset (test accuracy)"


def make_claim(corr: list[Correlation], archs: int, missing: list[str]) -> claims_mod.Claim:
    key = "imagenet_accuracy_predicts_transfer"
    test = (f"Spearman rho between ImageNet top-1 and mean test accuracy per transfer regime, exact "
            f"permutation p < {ALPHA:g}, over architectures with ImageNet accuracy metadata")
    tested = [c for c in corr if c.split == "test" and c.n >= MIN_ARCHS and math.isfinite(c.spearman)]
    left = f"; left out (no ImageNet accuracy metadata): {', '.join(missing)}" if missing else ""
    if not tested:
        return _claim(key, claims_mod.UNTESTABLE,
                      f"needs test results of at least {MIN_ARCHS} architectures with ImageNet "
                      f"accuracy metadata in one transfer regime (have {archs}){left}", test)
    pos = [c for c in tested if c.spearman > 0 and c.spearman_p < ALPHA]
    neg = [c for c in tested if c.spearman < 0 and c.spearman_p < ALPHA]
    if len(pos) == len(tested):
        verdict = claims_mod.HOLDS
    elif pos and not neg:
        verdict = claims_mod.PARTLY
    elif neg and not pos:
        verdict = claims_mod.FAILS
    else:
        verdict = claims_mod.NOT_SHOWN
    parts = "; ".join(f"{c.regime} rho {_r(c.spearman, c.spearman_lo, c.spearman_hi)}, "
                      f"p {_p(c.spearman_p)} (n={c.n})" for c in tested)
    return _claim(key, verdict, f"Spearman rho of ImageNet top-1 vs test accuracy: {parts}{left}",
                  test)


PAPER = ("not a claim of the study: Kornblith, Shlens & Le (CVPR 2019) found transfer accuracy "
         "tracks ImageNet accuracy (r = 0.99 with fixed features, 0.96 fine-tuned) except on small "
         "fine-grained sets")


def _claim(key: str, verdict: str, evidence: str, test: str) -> claims_mod.Claim:
    return claims_mod.Claim(key, STATEMENT, verdict, evidence, PAPER, test)


def figure(out: Outcome, ood_label: str):
    """Test (and OOD) accuracy against ImageNet top-1, one panel per split; None below MIN_ARCHS."""
    if out.archs < MIN_ARCHS:
        return None
    import matplotlib.pyplot as plt


    pts = out.points
    splits = [s for s, _, _ in SPLITS if pts[s].notna().any()]
    fig, axes = plt.subplots(1, len(splits), figsize=(5.2 * len(splits), 4.4), squeeze=False)
    by_key = {(c.regime, c.split): c for c in out.correlations}
    for ax, split in zip(axes[0], splits, strict=True):
        for regime in regime_order(pts["regime"].tolist()):
            sub = pts[(pts["regime"] == regime) & pts[split].notna()]
            x, y = sub["imagenet_top1"].to_numpy(float), 100 * sub[split].to_numpy(float)
            err = np.vstack([y - 100 * sub[f"{split}_lo"].to_numpy(float),
                             100 * sub[f"{split}_hi"].to_numpy(float) - y])
            c = by_key.get((regime, split))
            label = regime_label(regime) + (
                f" (r {c.pearson:+.2f}, rho {c.spearman:+.2f}, n={c.n})"
                if c is not None and math.isfinite(c.pearson) else "")
            color = regime_record(regime).colour
            ax.errorbar(x, y, yerr=np.nan_to_num(err), fmt=regime_record(regime).marker, color=color,
                        capsize=3, markersize=6, label=label, linestyle="none")
            if len(x) >= 2 and np.ptp(x) > 0:
                slope, icpt = np.polyfit(x, y, 1)
                xs = np.array([x.min(), x.max()])
                ax.plot(xs, slope * xs + icpt, color=color, linewidth=1, linestyle="--", alpha=0.7)
            for xi, yi, arch in zip(x, y, sub["arch"], strict=True):
                ax.annotate(arch, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7,
                            color="#444444")
        ax.set_xlabel("ImageNet top-1 accuracy (%)")
        ax.set_ylabel(("Test" if split == "test" else ood_label) + " accuracy (%)")
        ax.set_title("Test" if split == "test" else ood_label, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5, loc="lower right")
    fig.suptitle("Does ImageNet accuracy predict transfer? (error bars: 95% intervals)", fontsize=10)
    fig.tight_layout()
    return fig


def write_figure(out: Outcome, ood_label: str, out_dir: Path) -> list[Path]:
    from analysis.figures import save

    fig = figure(out, ood_label)
    return [] if fig is None else save(fig, out_dir, "imagenet_transfer", pdf=False)
