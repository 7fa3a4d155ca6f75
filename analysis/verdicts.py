"""What a claim's verdict can be and the rules that give it (docs/analysis.md, "Verdict rules").

- a claim of a difference "holds" only when it is significant for every architecture tested,
  "partly holds" when significant (Holm-adjusted across architectures) for some and against
  for none, "does not hold" when significant against it and for none, and is "not shown"
  otherwise (underpowered or mixed); "holds" names the architectures tested and the study's
  architectures left untested;
- a claim of closeness "holds" when an equivalence test (TOST) with a stated margin passes;
- a claim of non-inferiority ("A is not worse than B") "holds" when the one-sided test of
  "A is worse by the margin or more" rejects, "does not hold" when the whole 95% interval lies
  below -margin, and is "not shown" otherwise, with the smallest difference the data could find;
- "not testable" when the results lack what the claim needs (the evidence says what).

Every test is at `analysis.stats.ALPHA`; interval and p come from one calculation
(`analysis.stats.Effect`), so a verdict never rests on an interval and a p that disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from analysis.stats import ALPHA, Effect, fmt_p, holm

HOLDS = "holds"
PARTLY = "partly holds"
NOT_SHOWN = "not shown"
FAILS = "does not hold"
UNTESTABLE = "not testable"
VERDICTS: tuple[str, ...] = (HOLDS, PARTLY, NOT_SHOWN, FAILS, UNTESTABLE)

EQUIVALENCE_MARGIN = 0.05
"""Accuracy difference (a fraction: 5 points) within which two models count as "close", and the
non-inferiority margin. Stated before looking at results; change it with --equivalence-margin
(the verdict line then says the margin is not the default)."""
FIXED_IN_ADVANCE = ("The claims below are fixed in advance: the paper's own claims, each tested as the "
                    "paper states it, with its test, margin and level chosen before any result was "
                    "read; none was added or reworded after looking at these results.")


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

    @property
    def margin_text(self) -> str:
        """'±5 pp' or '±3 pp (not the default 5 pp)'."""
        default = "" if math.isclose(self.margin, EQUIVALENCE_MARGIN) else \
            f" (not the default {100 * EQUIVALENCE_MARGIN:g} pp: --equivalence-margin)"
        return f"±{100 * self.margin:g} pp{default}"


def with_holm(effects: list[ArchEffect]) -> list[ArchEffect]:
    """The same effects with Holm-adjusted p across them (the architectures of one claim)."""
    p = [e.effect.p_value if e.effect is not None else math.nan for e in effects]
    return [ArchEffect(e.arch, e.effect, float(q), e.detail, e.note)
            for e, q in zip(effects, holm(p), strict=True)]


def coverage_text(effects: list[ArchEffect], study_archs: tuple[str, ...]) -> str:
    """'tested: resnet18, vgg11_bn; not tested: squeezenet1_0 (no seed has both models), the
    study's densenet161 (not run)'."""
    tested = [e.arch for e in effects if e.effect is not None]
    missing = [f"{e.arch} ({e.note})" for e in effects if e.effect is None]
    present = {e.arch for e in effects}
    not_run = [a for a in study_archs if a not in present]
    parts = [f"tested: {', '.join(tested) or 'none'}"]
    untested = missing + ([f"the study's {', '.join(not_run)} (not run)"] if not_run else [])
    parts.append(f"not tested: {'; '.join(untested)}" if untested else "every architecture run was tested")
    return "; ".join(parts)


def difference_verdict(effects: list[ArchEffect], alpha: float = ALPHA) -> tuple[str, str]:
    """(verdict, one-line reason) for a claim that A beats B (positive effects)."""
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
        return HOLDS, f"significant for all {n} tested (each p < {alpha:g})"
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


def noninferiority_verdict(e: Effect, alpha: float = ALPHA) -> tuple[str, str]:
    """"A is not worse than B" by more than the margin, one-sided: rejects "A - B <= -margin"
    -> holds; the whole 95% interval below -margin -> does not hold; else not shown."""
    m = 100 * e.margin
    lower = f"the 90% interval's lower end {100 * e.lo90:+.1f} pp"
    if e.noninferiority < alpha:
        return HOLDS, (f"not worse by {m:g} pp or more: {lower} lies above -{m:g} pp "
                       f"({fmt_p(e.noninferiority, 'one-sided p')})")
    if e.hi < -e.margin:
        return FAILS, (f"worse by more than {m:g} pp: the whole 95% interval lies below -{m:g} pp "
                       f"({fmt_p(e.noninferiority, 'one-sided p')})")
    return NOT_SHOWN, (f"non-inferiority within {m:g} pp not shown: {lower} reaches below -{m:g} pp "
                       f"({fmt_p(e.noninferiority, 'one-sided p')}); the smallest difference these data "
                       f"could detect (80% power) is about {100 * e.mde(alpha):.0f} pp")
