"""The study's claims, each tested as the paper states it, with the numbers behind the verdict.

Every claim compares models on the same images, per architecture: an effect in percentage
points with a 95% interval and p that count both sources of noise, the seeds and the images
(`analysis.stats.paired_effect`). Verdicts (module constants; rules in docs/analysis.md):

- a claim of a difference "holds" only when it is significant for every architecture tested,
  "partly holds" when significant (Holm-adjusted) for some and against for none, "does not hold"
  when significant against it and for none, and is "not shown" otherwise (underpowered or mixed);
- a claim of closeness "holds" when an equivalence test (TOST) with a stated margin passes;
- a claim of no significant difference "does not hold" when the difference is significant,
  "holds" when equivalence within the margin is shown, and otherwise reads "no difference
  detected", with the smallest difference the data could have found;
- "not testable" when the results lack what the claim needs (the evidence says what).

Long because each of the study's claims is stated, tested and given its verdict rule here, side
by side, so that a reviewer reads them in one file (docs/analysis.md mirrors it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from analysis.aggregate import model_selection, pick_best
from analysis.effects import Correctness, Pair, seed_pairs
from analysis.load import Results, is_full_size
from analysis.stats import Effect, effect_of, fmt_p, holm, paired_effect, spearman
from trainables.regimes import FEATURE_EXTRACT, FINETUNE, SCRATCH, TRANSFER_REGIMES

HOLDS = "holds"
PARTLY = "partly holds"
NOT_SHOWN = "not shown"
FAILS = "does not hold"
NO_DIFFERENCE = "no difference detected"
UNTESTABLE = "not testable"
VERDICTS: tuple[str, ...] = (HOLDS, PARTLY, NOT_SHOWN, NO_DIFFERENCE, FAILS, UNTESTABLE)

ALPHA = 0.05
"""Significance level of every test (two-sided; TOST at this level uses the 90% interval)."""
EQUIVALENCE_MARGIN = 0.05
"""Accuracy difference (a fraction: 5 points) within which two models count as "close" /
equivalent. Stated before looking at results; change it with --equivalence-margin."""
SMALL_ARCH, LARGE_ARCH = "squeezenet1_0", "vgg11_bn"
"""The overparameterisation claim's two architectures (the study's smallest and largest)."""


@dataclass(frozen=True)
class ArchEffect:
    """One architecture's effect in a claim: None with `note` saying why when untestable."""

    arch: str
    effect: Effect | None
    p_holm: float = math.nan
    detail: str = ""
    note: str = ""

    def text(self) -> str:
        if self.effect is None:
            return f"{self.arch}: {self.note}"
        extra = f", {fmt_p(self.p_holm, 'Holm p')}" if math.isfinite(self.p_holm) and \
            self.p_holm != self.effect.p_value else ""
        detail = f" [{self.detail}]" if self.detail else ""
        return f"{self.arch} {self.effect.text()}{extra}{detail}"


@dataclass(frozen=True)
class Claim:
    key: str
    statement: str
    verdict: str
    evidence: str
    paper: str = ""
    """How the paper words it (docs/analysis.md cites the source)."""
    test: str = ""
    """The test behind the verdict, in one sentence."""
    effects: tuple[ArchEffect, ...] = field(default_factory=tuple)

    def summary(self) -> str:
        """One line: verdict, claim, and each architecture's effect."""
        per = "; ".join(e.text() for e in self.effects) if self.effects else self.evidence
        return f"{self.verdict} — {self.statement}: {per}"


@dataclass(frozen=True)
class ClaimOptions:
    alpha: float = ALPHA
    margin: float = EQUIVALENCE_MARGIN
    reps: int = 4000
    seed: int = 0


# ------------------------------------------------------------------------------ verdict rules
def difference_verdict(effects: list[ArchEffect], alpha: float = ALPHA) -> tuple[str, str]:
    """(verdict, one-line reason) for a claim that A beats B (positive effects), per docs."""
    tested = [e for e in effects if e.effect is not None]
    if not tested:
        return UNTESTABLE, "no architecture has the models and per-image predictions it needs"
    raw_for = [e for e in tested if e.effect.p_value < alpha and e.effect.estimate > 0]
    sig_for = [e for e in tested if e.p_holm < alpha and e.effect.estimate > 0]
    sig_against = [e for e in tested if e.p_holm < alpha and e.effect.estimate < 0]
    n = len(tested)
    adj = ", Holm-adjusted across architectures" if n > 1 else ""
    counts = (f"significant for {len(sig_for)} of {n} architecture{'s' if n != 1 else ''} "
              f"(p < {alpha:g}{adj}), significantly reversed for {len(sig_against)}")
    if len(raw_for) == n:
        return HOLDS, f"significant for all {n} (each p < {alpha:g})"
    if sig_for and not sig_against:
        return PARTLY, counts
    if sig_against and not sig_for:
        return FAILS, counts
    why = "mixed" if sig_for and sig_against else "underpowered or no effect"
    return NOT_SHOWN, f"{counts}: {why}"


