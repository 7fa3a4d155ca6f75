"""The study's claims, each tested as the paper states it, with the numbers behind the verdict.

Every claim compares models on the same images, per architecture: an effect in percentage
points with a 95% interval and p that count both sources of noise, the seeds and the images
(`analysis.stats.paired_effect`). The verdict rules and constants are in analysis.verdicts.
The claims are fixed in advance (`FIXED_IN_ADVANCE`): the paper's own, tested as it states them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

from analysis.aggregate import best_regime, model_selection, pick_best
from analysis.answer import CONDITIONAL
from analysis.effects import Correctness, Pair, seed_pairs
from analysis.load import Results, arch_order, is_full_size
from analysis.rank_correlation import spearman_exact
from analysis.regime_effects import Comparison, compare, full_size
from analysis.stats import Effect, effect_of, fmt_p, log_odds_contrast, paired_effect
from analysis.verdicts import (
    FIXED_IN_ADVANCE,
    UNTESTABLE,
    ArchEffect,
    Claim,
    ClaimOptions,
    coverage_text,
    difference_verdict,
    equivalence_verdict,
    noninferiority_verdict,
    with_holm,
)
from trainables.archs import STUDY_ARCHS
from trainables.regimes import FEATURE_EXTRACT, FINETUNE, SCRATCH, TRANSFER_REGIMES

__all__ = ["FIXED_IN_ADVANCE", "Claim", "ClaimOptions", "check_claims", "claims_markdown"]
SMALL_ARCH, LARGE_ARCH = "squeezenet1_0", "vgg11_bn"
"""The overparameterisation claim's two architectures (the study's smallest and largest)."""


# ---------------------------------------------------------------------------------- helpers
def _models(pairs: list[Pair], regime_of: dict[str, str]) -> str:
    """Which models were compared: 'finetune vs scratch, seed 0' or 'finetune ×3 vs scratch ×3,
    3 seeds'."""
    def regimes(ids: list[str]) -> str:
        counts = pd.Series([regime_of.get(t, "?") for t in ids]).value_counts()
        return ", ".join(r if len(ids) == 1 else f"{r} ×{n}" for r, n in counts.items())

    seeds = f"seed {pairs[0].seed}" if len(pairs) == 1 else f"{len(pairs)} seeds"
    return f"{regimes([p.a for p in pairs])} vs {regimes([p.b for p in pairs])}, {seeds}"


def _split_label(split: str, res: Results) -> str:
    return "test" if split == "test" else res.ood_label


def _paired_claim_effects(res: Results, corr: Correctness, split: str, archs: list[str],
                          pairs_of: Callable[[str], list[Pair]], opts: ClaimOptions,
                          margin: float | None = None) -> list[ArchEffect]:
    out = []
    for arch in archs:
        pairs = pairs_of(arch)
        if not pairs:
            out.append(ArchEffect(arch, None, note="no seed has both models"))
            continue
        a, b, used, dropped = corr.paired(pairs, split)
        if not used or a.shape[1] < 2:
            out.append(ArchEffect(arch, None, note=f"no per-image {_split_label(split, res)} predictions "
                                                   "shared by the two models"))
            continue
        eff = paired_effect(a, b, margin=margin, confidence=1 - opts.alpha)
        detail = _models(used, corr.regime_of)
        if dropped:
            detail += f", {dropped} images not seen by every model left out"
        out.append(ArchEffect(arch, eff, detail=detail))
    return out


def _difference_claim(key: str, statement: str, paper: str, test: str, effects: list[ArchEffect],
                      opts: ClaimOptions, selection: str) -> Claim:
    effects = with_holm(effects)
    verdict, why = difference_verdict(effects, opts.alpha)
    per = "; ".join(e.text() for e in effects)
    evidence = (f"{why}; {coverage_text(effects, STUDY_ARCHS)}. Per architecture (effect, 95% interval, "
                f"p): {per}. {selection}")
    return Claim(key, statement, verdict, evidence, paper, test, tuple(effects))


def _archs(trials: pd.DataFrame) -> list[str]:
    return arch_order(trials["arch"].unique().tolist())


