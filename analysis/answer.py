"""The answer box: what a researcher reads first, on the console and at the top of report.html.

    Best on validation    the architecture x regime with the highest mean best-val accuracy at
                          the full train size, and its test and OOD accuracy (mean across
                          seeds, 95% t-interval, clipped to [0, 100]).
    Transfer - scratch    per architecture and train size: the best transfer model minus the
                          best scratch model (each chosen on validation), on the same test and
                          OOD images: difference, paired-bootstrap 95% interval, exact McNemar p
                          (analysis.aggregate.paired_tests, run on each train size: `paired_by_size`).
    Claims                each claim's verdict in one line (analysis.claims).

No statistic is computed here: the numbers come from analysis.aggregate, per train size through
`at_size`, a view of the results restricted to one train size.
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analysis import aggregate
from analysis.load import Results, arch_order, is_full_size
from trainables.regimes import STUDY_REGIMES, regime_label, regime_order


def clip(x: float, lo: float = 0.0, hi: float = 1.0) -> float:
    return x if not math.isfinite(x) else min(max(x, lo), hi)


def pct(x: float, signed: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


@dataclass(frozen=True)
class Headline:
    """The chosen architecture x regime's accuracy on one split."""

    split: str
    mean: float
    lo: float
    hi: float
    n: int

    @property
    def interval(self) -> str:
        if self.n < 2 or not math.isfinite(self.lo):
            return "no interval (1 seed)"
        return f"[{pct(self.lo)}, {pct(self.hi)}]"

    @property
    def how(self) -> str:
        if self.n < 2 or not math.isfinite(self.lo):
            return "one seed: run several (--seeds 3) for an interval"
        return f"95% t-interval across {self.n} seeds, clipped to [0, 100]"


@dataclass(frozen=True)
class Effect:
    """Best transfer minus best scratch model of one architecture at one train size and split."""

    arch: str
    train_size: str
    per_class: float
    split: str
    transfer_regime: str
    diff: float
    lo: float
    hi: float
    p: float
    n_images: int

    @property
    def size_label(self) -> str:
        per = f"{self.per_class:.0f}" if math.isfinite(self.per_class) else "?"
        return f"all ({per}/class)" if is_full_size(self.train_size) else f"{per}/class"

    @property
    def short(self) -> str:
        return f"{pct(self.diff, True)} [{pct(self.lo, True)}, {pct(self.hi, True)}]"

    @property
    def text(self) -> str:
        return f"{pct(self.diff, True)} pp [{pct(self.lo, True)}, {pct(self.hi, True)}]"

    @property
    def p_text(self) -> str:
        if not math.isfinite(self.p):
            return "n/a"
        return "p < 0.001" if self.p < 0.001 else f"p = {self.p:.3f}"


@dataclass
class Answer:
    arch: str | None
    regime: str | None
    train_size: str
    val_mean: float
    headlines: list[Headline]
    effects: list[Effect]
    claims: list[Any]
    scope: str
    """What the results cover: architectures, seeds, train sizes."""
    notes: list[str] = field(default_factory=list)

    @property
    def best_label(self) -> str:
        if self.arch is None:
            return "n/a"
        return f"{self.arch} · {regime_label(self.regime)}"

    EFFECT_HOW = ("best transfer model minus best scratch model (each chosen on validation), on the "
                  "same images; interval: paired bootstrap 95% over the images (2000 resamples), "
                  "clipped to [-100, 100]; p: exact two-sided McNemar test")

    def effect_rows(self) -> list[tuple[str, str, dict[str, Effect]]]:
        """(architecture, train size label, {split: effect}) in the order of `effects`."""
        rows: dict[tuple[str, str], dict[str, Effect]] = {}
        for e in self.effects:
            rows.setdefault((e.arch, e.size_label), {})[e.split] = e
        return [(a, s, by_split) for (a, s), by_split in rows.items()]

    @property
    def splits(self) -> list[str]:
        return list(dict.fromkeys(e.split for e in self.effects))

    def text(self) -> str:
        """The answer box as plain text (the console prints it first)."""
        lines = [f"ANSWER ({self.scope})"]
        if self.arch is not None:
            lines.append(f"  Best on validation: {self.best_label} (train size {self.train_size}, "
                         f"mean best-val accuracy {pct(self.val_mean)}%)")
            width = max(len(h.split) for h in self.headlines)
            for h in self.headlines:
                lines.append(f"    {h.split:<{width}}  {pct(h.mean):>5}%  {h.interval:<14}  {h.how}")
        if self.effects:
            lines.append("  Transfer − scratch, per architecture (percentage points [95% interval], "
                         "McNemar p):")
            rows = self.effect_rows()
            width_a = max(len(a) for a, _, _ in rows)
            width_s = max(len(s) for _, s, _ in rows)
            cells = {(a, s, split): f"{e.short}  {e.p_text}"
                     for a, s, by in rows for split, e in by.items()}
            width_c = {split: max([len(split)] + [len(v) for (_, _, sp), v in cells.items() if sp == split])
                       for split in self.splits}
            lines.append(f"    {'':<{width_a}}  {'':<{width_s}}  "
                         + "   ".join(f"{sp:<{width_c[sp]}}" for sp in self.splits).rstrip())
            for arch, size, _ in rows:
                lines.append(f"    {arch:<{width_a}}  {size:<{width_s}}  " + "   ".join(
                    f"{cells.get((arch, size, sp), '—'):<{width_c[sp]}}" for sp in self.splits).rstrip())
            lines += textwrap.wrap(f"({self.EFFECT_HOW})", 100, initial_indent="    ",
                                   subsequent_indent="     ")
        else:
            lines.append("  Transfer − scratch: not testable (needs transfer and scratch trials with "
                         "predictions)")
        if self.claims:
            lines.append("  Claims:")
            width = max(len(c.verdict) for c in self.claims)
            lines += [f"    {c.verdict:<{width}}  {c.statement}" for c in self.claims]
        lines += [f"  Note: {n}" for n in self.notes]
        return "\n".join(lines)


