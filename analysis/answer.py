"""The answer: what a researcher reads first, on the console and at the top of report.html.

    In plain words   one or two sentences: for the architecture best on validation, how far its
                     transfer regime is ahead of (or behind) training from scratch on the test
                     and the OOD images, with the 95% interval, and whether scratch runs broke.
    Best on valid.   the architecture x regime with the highest mean best-val accuracy at the full
                     train size, and its test and OOD accuracy with the 95% interval over seeds
                     and images (analysis.stats.crossed_accuracy).
    Transfer - scratch  per architecture and train size: analysis.regime_effects.compare (the
                     transfer regime chosen on validation against scratch, all seeds each, one
                     calculation for interval and p, Holm across every comparison shown).
    Claims           each claim's verdict in one line (analysis.claims).

The same comparison at the full train size is the claims' and the comparison table's: one
number per question. No statistic is computed here.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analysis import one_class
from analysis.effects import Correctness
from analysis.load import Results, arch_order
from analysis.regime_effects import Comparison, sizes_smallest_first
from analysis.stats import Effect
from trainables.regimes import SCRATCH, STUDY_REGIMES, regime_label, regime_order

CONDITIONAL = ("every interval is conditional on the one train/val/test split the sweep drew (a new "
               "split would move every number) and counts the seeds and the images as noise")


def pct(x: float, signed: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


@dataclass(frozen=True)
class Headline:
    """The chosen architecture x regime's accuracy on one split."""

    split: str
    accuracy: Effect

    @property
    def mean(self) -> float:
        return self.accuracy.estimate

    @property
    def interval(self) -> str:
        if not math.isfinite(self.accuracy.lo):
            return "no interval"
        return f"[{pct(self.accuracy.lo)}, {pct(self.accuracy.hi)}]"

    @property
    def how(self) -> str:
        a = self.accuracy
        seeds = f"{a.n_seeds} seed{'s' if a.n_seeds != 1 else ''}"
        if not math.isfinite(a.lo):
            return f"mean of {seeds}: no per-image predictions, so no interval"
        if a.n_seeds == 1:
            return f"Wilson 95% interval over {a.n_images} images; 1 seed: seed noise is not measured"
        return f"95% interval over {seeds} × {a.n_images} images" + (f"; {a.note}" if a.note else "")