# ----------------------------------------------------------------------------------- claims
def transfer_beats_scratch(res: Results, comparisons: list[Comparison], split: str, opts: ClaimOptions,
                           selection: str) -> Claim:
    """The answer box's comparisons at the full train size (the same numbers; the claim's Holm
    p is across its architectures only)."""
    label = _split_label(split, res)
    by_arch = {c.arch: c for c in comparisons if c.split == split}
    effects = []
    for arch in _archs(res.full):
        c = by_arch.get(arch)
        if c is None:
            effects.append(ArchEffect(arch, None, note="no transfer and scratch model of the same seed with "
                                                       f"per-image {label} predictions"))
            continue
        e = c.effect
        detail = f"{c.transfer_regime} vs scratch, {e.n_seeds} seed{'s' if e.n_seeds != 1 else ''}"
        effects.append(ArchEffect(arch, e, detail=detail + (f"; {e.note}" if e.note else "")))
    return _difference_claim(
        f"transfer_beats_scratch_{split}",
        f"Transfer learning beats training from scratch on {label} accuracy",
        "transfer learning enhances the performance of CNN architectures in data-starved regimes "
        "(abstract), including on out-of-distribution data (Table II: OOD accuracy with and without "
        "transfer)",
        f"per architecture, the transfer regime with the higher mean validation accuracy against "
        f"scratch, every seed of each, on the same {label} images (the answer box's comparison)",
        effects, opts, selection)


def feature_reuse_beats_scratch(res: Results, corr: Correctness, opts: ClaimOptions,
                                selection: str) -> Claim:
    full = res.full
    fe, scratch = full[full["regime"] == FEATURE_EXTRACT], full[full["regime"] == SCRATCH]
    effects = _paired_claim_effects(res, corr, "test", _archs(full),
                                    lambda a: seed_pairs(fe, scratch, a), opts)
    return _difference_claim(
        "feature_extract_beats_scratch",
        "Feature reuse alone (feature extraction) beats training from scratch on test accuracy",
        "feature reuse contributes to the successful application of transfer learning in "
        "data-starved regimes (abstract)",
        "per architecture and seed, feature extraction minus scratch (same seed), on the same test images",
        effects, opts, selection)


def fe_close_to_ft(res: Results, corr: Correctness, opts: ClaimOptions, selection: str,
                   arch: str = SMALL_ARCH) -> Claim:
    key = f"feature_extract_close_to_finetune_{arch}"
    statement = f"Feature extraction comes close to fine-tuning on {arch} (test accuracy)"
    paper = ("on SqueezeNet, feature extraction comes close to fine-tuning (Table II: validation "
             "bands 88-90% vs 90%)")
    test = (f"equivalence (two one-sided tests, level {opts.alpha:g}) of feature extraction minus "
            f"fine-tuning per seed on the same test images, margin {opts.margin_text}")
    full = res.full
    fe, ft = full[full["regime"] == FEATURE_EXTRACT], full[full["regime"] == FINETUNE]
    if arch not in set(full["arch"]):
        return Claim(key, statement, UNTESTABLE, f"no {arch} trials", paper, test)
    effects = _paired_claim_effects(res, corr, "test", [arch], lambda a: seed_pairs(fe, ft, a), opts,
                                    margin=opts.margin)
    e = effects[0]
    if e.effect is None:
        return Claim(key, statement, UNTESTABLE, f"needs {arch} fine-tune and feature-extraction trials "
                     f"of the same seed with test predictions ({e.note})", paper, test, tuple(effects))
    verdict, why = equivalence_verdict(e.effect, opts.alpha)
    evidence = f"{why}; margin {opts.margin_text}. {e.text()}. {selection}"
    return Claim(key, statement, verdict, evidence, paper, test, tuple(effects))