def equivalence_verdict(e: Effect, alpha: float = ALPHA) -> tuple[str, str]:
    """Closeness within ±margin: TOST passes -> holds; the whole 95% interval beyond the margin
    -> does not hold; else not shown."""
    m = 100 * e.margin
    ci90 = f"90% interval [{100 * e.lo90:+.1f}, {100 * e.hi90:+.1f}] pp"
    if e.tost < alpha:
        return HOLDS, f"equivalent within ±{m:g} pp: {ci90} inside the margin ({fmt_p(e.tost, 'TOST p')})"
    if e.lo > e.margin or e.hi < -e.margin:
        return FAILS, (f"differs by more than {m:g} pp: the whole 95% interval lies beyond the margin "
                       f"({fmt_p(e.tost, 'TOST p')})")
    return NOT_SHOWN, (f"equivalence within ±{m:g} pp not shown: {ci90} reaches past the margin "
                       f"({fmt_p(e.tost, 'TOST p')}); the smallest difference these data could detect "
                       f"(80% power) is about {100 * e.mde(alpha):.0f} pp")


def no_difference_verdict(e: Effect, alpha: float = ALPHA) -> tuple[str, str]:
    """"No significant difference": significant -> does not hold; equivalence within the margin
    shown -> holds; else no difference detected, with the smallest detectable difference."""
    m = 100 * e.margin
    if e.p_value < alpha:
        return FAILS, f"the difference is significant ({fmt_p(e.p_value)})"
    if e.tost is not None and e.tost < alpha:
        return HOLDS, (f"no significant difference ({fmt_p(e.p_value)}) and equivalent within "
                       f"±{m:g} pp ({fmt_p(e.tost, 'TOST p')})")
    return NO_DIFFERENCE, (f"no significant difference ({fmt_p(e.p_value)}), but equivalence within "
                           f"±{m:g} pp is not shown ({fmt_p(e.tost, 'TOST p')}): the smallest difference "
                           f"this comparison could detect (80% power) is about {100 * e.mde(alpha):.0f} pp")


# ---------------------------------------------------------------------------------- helpers
def _with_holm(effects: list[ArchEffect]) -> list[ArchEffect]:
    p = [e.effect.p_value if e.effect is not None else math.nan for e in effects]
    adjusted = holm(p)
    return [ArchEffect(e.arch, e.effect, float(q), e.detail, e.note) for e, q in zip(effects, adjusted,
                                                                                  strict=True)]


def _models(pairs: list[Pair], regime_of: dict[str, str]) -> str:
    """Which models were compared: 'finetune vs scratch, seed 0' or 'finetune ×3, feature_extract ×2
    vs scratch ×5, 5 seeds'."""
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
    regime_of = corr.regime_of
    out = []
    for arch in archs:
        pairs = pairs_of(arch)
        if not pairs:
            out.append(ArchEffect(arch, None, note="no seed has both models"))
            continue
        a, b, used, dropped = corr.paired(pairs, split)
        if not used or a.shape[1] == 0:
            out.append(ArchEffect(arch, None, note=f"no per-image {_split_label(split, res)} predictions "
                                                   "shared by the two models"))
            continue
        eff = paired_effect(a, b, margin=margin, reps=opts.reps, seed=opts.seed, confidence=1 - opts.alpha)
        detail = _models(used, regime_of)
        if dropped:
            detail += (", " if detail else "") + f"{dropped} images not seen by every model left out"
        out.append(ArchEffect(arch, eff, detail=detail))
    return out


def _difference_claim(key: str, statement: str, paper: str, test: str, effects: list[ArchEffect],
                      opts: ClaimOptions, selection: str) -> Claim:
    effects = _with_holm(effects)
    verdict, why = difference_verdict(effects, opts.alpha)
    per = "; ".join(e.text() for e in effects)
    evidence = f"{why}. Per architecture (effect, 95% interval, p): {per}. {selection}"
    return Claim(key, statement, verdict, evidence, paper, test, tuple(effects))


