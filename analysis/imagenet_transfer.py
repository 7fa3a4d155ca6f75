"""Does ImageNet accuracy predict transfer accuracy on this dataset?

The question of Kornblith, Shlens & Le, *Do Better ImageNet Models Transfer Better?* (CVPR 2019),
who found r = 0.99 (fixed features) and 0.96 (fine-tuned) over 16 networks and 12 datasets,
except on small fine-grained sets; later work finds the relation breaks on practical data.

Points: one per architecture x transfer regime at the full train size.
  x  the ImageNet-1K top-1 accuracy of the architecture's pretrained weights, from torchvision's
     weights metadata (`trainables.weights.imagenet_top1`). Architectures whose weights carry
     none are left out and named.
  y  test and OOD accuracy: the mean over seeds with the 95% interval over seeds and images
     (analysis.stats.crossed_accuracy; with one trial, as for the linear probe whose seed
     changes nothing, the Wilson interval over the images).
Per regime and split, from MIN_ARCHS architectures: Pearson r (two-sided p: scipy's t-test) and
Spearman rho with its exact permutation p (every ordering up to 8 architectures, 50,000 seeded
orderings above; never the asymptotic p, which at n = 3 can print p < 0.001 where the exact p
cannot go below 1/3). Intervals for r and rho (Fisher's z: scipy's `confidence_interval` for
Pearson, Bonett & Wright's standard error for Spearman) only from FISHER_MIN architectures:
below that Fisher's approximation is poor, and at |r| = 1 it prints [1.00, 1.00].

Claim (`claim`): "ImageNet accuracy predicts transfer accuracy on this dataset", judged on the
Spearman rho of test accuracy in each transfer regime, and only from VERDICT_ARCHS
architectures ("not testable: needs 5, has N" below: with 4 the exact p cannot go below
0.083): holds when rho > 0 with p < ALPHA in every such regime; partly holds when in some and
no regime shows the opposite; does not hold when rho < 0 with p < ALPHA somewhere and > 0
nowhere; not shown otherwise.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis import verdicts
from analysis.effects import Correctness
from analysis.load import Results, arch_order
from analysis.probe_triage import imagenet_top1_of
from analysis.rank_correlation import spearman_exact
from analysis.stats import ALPHA, CONFIDENCE, crossed_accuracy, wilson
from analysis.tables import Tab
from trainables.regimes import REGIMES, regime_label, regime_order, regime_record
from trainables.results.tables import read_table

MIN_ARCHS = 3
"""Architectures needed for the figure and the correlations."""
VERDICT_ARCHS = 5
"""Architectures needed for a verdict (with 4 the exact two-sided p cannot go below 1/12)."""
FISHER_MIN = 10
"""Architectures needed before a Fisher-z interval of r or rho is shown."""
EXACT_UP_TO = 8
SPLITS = ("test", "ood")


def points(res: Results, corr: Correctness | None = None) -> tuple[pd.DataFrame, list[str]]:
    """(points, architectures left out for want of ImageNet accuracy metadata)."""
    full = res.full[res.full["regime"].isin([r for r in REGIMES if REGIMES[r].pretrained])]
    corr = corr or Correctness(res, full["trial_id"].astype(str).tolist())
    top1 = {a: imagenet_top1_of(a) for a in full["arch"].unique()}
    missing = [a for a in arch_order(list(top1)) if top1[a] is None]
    rows = []
    for (arch, regime), g in full.groupby(["arch", "regime"], sort=False):
        if top1[arch] is None:
            continue
        row = {"arch": arch, "regime": regime, "imagenet_top1": top1[arch], "n": len(g)}
        ids = g.sort_values("seed")["trial_id"].astype(str).tolist()
        for split in SPLITS:
            x, used, _ = corr.seeds_by_images(ids, split)
            mean, lo, hi, how = math.nan, math.nan, math.nan, ""
            if used and x.shape[1] >= 2:
                e = crossed_accuracy(x)
                mean, lo, hi = e.estimate, e.lo, e.hi
                how = f"{e.n_seeds} seed{'s' if e.n_seeds != 1 else ''} × {e.n_images} images"
            elif g[f"{split}_acc"].notna().any():  # accuracies without per-image predictions
                mean, how = float(g[f"{split}_acc"].mean()), "no per-image predictions: no interval"
                images = _images(res, ids[0], split) if len(ids) == 1 else 0
                if images:
                    lo, hi = wilson(round(mean * images), images)
                    how = f"1 trial × {images} images (Wilson)"
            row.update({split: mean, f"{split}_lo": lo, f"{split}_hi": hi, f"{split}_how": how})
        rows.append(row)
    cols = ["arch", "regime", "imagenet_top1", "n"] + [
        f"{s}{suffix}" for s in SPLITS for suffix in ("", "_lo", "_hi", "_how")]
    out = pd.DataFrame(rows, columns=cols)
    if not out.empty:
        a_key = {a: i for i, a in enumerate(arch_order(out["arch"].tolist()))}
        r_key = {r: i for i, r in enumerate(regime_order(out["regime"].tolist()))}
        out = out.assign(_r=out["regime"].map(r_key), _a=out["arch"].map(a_key)).sort_values(
            ["_r", "_a"]).drop(columns=["_r", "_a"]).reset_index(drop=True)
    return out, missing


def _images(res: Results, trial_id: str, split: str) -> int:
    """Images a trial was evaluated on, from its confusion matrix (results without predictions)."""
    col = f"{split}_confusion_json"
    rows = read_table(res.root, "trials", columns=["trial_id", col]).to_pandas()
    text = rows.loc[rows["trial_id"] == trial_id, col].dropna()
    return int(np.sum(json.loads(text.iloc[0]))) if len(text) else 0


def fisher_interval(r: float, n: int, se: float, confidence: float = CONFIDENCE
                    ) -> tuple[float, float]:
    """Fisher-z interval of a correlation; NaNs below FISHER_MIN points."""
    if n < FISHER_MIN or not math.isfinite(r):
        return math.nan, math.nan
    z = math.atanh(max(-0.999999, min(0.999999, r)))
    q = float(sps.norm.ppf((1 + confidence) / 2))
    return math.tanh(z - q * se), math.tanh(z + q * se)


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
    pearson = sps.pearsonr(x, y)
    p_lo, p_hi = math.nan, math.nan
    if n >= FISHER_MIN:
        ci = pearson.confidence_interval(CONFIDENCE)
        p_lo, p_hi = float(ci.low), float(ci.high)
    rank = spearman_exact(x, y, EXACT_UP_TO)
    se_s = math.sqrt((1 + rank.rho * rank.rho / 2) / (n - 3)) if n > 3 else math.inf
    return Correlation(regime, split, n, float(pearson.statistic), p_lo, p_hi, float(pearson.pvalue),
                       rank.rho, *fisher_interval(rank.rho, n, se_s), rank.p_value)


def correlations(pts: pd.DataFrame) -> list[Correlation]:
    """Per transfer regime with MIN_ARCHS or more architectures, per split."""
    out = []
    for regime in regime_order(pts["regime"].tolist()) if not pts.empty else []:
        sub = pts[pts["regime"] == regime]
        for split in SPLITS:
            if sub[split].notna().sum() >= MIN_ARCHS:
                out.append(correlate(regime, split, sub["imagenet_top1"].to_numpy(float),
                                     sub[split].to_numpy(float)))
    return out


def _r(value: float, lo: float, hi: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    ci = f" [{lo:+.2f}, {hi:+.2f}]" if math.isfinite(lo) else f" (no interval below {FISHER_MIN})"
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
               "ImageNet top-1: torchvision's metadata of the pretrained weights. Accuracy: mean over "
               "seeds [95% interval over seeds and images], or one trial's Wilson 95% interval over "
               "the images.")


def correlations_tab(corr: list[Correlation], ood_label: str) -> Tab:
    rows = [[regime_label(c.regime), "Test" if c.split == "test" else ood_label,
             str(c.n), _r(c.pearson, c.pearson_lo, c.pearson_hi), _p(c.pearson_p),
             _r(c.spearman, c.spearman_lo, c.spearman_hi), _p(c.spearman_p)] for c in corr]
    return Tab(["Regime", "Accuracy", "Architectures", "Pearson r [95% CI]", "p",
                "Spearman rho [95% CI]", "p"], rows,
               f"Intervals: Fisher's z (Spearman: Bonett-Wright standard error), only from {FISHER_MIN} "
               "architectures (fewer: the approximation is poor). p: two-sided; Pearson's by the "
               f"t-test, Spearman's by exact permutation up to {EXACT_UP_TO} architectures (at n = 3 it "
               "cannot go below 0.33, at n = 4 below 0.083). One point per architecture.")


@dataclass
class Outcome:
    """Everything the report shows about this question."""

    points: pd.DataFrame
    missing: list[str]
    correlations: list[Correlation]
    archs: int
    claim: verdicts.Claim
    text: str
    """One line: the answer, or why there is no figure."""
    notes: list[str] = field(default_factory=list)


def _missing_note(missing: list[str]) -> list[str]:
    if not missing:
        return []
    return [f"left out (no ImageNet accuracy in their weights' metadata): {', '.join(missing)}"]


def analyse(res: Results, corr: Correctness | None = None) -> Outcome:
    pts, missing = points(res, corr)
    corr = correlations(pts)
    archs = int(pts["arch"].nunique()) if not pts.empty else 0
    claim = make_claim(corr, archs, missing)
    if archs < MIN_ARCHS:
        text = (f"ImageNet accuracy vs transfer: {archs} architecture{'s' if archs != 1 else ''} "
                f"with ImageNet accuracy in these results; a correlation needs at least {MIN_ARCHS} "
                "(run more, e.g. --archs resnet18 resnet152 densenet161 vgg11_bn)")
    elif claim.verdict == verdicts.UNTESTABLE:
        text = f"ImageNet accuracy vs transfer (correlations below, no verdict): {claim.evidence}"
    else:
        text = f"ImageNet accuracy vs transfer: {claim.verdict}. {claim.evidence}"
    return Outcome(pts, missing, corr, archs, claim, text, _missing_note(missing))


STATEMENT = "ImageNet accuracy predicts transfer accuracy on this dataset (test accuracy)"


def make_claim(corr: list[Correlation], archs: int, missing: list[str]) -> verdicts.Claim:
    key = "imagenet_accuracy_predicts_transfer"
    test = (f"Spearman rho between ImageNet top-1 and mean test accuracy per transfer regime, exact "
            f"permutation p < {ALPHA:g}, over {VERDICT_ARCHS} or more architectures with ImageNet "
            "accuracy metadata")
    tested = [c for c in corr if c.split == "test" and c.n >= VERDICT_ARCHS and math.isfinite(c.spearman)]
    left = f"; left out (no ImageNet accuracy metadata): {', '.join(missing)}" if missing else ""
    if not tested:
        most = max((c.n for c in corr if c.split == "test"), default=archs)
        return _claim(key, verdicts.UNTESTABLE,
                      f"not testable: needs {VERDICT_ARCHS}, has {most} (architectures with ImageNet "
                      f"accuracy metadata and test results in one transfer regime; below "
                      f"{VERDICT_ARCHS} the exact p cannot reach {ALPHA:g} reliably){left}", test)
    pos = [c for c in tested if c.spearman > 0 and c.spearman_p < ALPHA]
    neg = [c for c in tested if c.spearman < 0 and c.spearman_p < ALPHA]
    if len(pos) == len(tested):
        verdict = verdicts.HOLDS
    elif pos and not neg:
        verdict = verdicts.PARTLY
    elif neg and not pos:
        verdict = verdicts.FAILS
    else:
        verdict = verdicts.NOT_SHOWN
    parts = "; ".join(f"{c.regime} rho {_r(c.spearman, c.spearman_lo, c.spearman_hi)}, "
                      f"exact p {_p(c.spearman_p)} (n={c.n})" for c in tested)
    return _claim(key, verdict, f"Spearman rho of ImageNet top-1 vs test accuracy: {parts}{left}", test)


PAPER = ("not a claim of the study: Kornblith, Shlens & Le (CVPR 2019) found transfer accuracy "
         "tracks ImageNet accuracy (r = 0.99 with fixed features, 0.96 fine-tuned) except on small "
         "fine-grained sets")


def _claim(key: str, verdict: str, evidence: str, test: str) -> verdicts.Claim:
    return verdicts.Claim(key, STATEMENT, verdict, evidence, PAPER, test)


def figure(out: Outcome, ood_label: str):
    """Test (and OOD) accuracy against ImageNet top-1, one panel per split; None below MIN_ARCHS."""
    if out.archs < MIN_ARCHS:
        return None
    import matplotlib.pyplot as plt

    pts = out.points
    splits = [s for s in SPLITS if pts[s].notna().any()]
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
            err = np.clip(np.nan_to_num(err), 0, None)  # a mean at 0 or 100% can round past its bound
            ax.errorbar(x, y, yerr=err, fmt=regime_record(regime).marker, color=color,
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