def overparameterisation(res: Results, corr: Correctness, opts: ClaimOptions, selection: str) -> Claim:
    key = "overparameterisation"
    label = res.ood_label
    m = 100 * opts.margin
    statement = (f"Overparameterisation does not hurt: {SMALL_ARCH} is not worse than {LARGE_ARCH} on "
                 f"{label} accuracy by {m:g} points or more")
    paper = ("overparameterization contributes to the success of transfer learning (abstract): SqueezeNet "
             "and VGG11, with about 100x more trainable parameters, show no significant difference "
             "in OOD accuracy")
    test = (f"one-sided non-inferiority test (level {opts.alpha:g}, margin {opts.margin_text}) of "
            f"{SMALL_ARCH} minus {LARGE_ARCH} on the same {label} images, over every seed of each one's "
            "transfer regime (the higher mean validation accuracy); the size trend across all "
            "architectures as context")
    if not res.ood_kinds:
        return Claim(key, statement, UNTESTABLE, "needs an OOD set", paper, test)
    full = res.full
    trend = _size_trend(res)
    regime = {a: best_regime(full[full["arch"] == a], TRANSFER_REGIMES) for a in (SMALL_ARCH, LARGE_ARCH)}
    missing = [a for a, r in regime.items() if r is None]
    if missing:
        return Claim(key, statement, UNTESTABLE, f"needs transfer trials of {' and '.join(missing)}. {trend}",
                     paper, test)
    small = full[(full["arch"] == SMALL_ARCH) & (full["regime"] == regime[SMALL_ARCH])]
    large = full[(full["arch"] == LARGE_ARCH) & (full["regime"] == regime[LARGE_ARCH])]
    s_ids = small.sort_values("seed").set_index("seed")["trial_id"]
    l_ids = large.sort_values("seed").set_index("seed")["trial_id"]
    seeds = [int(x) for x in s_ids.index if x in l_ids.index]
    pairs = [Pair(x, str(s_ids[x]), str(l_ids[x])) for x in seeds]
    a, b, used, dropped = corr.paired(pairs, "ood") if pairs else (None, None, [], 0)
    if not used or a.shape[1] < 2:
        why = "no seed run for both" if not pairs else "no per-image predictions shared by the two"
        return Claim(key, statement, UNTESTABLE, f"{why} ({SMALL_ARCH} {regime[SMALL_ARCH]}, {LARGE_ARCH} "
                     f"{regime[LARGE_ARCH]}). {trend}", paper, test)
    eff = paired_effect(a, b, margin=opts.margin, confidence=1 - opts.alpha)
    verdict, why = noninferiority_verdict(eff, opts.alpha)
    ratio = (large["trainable_params"].median() / small["trainable_params"].median()
             if small["trainable_params"].median() else math.nan)
    s_params, l_params = small["trainable_params"].median(), large["trainable_params"].median()
    models = (f"{SMALL_ARCH} {regime[SMALL_ARCH]} ({_millions(s_params)} trainable) "
              f"vs {LARGE_ARCH} {regime[LARGE_ARCH]} ({_millions(l_params)}"
              f"{f', {ratio:.0f}x' if math.isfinite(ratio) else ''})")
    detail = f"{len(used)} seed{'s' if len(used) != 1 else ''}" + (
        f", {dropped} images not seen by both left out" if dropped else "")
    ae = ArchEffect(f"{SMALL_ARCH} − {LARGE_ARCH}", eff, detail=detail)
    evidence = (f"{why}; margin {opts.margin_text}. {models}: {label} accuracy {100 * a.mean():.1f}% vs "
                f"{100 * b.mean():.1f}%, {eff.text()}. {trend}. {selection}")
    return Claim(key, statement, verdict, evidence, paper, test, (ae,))


def _millions(n: float) -> str:
    return f"{n / 1e6:.3g}M" if n is not None and math.isfinite(n) else "n/a"


def _size_trend(res: Results) -> str:
    """Context: Spearman rho between architecture size (fine-tuned trainable parameters) and the
    mean OOD accuracy of each architecture's transfer regime, with its exact permutation p."""
    full = res.full
    size = full[full["regime"].isin([FINETUNE, SCRATCH])].groupby("arch")["trainable_params"].median()
    ood = {}
    for arch, sub in full.groupby("arch"):
        regime = best_regime(sub, TRANSFER_REGIMES)
        if regime is not None:
            ood[arch] = sub.loc[sub["regime"] == regime, "ood_acc"].mean()
    joined = pd.DataFrame({"size": size, "ood": pd.Series(ood, dtype=float)}).dropna()
    r = spearman_exact(joined["size"].tolist(), joined["ood"].tolist())
    if r.n < 3 or not math.isfinite(r.rho):
        return f"Size trend across architectures: needs 3 or more sizes (have {r.n})"
    how = "exact permutation p" if r.exact else "permutation p, 50,000 orderings"
    return (f"Size trend across {r.n} architectures (context, not the verdict): Spearman rho between "
            f"trainable parameters and the transfer regime's mean {res.ood_label} accuracy = {r.rho:+.2f} "
            f"({fmt_p(r.p_value)}, {how}; with {r.n} architectures p cannot go below "
            f"{2 / math.factorial(r.n):.2g})")


def _subsets(trials: pd.DataFrame, ids: list[str]) -> str:
    """Whether the seeds' training subsets at a size below "all" were drawn per seed."""
    if "train_subset_seed" not in trials:
        return ""
    drawn = trials.loc[trials["trial_id"].isin(ids), "train_subset_seed"]
    if len(ids) > 1 and (drawn.isna().all() or drawn.nunique() == 1):
        return ("; no per-seed training subsets recorded (rows written before them, or "
                "subset_seed_policy split: one subset for every seed), so which images were drawn "
                "is not in the interval")
    return "; each seed its own training subset" if drawn.notna().all() else ""


def _log_odds_text(e: Effect) -> str:
    return f"log-odds {e.estimate:+.2f} [{e.lo:+.2f}, {e.hi:+.2f}], {fmt_p(e.p_value)}"