# ----------------------------------------------------------------------------------- claims
def transfer_beats_scratch(res: Results, corr: Correctness, split: str, opts: ClaimOptions,
                           selection: str) -> Claim:
    col = "test" if split == "test" else "ood"
    label = _split_label(split, res)
    full = res.full
    transfer = pick_best(full[full["regime"].isin(TRANSFER_REGIMES)], ["arch", "seed"])
    scratch = full[full["regime"] == SCRATCH]
    archs = _archs(full)
    effects = _paired_claim_effects(res, corr, split, archs,
                                    lambda a: seed_pairs(transfer, scratch, a), opts)
    return _difference_claim(
        f"transfer_beats_scratch_{col}",
        f"Transfer learning beats training from scratch on {label} accuracy",
        "transfer learning enhances the performance of CNN architectures in data-starved regimes "
        "(abstract), including on out-of-distribution data (Table II: OOD accuracy with and without "
        "transfer)",
        f"per architecture and seed, the transfer regime with the better validation accuracy minus "
        f"the scratch model of the same seed, on the same {label} images",
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
            f"fine-tuning per seed on the same test images, margin ±{100 * opts.margin:g} pp")
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
    evidence = f"{why}. {e.text()}. {selection}"
    return Claim(key, statement, verdict, evidence, paper, test, tuple(effects))


def overparameterisation(res: Results, corr: Correctness, opts: ClaimOptions, selection: str) -> Claim:
    key = "overparameterisation"
    label = res.ood_label
    statement = (f"Overparameterisation does not hurt: no significant {label} difference between "
                 f"{SMALL_ARCH} and {LARGE_ARCH}")
    paper = ("overparameterization contributes to the success of transfer learning (abstract): SqueezeNet "
             "and VGG11, with about 100x more trainable parameters, show no significant difference "
             "in OOD accuracy")
    test = (f"exact McNemar test on the same {label} images between the best transfer model of each "
            f"(chosen on validation), with equivalence (TOST, ±{100 * opts.margin:g} pp) and the size "
            "trend across all architectures as context")
    if not res.ood_kinds:
        return Claim(key, statement, UNTESTABLE, "needs an OOD set", paper, test)
    full = res.full
    transfer = full[full["regime"].isin(TRANSFER_REGIMES)]
    best = pick_best(transfer, ["arch"]).set_index("arch") if not transfer.empty else pd.DataFrame()
    missing = [a for a in (SMALL_ARCH, LARGE_ARCH) if a not in best.index]
    trend = _size_trend(res, best)
    if missing:
        return Claim(key, statement, UNTESTABLE, f"needs transfer trials of {' and '.join(missing)}. {trend}",
                     paper, test)
    s, v = best.loc[SMALL_ARCH], best.loc[LARGE_ARCH]
    pair = Pair(0, str(s["trial_id"]), str(v["trial_id"]))
    a, b, used, dropped = corr.paired([pair], "ood")
    if not used or a.shape[1] == 0:
        return Claim(key, statement, UNTESTABLE, f"no per-image {label} predictions shared by the two best "
                     f"transfer models ({pair.a}, {pair.b}). {trend}", paper, test)
    eff = paired_effect(a, b, margin=opts.margin, reps=opts.reps, seed=opts.seed,
                        confidence=1 - opts.alpha)
    verdict, why = no_difference_verdict(eff, opts.alpha)
    ratio = (v["trainable_params"] / s["trainable_params"]
             if s["trainable_params"] and math.isfinite(s["trainable_params"]) else math.nan)
    mc = eff.mcnemar
    models = (f"{SMALL_ARCH} {s['regime']} s{int(s['seed'])} ({_millions(s['trainable_params'])} trainable) "
              f"vs {LARGE_ARCH} {v['regime']} s{int(v['seed'])} ({_millions(v['trainable_params'])}"
              f"{f', {ratio:.0f}x' if math.isfinite(ratio) else ''})")
    detail = f"b = {mc.b}, c = {mc.c}" if mc is not None else ""
    if dropped:
        detail += f", {dropped} images not seen by both left out"
    ae = ArchEffect(f"{SMALL_ARCH} − {LARGE_ARCH}", eff, detail=detail)
    evidence = (f"{why}. {models}: {label} accuracy {100 * mc.acc_a:.1f}% vs {100 * mc.acc_b:.1f}%, "
                f"{eff.text()} [{detail}]. {trend}. {selection}")
    return Claim(key, statement, verdict, evidence, paper, test, (ae,))


def _millions(n: float) -> str:
    return f"{n / 1e6:.3g}M" if n is not None and math.isfinite(n) else "n/a"


def _size_trend(res: Results, best: pd.DataFrame) -> str:
    """Context: Spearman rho between architecture size (fine-tuned trainable parameters) and the
    OOD accuracy of each architecture's best transfer model."""
    full = res.full
    size = full[full["regime"].isin([FINETUNE, SCRATCH])].groupby("arch")["trainable_params"].median()
    if best.empty or size.empty:
        return "Size trend: not available"
    joined = best[["ood_acc"]].join(size.rename("size"), how="inner").dropna()
    rho, p, n = spearman(joined["size"].tolist(), joined["ood_acc"].tolist())
    if n < 3 or not math.isfinite(rho):
        return f"Size trend across architectures: needs 3 or more sizes (have {n})"
    return (f"Size trend across {n} architectures (context, not the verdict): Spearman rho between "
            f"trainable parameters and the best transfer model's OOD accuracy = {rho:+.2f} ({fmt_p(p)})")