@dataclass
class Answer:
    arch: str | None
    regime: str | None
    train_size: str
    val_mean: float
    headlines: list[Headline]
    comparisons: list[Comparison]
    claims: list[Any]
    scope: str
    """What the results cover: architectures, seeds, train sizes."""
    plain: str = ""
    """One or two sentences a non-statistician reads correctly (the console's first line)."""
    broken: list[str] = field(default_factory=list)
    """Trials that answer one class, one line per architecture x regime x train size."""
    notes: list[str] = field(default_factory=list)

    @property
    def best_label(self) -> str:
        if self.arch is None:
            return "n/a"
        return f"{self.arch} · {regime_label(self.regime)}"

    EFFECT_HOW = ("transfer regime with the higher mean validation accuracy minus scratch, every seed of "
                  "each, on the same images; interval and p from one calculation over seeds and images "
                  "(p < 0.05 exactly when the interval excludes 0); Holm p across all the comparisons "
                  f"shown; {CONDITIONAL}")

    def rows(self) -> list[tuple[str, str, dict[str, Comparison]]]:
        """(architecture, train size label, {split label: comparison}) in display order."""
        rows: dict[tuple[str, str], dict[str, Comparison]] = {}
        for c in self.comparisons:
            rows.setdefault((c.arch, c.size_label), {})[c.split_label] = c
        return [(a, s, by) for (a, s), by in rows.items()]

    @property
    def splits(self) -> list[str]:
        return list(dict.fromkeys(c.split_label for c in self.comparisons))

    def text(self) -> str:
        """The plain sentence, then the answer box as plain text (the console prints it first)."""
        lines = textwrap.wrap(self.plain, 100) + ["", f"ANSWER ({self.scope})"] if self.plain else \
            [f"ANSWER ({self.scope})"]
        if self.arch is not None:
            lines.append(f"  Best on validation: {self.best_label} (train size {self.train_size}, "
                         f"mean best-val accuracy {pct(self.val_mean)}%)")
            width = max(len(h.split) for h in self.headlines) if self.headlines else 0
            for h in self.headlines:
                lines.append(f"    {h.split:<{width}}  {pct(h.mean):>5}%  {h.interval:<14}  {h.how}")
        if self.comparisons:
            lines.append("  Transfer − scratch, per architecture and train size (percentage points "
                         "[95% interval], p, Holm p):")
            rows = self.rows()
            width_a = max(len(a) for a, _, _ in rows)
            width_s = max(len(s) for _, s, _ in rows)
            cells = {(a, s, sp): f"{c.transfer_regime}: {c.cell}"
                     for a, s, by in rows for sp, c in by.items()}
            width_c = {sp: max([len(sp)] + [len(v) for (_, _, x), v in cells.items() if x == sp])
                       for sp in self.splits}
            lines.append(f"    {'':<{width_a}}  {'':<{width_s}}  "
                         + "   ".join(f"{sp:<{width_c[sp]}}" for sp in self.splits).rstrip())
            for arch, size, _ in rows:
                lines.append(f"    {arch:<{width_a}}  {size:<{width_s}}  " + "   ".join(
                    f"{cells.get((arch, size, sp), '—'):<{width_c[sp]}}" for sp in self.splits).rstrip())
            lines += textwrap.wrap(f"({self.EFFECT_HOW})", 100, initial_indent="    ",
                                   subsequent_indent="     ")
        else:
            lines.append("  Transfer − scratch: not testable (needs transfer and scratch trials of the same "
                         "seeds with per-image predictions)")
        for b in self.broken:
            lines += textwrap.wrap(f"Broken: {b}", 100, initial_indent="  ", subsequent_indent="    ")
        if self.claims:
            lines.append("  Claims (fixed in advance: the paper's own):")
            width = max(len(c.verdict) for c in self.claims)
            lines += [f"    {c.verdict:<{width}}  {c.statement}" for c in self.claims]
        lines += [f"  Note: {n}" for n in self.notes]
        return "\n".join(lines)


def best_on_validation(regimes: pd.DataFrame) -> pd.Series | None:
    """The arch x regime with the highest mean best-val accuracy (ties: more seeds, then the
    study's regime order, then architecture name), among the study's regimes: the linear probe's
    validation accuracy is optimistic (its C was chosen on those images), so it is shown, not
    crowned."""
    ok = regimes[regimes["regime"].isin(STUDY_REGIMES)].dropna(subset=["best_val_acc_mean"])
    if ok.empty:
        return None
    order = {r: i for i, r in enumerate(regime_order(ok["regime"].unique().tolist()))}
    ranked = ok.assign(_r=ok["regime"].map(order)).sort_values(
        ["best_val_acc_mean", "n", "_r", "arch"], ascending=[False, False, True, True], kind="stable")
    return ranked.iloc[0]


def _points(x: float) -> str:
    return f"{abs(100 * x):.0f}"


def plain_sentence(comparisons: list[Comparison], arch: str | None, full_size: str) -> str:
    """'On your 46 test images, pretrained mobilenet_v2 (feature extraction) is ahead of training
    from scratch by 30 points (95% interval 17 to 43); on the OOD (synthetic shift) images by
    12 (4 to 21).' for the architecture best on validation at the full train size."""
    mine = [c for c in comparisons if c.arch == arch and c.train_size == full_size]
    if not mine:
        return ("Transfer against training from scratch could not be compared on these results (it needs "
                "transfer and scratch trials of the same seeds with per-image predictions).")
    first = mine[0]
    label = regime_label(first.transfer_regime).lower()
    parts = []
    for i, c in enumerate(mine):
        e = c.effect
        where = f"On your {e.n_images} {c.split_label} images" if i == 0 else \
            f"on the {e.n_images} {c.split_label} images"
        interval = f"95% interval {100 * e.lo:+.0f} to {100 * e.hi:+.0f}"
        if i == 0:
            who = f"pretrained {arch} ({label}, {e.n_seeds} seed{'s' if e.n_seeds != 1 else ''})"
            direction = "ahead of" if e.estimate >= 0 else "behind"
            head = f"{where}, {who} is {direction} training from scratch by {_points(e.estimate)} points"
        else:
            direction = "ahead" if e.estimate >= 0 else "behind"
            head = f"{where} {direction} by {_points(e.estimate)}"
        if e.lo <= 0 <= e.hi:
            parts.append(f"{head}, but the {interval} includes no difference")
        else:
            parts.append(f"{head} ({interval})")
    return "; ".join(parts) + "."