def gap_grows_when_starved(res: Results, corr: Correctness, opts: ClaimOptions, selection: str) -> Claim:
    key = "transfer_gap_larger_with_less_data"
    statement = ("Transfer helps most in the data-starved regime: its lead over scratch on test accuracy "
                 "is larger at the smallest train size than at the full one")
    paper = ("the effectiveness of feature extraction and fine-tuning is evaluated with respect to the "
             "size of the target training data (abstract); the project tests that the benefit grows as "
             "data shrink")
    test = ("per architecture and seed, (transfer − scratch at the smallest size) − (transfer − scratch "
            "at the full size), on the same test images, each seed with its own training subset at the "
            "smaller size; the verdict on the accuracy scale, the log-odds scale beside it (a difference "
            "on the accuracy scale is squeezed by the ceiling at the full size); " + CONDITIONAL)
    trials = res.trials
    sizes = _sizes(trials)
    if len(sizes) < 2:
        return Claim(key, statement, UNTESTABLE, "needs transfer and scratch trials at two or more train "
                     "sizes (--train-sizes)", paper, test)
    small, large = sizes[0], sizes[-1]
    effects = []
    for arch in _archs(trials):
        groups = []
        per_size = {}
        for size in (small, large):
            sub = trials[(trials["arch"] == arch) & (trials["train_size"] == size)]
            t = pick_best(sub[sub["regime"].isin(TRANSFER_REGIMES)], ["seed"])
            sc = sub[sub["regime"] == SCRATCH]
            per_size[size] = seed_pairs(t, sc, arch)
        by_seed = {p.seed: p for p in per_size[small]}
        for p in per_size[large]:
            if p.seed in by_seed:
                q = by_seed[p.seed]
                groups.append((q.a, q.b, p.a, p.b))
        if not groups:
            effects.append(ArchEffect(arch, None, note=f"no seed has transfer and scratch at both {small} "
                                                       f"and {large}"))
            continue
        x, used, _dropped = corr.stack(groups, "test")
        if not used or x.shape[2] < 2:
            effects.append(ArchEffect(arch, None, note="no shared per-image test predictions"))
            continue
        values = (x[:, 0] - x[:, 1]) - (x[:, 2] - x[:, 3])
        eff = effect_of(values, confidence=1 - opts.alpha, bounds=(-2.0, 2.0))
        odds = log_odds_contrast(x, (1, -1, -1, 1), confidence=1 - opts.alpha)
        ids = [t for k in used for t in groups[k][:2]]  # the smaller size's transfer and scratch trials
        effects.append(ArchEffect(arch, eff, detail=f"train size {small} vs {large}; {_log_odds_text(odds)}"
                                                    f"{_subsets(trials, ids)}"))
    if all(e.effect is None for e in effects):
        return Claim(key, statement, UNTESTABLE, "needs transfer and scratch trials of the same seed at two "
                     "or more train sizes, with test predictions: " + "; ".join(e.text() for e in effects),
                     paper, test, tuple(effects))
    return _difference_claim(key, statement, paper, test, effects, opts, selection)


def _sizes(trials: pd.DataFrame) -> list[str]:
    sizes_x = trials.groupby("train_size")["train_images_per_class"].mean()
    return sorted(trials["train_size"].unique(), key=lambda s: (is_full_size(s), sizes_x.get(s, math.inf)))


def check_claims(res: Results, options: ClaimOptions | None = None, corr: Correctness | None = None,
                 comparisons: list[Comparison] | None = None) -> list[Claim]:
    """Every claim on these results. `corr` (the per-image correctness of every ok trial) and
    `comparisons` (analysis.regime_effects.compare) are read and computed here when not given."""
    opts = options or ClaimOptions()
    corr = corr or Correctness(res, res.trials["trial_id"].astype(str).tolist())
    comparisons = full_size(comparisons if comparisons is not None else compare(res, corr, [res.full_size]),
                            res)
    selection = f"Models: {model_selection(res)}; {BEST_RULE}."
    claims = [transfer_beats_scratch(res, comparisons, "test", opts, selection)]
    if res.ood_kinds:
        claims.append(transfer_beats_scratch(res, comparisons, "ood", opts, selection))
    claims += [feature_reuse_beats_scratch(res, corr, opts, selection),
               fe_close_to_ft(res, corr, opts, selection),
               overparameterisation(res, corr, opts, selection),
               gap_grows_when_starved(res, corr, opts, selection)]
    return claims


BEST_RULE = ("transfer regime: the higher mean best-val accuracy over seeds; within a regime and seed, "
             "higher best-val accuracy, then lower val loss, then earlier epoch")


CLAIMS_NOTE = f"{FIXED_IN_ADVANCE} Every interval below is {CONDITIONAL}."
"""What the claims list says first (the report's claims sections and claims_markdown)."""


def claims_markdown(claims: list[Claim]) -> str:
    lines = [CLAIMS_NOTE, ""]
    for c in claims:
        lines.append(f"- **{c.verdict}** — {c.statement}. {c.evidence[0].upper()}{c.evidence[1:]}")
        if c.test:
            lines.append(f"  - Test: {c.test}.")
    return "\n".join(lines) + "\n"