def at_size(res: Results, train_size: str) -> Results:
    """The same results restricted to one train size (its full size is then that size)."""
    trials = res.trials[res.trials["train_size"] == train_size].reset_index(drop=True)
    epochs = res.epochs[res.epochs["train_size"] == train_size]
    return dataclasses.replace(res, trials=trials, epochs=epochs, notes=[])


def sizes_smallest_first(res: Results) -> list[tuple[str, float]]:
    """(train size, mean training images per class), smallest first, "all" last."""
    per = res.trials.groupby("train_size")["train_images_per_class"].mean()
    sizes = sorted(per.index, key=lambda s: (is_full_size(s), per.get(s, math.inf)))
    return [(s, float(per.get(s, math.nan))) for s in sizes]


@dataclass
class _WithPredictions(Results):
    """A results view that answers `predictions` from rows already read (one read of the
    predictions table for every train size, instead of one per size)."""

    cached: pd.DataFrame | None = None

    def predictions(self, trial_ids: list[str]) -> pd.DataFrame:
        assert self.cached is not None
        return self.cached[self.cached["trial_id"].isin(trial_ids)]


def paired_by_size(res: Results) -> pd.DataFrame:
    """analysis.aggregate.paired_tests at every train size, one frame with `train_size` and
    `per_class` columns (smallest size first). The predictions of every compared trial are read
    in one pass over the predictions table."""
    views = {size: (per_class, at_size(res, size)) for size, per_class in sizes_smallest_first(res)}
    bests = {size: aggregate.best_models(view) for size, (_, view) in views.items()}
    ids = [tid for best in bests.values() for col in ("transfer_trial", "scratch_trial")
           if col in best for tid in best[col].dropna()]
    cached = res.predictions(ids)
    frames = []
    for size, (per_class, view) in views.items():
        fields = {f.name: getattr(view, f.name) for f in dataclasses.fields(Results)}
        paired = aggregate.paired_tests(_WithPredictions(**fields, cached=cached), bests[size])
        if not paired.empty:
            frames.append(paired.assign(train_size=size, per_class=per_class))
    if not frames:
        return pd.DataFrame(columns=["train_size", "per_class"])
    return pd.concat(frames, ignore_index=True)


def at_full_size(paired: pd.DataFrame, res: Results) -> pd.DataFrame:
    """The rows of paired_by_size at the full train size, as aggregate.paired_tests(res) gives
    them (what Table II's claims use)."""
    if paired.empty:
        return aggregate.paired_tests(res, pd.DataFrame())
    return (paired[paired["train_size"] == res.full_size].drop(columns=["train_size", "per_class"])
            .reset_index(drop=True))


def effects(paired: pd.DataFrame, ood_label: str) -> list[Effect]:
    """Transfer - scratch per architecture, train size (smallest first) and split (test, OOD)."""
    out = []
    label = {"test": "test", "ood": ood_label}
    if paired.empty:
        return out
    for size in dict.fromkeys(paired["train_size"]):
        at = paired[paired["train_size"] == size]
        for arch in arch_order(at["arch"].unique().tolist()):
            for split in ("test", "ood"):
                rows = at[(at["arch"] == arch) & (at["split"] == split)]
                if rows.empty:
                    continue
                p = rows.iloc[0]
                out.append(Effect(arch, size, float(p["per_class"]), label[split],
                                  str(p["transfer_regime"]), float(p["diff"]),
                                  clip(float(p["boot_lo"]), -1, 1), clip(float(p["boot_hi"]), -1, 1),
                                  float(p["p_value"]), int(p["n"])))
    return out


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


def build(res: Results, regimes: pd.DataFrame, claims: list[Any], paired: pd.DataFrame) -> Answer:
    """`paired`: paired_by_size(res)."""
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
        metrics = [("test", "test_acc")]
        if res.ood_kinds:
            metrics.append((res.ood_label, "ood_acc"))
        for split, metric in metrics:
            mean, half = float(top[f"{metric}_mean"]), float(top[f"{metric}_half"])
            n = int(top[f"{metric}_n"])
            lo = clip(mean - half) if math.isfinite(half) else math.nan
            hi = clip(mean + half) if math.isfinite(half) else math.nan
            headlines.append(Headline(split, mean, lo, hi, n))
    answer = Answer(arch=None if top is None else str(top["arch"]),
                    regime=None if top is None else str(top["regime"]), train_size=res.full_size,
                    val_mean=math.nan if top is None else float(top["best_val_acc_mean"]),
                    headlines=headlines, effects=effects(paired, res.ood_label), claims=list(claims),
                    scope=scope)
    if res.caveat:
        answer.notes.append(res.caveat)
    return answer