def broken_lines(res: Results, corr: Correctness) -> dict[tuple[str, str, str], str]:
    """Per (arch, regime, train size): which seeds answer one class on which split ('seeds 1, 2
    predict 'ants' for 46 of 46 test images'), for every group that has any."""
    labels = {"test": "test", "ood": res.ood_label}
    out = {}
    for (arch, regime, size), g in res.trials.groupby(["arch", "regime", "train_size"], sort=False):
        ids = g["trial_id"].astype(str).tolist()
        seeds = dict(zip(ids, g["seed"].astype(int), strict=True))
        text = one_class.summary(corr.one_class, ids, seeds, labels)
        if text:
            of = f"{len(ids)} seed{'s' if len(ids) != 1 else ''}"
            out[(str(arch), str(regime), str(size))] = f"{text} (of {of})"
    return out


def build(res: Results, regimes: pd.DataFrame, accuracies: pd.DataFrame, claims: list[Any],
          comparisons: list[Comparison], broken: dict[tuple[str, str, str], str]) -> Answer:
    """`accuracies`: analysis.regime_effects.regime_accuracies at the full size; `broken`:
    broken_lines."""
    archs = arch_order(res.trials["arch"].unique().tolist())
    seeds = res.trials.groupby(["arch", "regime", "train_size"])["seed"].nunique()
    seed_text = (f"{seeds.max()} seed{'s' if seeds.max() != 1 else ''}" if seeds.min() == seeds.max() else
                 f"{seeds.min()}-{seeds.max()} seeds")
    sizes = [s for s, _ in sizes_smallest_first(res)]
    scope = (f"{', '.join(archs)}; {seed_text}; train size{'s' if len(sizes) > 1 else ''} "
             f"{', '.join(sizes)}")
    top = best_on_validation(regimes)
    headlines = []
    if top is not None:
        for split, label in (("test", "test"), ("ood", res.ood_label)):
            row = accuracies[(accuracies["arch"] == top["arch"]) & (accuracies["regime"] == top["regime"])
                             & (accuracies["split"] == split)]
            if not row.empty:
                r = row.iloc[0]
                acc = Effect(r["mean"], r["lo"], r["hi"], math.nan, int(r["n_seeds"]), int(r["n_images"]),
                             math.nan, r["how"])
                headlines.append(Headline(label, acc))
            elif math.isfinite(top[f"{split}_acc_mean"]):  # accuracies without per-image predictions
                acc = Effect(float(top[f"{split}_acc_mean"]), math.nan, math.nan, math.nan,
                             int(top[f"{split}_acc_n"]), 0, math.nan, "mean over seeds")
                headlines.append(Headline(label, acc))
    arch = None if top is None else str(top["arch"])
    shown = {(c.arch, c.transfer_regime, c.train_size) for c in comparisons} | \
        {(c.arch, SCRATCH, c.train_size) for c in comparisons}
    if top is not None:
        shown.add((arch, str(top["regime"]), res.full_size))
    broken_shown = [f"{a} {regime_label(r).lower()}, train size {s}: {text}"
                    for (a, r, s), text in broken.items() if (a, r, s) in shown]
    plain = plain_sentence(comparisons, arch, res.full_size)
    scratch_broken = [text for (a, r, s), text in broken.items()
                      if a == arch and r == SCRATCH and s == res.full_size]
    if scratch_broken:
        plain += (f" Scratch is partly a broken baseline here: {scratch_broken[0]}, so it learnt nothing "
                  "about those images.")
    answer = Answer(arch=arch, regime=None if top is None else str(top["regime"]), train_size=res.full_size,
                    val_mean=math.nan if top is None else float(top["best_val_acc_mean"]),
                    headlines=headlines, comparisons=comparisons, claims=list(claims), scope=scope,
                    plain=plain, broken=broken_shown)
    answer.notes += list(dict.fromkeys(c.effect.note for c in comparisons if c.effect.note))
    if res.caveat:
        answer.notes.append(res.caveat)
    return answer

