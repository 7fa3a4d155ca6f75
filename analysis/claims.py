"""The study's claims, each checked against these results and marked with its numbers.

Verdicts: "holds", "partly holds" (for some architectures, not all), "does not hold", or
"not testable" (the results lack what the claim needs). Rules are in docs/analysis.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from analysis.load import Results, is_full_size
from analysis.stats import spearman

HOLDS, PARTLY, FAILS, UNTESTABLE = "holds", "partly holds", "does not hold", "not testable"
CLOSE_PP = 3.0
"""Feature extraction "comes close" to fine-tuning: mean best-val accuracy within this many
percentage points below it (or above it)."""
ALPHA = 0.05


@dataclass(frozen=True)
class Claim:
    key: str
    statement: str
    verdict: str
    evidence: str


def _k_of_n(k: int, n: int) -> str:
    if n == 0:
        return UNTESTABLE
    return HOLDS if k == n else FAILS if k == 0 else PARTLY


def _pp(x: float) -> str:
    return f"{100 * x:+.1f} pp"


def transfer_beats_scratch(best: pd.DataFrame, paired: pd.DataFrame, split: str, label: str) -> Claim:
    """Best transfer model vs best scratch model per architecture, on test or OOD accuracy."""
    col = "test" if split == "test" else "ood"
    key = f"transfer_beats_scratch_{col}"
    statement = f"Transfer learning beats training from scratch on {label} accuracy"
    need = [f"transfer_{col}", f"scratch_{col}"]
    if best.empty or any(c not in best for c in need):
        return Claim(key, statement, UNTESTABLE, "no architecture has both a transfer and a scratch model")
    rows = best.dropna(subset=need)
    if rows.empty:
        return Claim(key, statement, UNTESTABLE,
                     f"no architecture has both a transfer and a scratch {label} accuracy")
    wins = rows[rows[f"transfer_{col}"] > rows[f"scratch_{col}"]]
    parts = [f"{r['arch']} {_pp(r[f'transfer_{col}'] - r[f'scratch_{col}'])}" for _, r in rows.iterrows()]
    sig = paired[(paired["split"] == split)] if not paired.empty else paired
    sig_text = ""
    if not sig.empty:
        k_sig = int(((sig["p_value"] < ALPHA) & (sig["diff"] > 0)).sum())
        sig_text = f"; significant (exact McNemar p < {ALPHA}) for {k_sig} of {len(sig)}"
    evidence = (f"transfer ahead for {len(wins)} of {len(rows)} architectures "
                f"(best model of each, chosen on validation: {', '.join(parts)}){sig_text}")
    return Claim(key, statement, _k_of_n(len(wins), len(rows)), evidence)


def feature_reuse_beats_scratch(regimes: pd.DataFrame) -> Claim:
    statement = "Feature reuse alone (feature extraction) beats training from scratch (test accuracy)"
    key = "feature_extract_beats_scratch"
    pivot = regimes.pivot_table(index="arch", columns="regime", values="test_acc_mean", sort=False)
    if not {"feature_extract", "scratch"} <= set(pivot.columns):
        return Claim(key, statement, UNTESTABLE, "needs feature_extract and scratch trials")
    pivot = pivot.dropna(subset=["feature_extract", "scratch"])
    if pivot.empty:
        return Claim(key, statement, UNTESTABLE, "no architecture has both regimes")
    diff = pivot["feature_extract"] - pivot["scratch"]
    k = int((diff > 0).sum())
    parts = ", ".join(f"{a} {_pp(d)}" for a, d in diff.items())
    return Claim(key, statement, _k_of_n(k, len(diff)),
                 f"mean test accuracy across seeds higher for {k} of {len(diff)} ({parts})")


def fe_close_to_ft(regimes: pd.DataFrame, arch: str = "squeezenet1_0") -> Claim:
    key = f"feature_extract_close_to_finetune_{arch}"
    statement = f"Feature extraction comes close to fine-tuning on {arch}"
    sub = regimes[regimes["arch"] == arch].set_index("regime")
    if not {"finetune", "feature_extract"} <= set(sub.index):
        return Claim(key, statement, UNTESTABLE, f"needs {arch} finetune and feature_extract trials")
    ft = sub.loc["finetune", "best_val_acc_mean"]
    fe = sub.loc["feature_extract", "best_val_acc_mean"]
    gap = 100 * (ft - fe)
    verdict = HOLDS if gap <= CLOSE_PP else FAILS
    return Claim(key, statement, verdict,
                 f"mean best-val accuracy: fine-tune {100 * ft:.1f}%, feature extraction {100 * fe:.1f}% "
                 f"(fine-tune ahead by {gap:.1f} pp; close means at most {CLOSE_PP:g} pp); val bands "
                 f"{sub.loc['finetune', 'band']} vs {sub.loc['feature_extract', 'band']}")


def overparameterisation(regimes: pd.DataFrame) -> Claim:
    key = "overparameterisation"
    statement = ("Overparameterised models still do well with little data: more trainable parameters "
                 "do not mean lower fine-tuned test accuracy")
    ft = regimes[regimes["regime"] == "finetune"].dropna(subset=["test_acc_mean", "trainable_params"])
    rho, p, n = spearman(ft["trainable_params"].tolist(), ft["test_acc_mean"].tolist())
    if n < 3 or not math.isfinite(rho):
        return Claim(key, statement, UNTESTABLE,
                     f"needs fine-tuned results of at least 3 architectures with different sizes (have {n})")
    verdict = HOLDS if rho >= 0 else FAILS
    return Claim(key, statement, verdict,
                 f"Spearman rho between trainable parameters and mean test accuracy over {n} "
                 f"fine-tuned architectures = {rho:+.2f} (p = {p:.2g})")


def gap_grows_when_starved(trials: pd.DataFrame) -> Claim:
    key = "transfer_gap_larger_with_less_data"
    statement = ("Transfer helps most in the data-starved regime: its lead over scratch is larger with "
                 "fewer images")
    rows, parts = 0, []
    wins = 0
    for arch, sub in trials.groupby("arch", sort=False):
        per = sub.assign(kind=sub["regime"].map(lambda r: "scratch" if r == "scratch" else "transfer"))
        means = per.groupby(["train_size", "kind"])["test_acc"].mean().unstack()
        if not {"transfer", "scratch"} <= set(means.columns):
            continue
        means = means.dropna()
        if len(means) < 2:
            continue
        x = sub.groupby("train_size")["train_images_per_class"].mean()
        sizes = sorted(means.index, key=lambda s: (is_full_size(s), x.get(s, math.inf)))
        small, large = sizes[0], sizes[-1]
        g_small = means.loc[small, "transfer"] - means.loc[small, "scratch"]
        g_large = means.loc[large, "transfer"] - means.loc[large, "scratch"]
        rows += 1
        wins += int(g_small > g_large)
        parts.append(f"{arch}: {_pp(g_small)} at {small} vs {_pp(g_large)} at {large}")
    if rows == 0:
        return Claim(key, statement, UNTESTABLE,
                     "needs transfer and scratch trials at two or more train sizes (--train-sizes)")
    return Claim(key, statement, _k_of_n(wins, rows),
                 f"transfer − scratch mean test accuracy larger at the smallest size for {wins} of {rows} "
                 f"({'; '.join(parts)})")


def check_claims(res: Results, regimes: pd.DataFrame, best: pd.DataFrame, paired: pd.DataFrame
                 ) -> list[Claim]:
    claims = [transfer_beats_scratch(best, paired, "test", "test")]
    if res.ood_kinds:
        claims.append(transfer_beats_scratch(best, paired, "ood", res.ood_label))
    claims += [feature_reuse_beats_scratch(regimes), fe_close_to_ft(regimes),
               overparameterisation(regimes), gap_grows_when_starved(res.trials)]
    return claims


def claims_markdown(claims: list[Claim]) -> str:
    lines = []
    for c in claims:
        lines.append(f"- **{c.verdict}** — {c.statement}. {c.evidence[0].upper()}{c.evidence[1:]}.")
    return "\n".join(lines) + "\n"