def gap_grows_when_starved(res: Results, corr: Correctness, opts: ClaimOptions, selection: str) -> Claim:
    key = "transfer_gap_larger_with_less_data"
    statement = ("Transfer helps most in the data-starved regime: its lead over scratch on test accuracy "
                 "is larger at the smallest train size than at the full one")
    paper = ("the effectiveness of feature extraction and fine-tuning is evaluated with respect to the "
             "size of the target training data (abstract); the project tests that the benefit grows as "
             "data shrink")
    test = ("per architecture and seed, (transfer − scratch at the smallest size) − (transfer − scratch "
            "at the full size), on the same test images")
    trials = res.trials
    sizes_x = trials.groupby("train_size")["train_images_per_class"].mean()
    sizes = sorted(trials["train_size"].unique(), key=lambda s: (is_full_size(s), sizes_x.get(s, math.inf)))
    if len(sizes) < 2:
        return Claim(key, statement, UNTESTABLE, "needs transfer and scratch trials at two or more train "
                     "sizes (--train-sizes)", paper, test)
    small, large = sizes[0], sizes[-1]
    effects = []
    for arch in _archs(trials):
        groups, seeds = [], []
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
                seeds.append(p.seed)
        if not groups:
            effects.append(ArchEffect(arch, None, note=f"no seed has transfer and scratch at both {small} "
                                                       f"and {large}"))
            continue
        x, used, _dropped = corr.stack(groups, "test")
        if not used or x.shape[2] == 0:
            effects.append(ArchEffect(arch, None, note="no shared per-image test predictions"))
            continue
        values = (x[:, 0] - x[:, 1]) - (x[:, 2] - x[:, 3])
        eff = effect_of(values, reps=opts.reps, seed=opts.seed, confidence=1 - opts.alpha)
        effects.append(ArchEffect(arch, eff, detail=f"train size {small} vs {large}"))
    if all(e.effect is None for e in effects):
        return Claim(key, statement, UNTESTABLE, "needs transfer and scratch trials of the same seed at two "
                     "or more train sizes, with test predictions: " + "; ".join(e.text() for e in effects),
                     paper, test, tuple(effects))
    return _difference_claim(key, statement, paper, test, effects, opts, selection)


def _archs(trials: pd.DataFrame) -> list[str]:
    from analysis.load import arch_order

    return arch_order(trials["arch"].unique().tolist())


def needed_trials(res: Results) -> list[str]:
    """Every trial whose predictions some claim reads (one read for all claims). Conservative:
    every ok trial at the full size and at the smallest size."""
    trials = res.trials
    sizes_x = trials.groupby("train_size")["train_images_per_class"].mean()
    sizes = sorted(trials["train_size"].unique(), key=lambda s: (is_full_size(s), sizes_x.get(s, math.inf)))
    keep = {res.full_size, sizes[0]} if sizes else {res.full_size}
    return trials.loc[trials["train_size"].isin(keep), "trial_id"].astype(str).tolist()


def check_claims(res: Results, regimes: pd.DataFrame | None = None, best: pd.DataFrame | None = None,
                 paired: pd.DataFrame | None = None, options: ClaimOptions | None = None) -> list[Claim]:
    """Every claim on these results. `regimes`, `best` and `paired` are accepted for callers that
    computed them already; the claims need per-image predictions, which they read once here."""
    opts = options or ClaimOptions()
    corr = Correctness(res, needed_trials(res))
    selection = f"Models: {model_selection(res)}; {BEST_RULE}."
    claims = [transfer_beats_scratch(res, corr, "test", opts, selection)]
    if res.ood_kinds:
        claims.append(transfer_beats_scratch(res, corr, "ood", opts, selection))
    claims += [feature_reuse_beats_scratch(res, corr, opts, selection),
               fe_close_to_ft(res, corr, opts, selection),
               overparameterisation(res, corr, opts, selection),
               gap_grows_when_starved(res, corr, opts, selection)]
    return claims


BEST_RULE = "between trials, higher best-val accuracy, then lower val loss, then earlier epoch"


def claims_markdown(claims: list[Claim]) -> str:
    lines = []
    for c in claims:
        lines.append(f"- **{c.verdict}** — {c.statement}. {c.evidence[0].upper()}{c.evidence[1:]}")
        if c.test:
            lines.append(f"  - Test: {c.test}.")
    return "\n".join(lines) + "\n"

