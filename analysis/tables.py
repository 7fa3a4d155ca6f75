"""Table II (Markdown, CSV, LaTeX) and the report's smaller tables, from analysis.aggregate."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import pandas as pd

from analysis.bands import BandRule, format_epochs, pct
from analysis.load import Results
from trainables.regimes import SCRATCH, regime_label, regime_order


def fmt_pct(x: float | None, digits: int = 1) -> str:
    if x is None or not isinstance(x, (int, float)) or not math.isfinite(x):
        return "n/a"
    return f"{100 * x:.{digits}f}%"


def fmt_params(n: float) -> str:
    """Parameter counts people read at a glance: "950", "2.6k", "2.2M", "26M", "139M"."""
    if n is None or not isinstance(n, (int, float)) or not math.isfinite(n):
        return "n/a"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            v = n / scale
            text = f"{v:.1f}" if v < 10 else f"{v:.0f}"
            return text.removesuffix(".0") + suffix
    return f"{n:.0f}"


@dataclass
class Tab:
    """A small table with a note, rendered as Markdown or HTML."""

    header: list[str]
    rows: list[list[str]]
    note: str = ""

    def markdown(self) -> str:
        text = markdown_table(self.header, self.rows) if self.rows else "None."
        return text + (f"\n\n{self.note}" if self.note else "") + "\n"

    def html(self) -> str:
        return html_table(self.header, self.rows, self.note)


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]], note: str = "") -> str:
    if not rows:
        return "<p>None.</p>\n"
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>"
                     for row in rows)
    out = f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>\n"
    return out + (f'<p class="note">{escape(note)}</p>\n' if note else "")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(x: object) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}", "±": r"$\pm$",
          "·": r"$\cdot$", "—": "---", "−": "$-$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


@dataclass
class Table2:
    """Table II as the study printed it (val bands, OOD with and without transfer), plus
    `detail`: the means and intervals behind it, one row per architecture x regime."""

    header: list[str]
    rows: list[list[str]]
    long: pd.DataFrame
    legend: str
    detail: Tab

    @property
    def note(self) -> str:
        return self.legend

    def markdown(self) -> str:
        return (markdown_table(self.header, self.rows) + "\n\n" + self.legend + "\n\n"
                + "Means and 95% intervals\n\n" + self.detail.markdown())

    def csv(self) -> str:
        return self.long.to_csv(index=False)

    def html(self) -> str:
        return html_table(self.header, self.rows, self.legend)

    def latex(self) -> str:
        cols = "l" + "c" * (len(self.header) - 1)
        lines = [r"% Table II, written by python -m analysis.report (needs \usepackage{booktabs})",
                 r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{cols}}}",
                 r"\toprule", " & ".join(latex_escape(h) for h in self.header) + r" \\", r"\midrule"]
        lines += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in self.rows]
        lines += [r"\bottomrule", r"\end{tabular}",
                  rf"\caption{{{latex_escape(self.legend)}}}", r"\end{table}"]
        return "\n".join(lines) + "\n"


def whole_pct(x: float | None) -> str:
    """Whole percent as the study prints OOD accuracy ("83%")."""
    if x is None or not isinstance(x, (int, float)) or not math.isfinite(x):
        return "—"
    return f"{pct(x)}%"


def table2(res: Results, regimes: pd.DataFrame, choice: pd.DataFrame,
           flags: dict[tuple[str, str], str] | None = None) -> Table2:
    """One row per architecture, the study's columns: the validation band of each regime, then
    the OOD accuracy with transfer (the transfer regime chosen on validation, mean over its
    seeds) and without (scratch, mean over its seeds): analysis.aggregate.regime_choice.
    `regimes` as analysis.aggregate.with_accuracies gives it; `flags`: per (arch, regime), the
    one-class models (analysis.one_class.summary)."""
    ood = res.ood_label
    present = regime_order(regimes["regime"].unique().tolist())
    header = ["Architecture"] + [f"{regime_label(r)} (val)" for r in present]
    has_ood = bool(res.ood_kinds)
    if has_ood:
        header += [f"{ood} with transfer", f"{ood} without transfer"]
    rows = []
    for arch in regimes["arch"].unique():
        row = [arch]
        for regime in present:
            r = regimes[(regimes["arch"] == arch) & (regimes["regime"] == regime)]
            row.append("—" if r.empty else str(r.iloc[0]["band"]))
        if has_ood:
            b = choice[choice["arch"] == arch]
            b = b.iloc[0] if not b.empty else pd.Series(dtype=object)
            for tag in ("transfer", SCRATCH):
                row.append("—" if pd.isna(b.get(f"{tag}_regime")) else whole_pct(b[f"{tag}_ood"]))
        rows.append(row)
    plateau = sorted({format_epochs(int(a), int(b)) for a, b in
                      zip(regimes["plateau_first"].dropna(), regimes["plateau_last"].dropna(),
                          strict=True)})
    ns = sorted(set(regimes["n"].astype(int).tolist()))
    seeds = f"{ns[0]} seed{'s' if ns[0] != 1 else ''}" if len(ns) == 1 else f"{ns[0]}-{ns[-1]} seeds"
    rule = BandRule.parse(regimes["band_rule"].iloc[0] if "band_rule" in regimes and len(regimes) else None)
    legend = (f"Train size {res.full_size}. Regime columns: {rule.describe()} (epochs "
              f"{', '.join(plateau) or 'n/a'}; {seeds}), whole percent.")
    if has_ood:
        legend += (f" {ood} columns: mean over seeds of the transfer regime with the higher mean "
                   "validation accuracy (fine-tune or feature extraction) and of scratch: the same "
                   "numbers as the answer box.")
    legend += " Means and 95% intervals: the table below."
    long = _long(regimes, choice)
    return Table2(header, rows, long, legend, intervals_table(regimes, ood, has_ood, flags or {}))


def _acc_cell(r: pd.Series, split: str) -> str:
    from analysis.regime_effects import accuracy_text

    metric = f"{split}_acc"
    lo = r.get(f"{metric}_lo", math.nan)
    return accuracy_text(r[f"{metric}_mean"], lo if lo is not None else math.nan,
                         r.get(f"{metric}_hi", math.nan), int(r[f"{metric}_n"]))


def _val_cell(r: pd.Series) -> str:
    """'94.2 (93.5-95.7)': mean, lowest and highest seed; '93.5 (every seed)'; '93.5 (1 seed)'."""
    mean, lo, hi = (100 * r[f"best_val_acc_{k}"] for k in ("mean", "min", "max"))
    if int(r["n"]) < 2:
        return f"{mean:.1f} (1 seed)"
    return f"{mean:.1f} (every seed)" if lo == hi else f"{mean:.1f} ({lo:.1f}-{hi:.1f})"


def intervals_table(regimes: pd.DataFrame, ood: str, has_ood: bool,
                    flags: dict[tuple[str, str], str]) -> Tab:
    """Table II's numbers with their spread: per architecture x regime, trainable parameters,
    best-val accuracy (mean, lowest-highest seed) and test and OOD accuracy with the 95%
    interval over seeds and images, and any model that answers one class."""
    header = ["Architecture", "Regime", "Trainable params", "Seeds", "Best val (lowest-highest)", "Test"]
    if has_ood:
        header.append(ood)
    header.append("Broken models")
    rows = []
    for _, r in regimes.iterrows():
        val = _val_cell(r)
        row = [r["arch"], regime_label(r["regime"]), fmt_params(r["trainable_params"]),
               str(r["n"]), val, _acc_cell(r, "test")]
        if has_ood:
            row.append(_acc_cell(r, "ood"))
        row.append(flags.get((r["arch"], r["regime"]), "") or "—")
        rows.append(row)
    note = ("Accuracy in percent: mean over seeds [95% interval over seeds and images; "
            "docs/analysis.md, Calibration]. Best val: the accuracy of the epoch each trial kept, "
            "chosen on those same validation images (so optimistic, and shown with the lowest and "
            "highest seed instead of an interval). Broken models: trials that answer one class for "
            "at least 95% of a split's images.")
    return Tab(header, rows, note)


def _long(regimes: pd.DataFrame, choice: pd.DataFrame) -> pd.DataFrame:
    """The CSV: one row per arch x regime with every number, arch-level OOD columns repeated.
    `*_half` is the t half-width across seeds; `test_acc_lo/_hi`, `ood_acc_lo/_hi` the interval
    over seeds and images."""
    keep = ["arch", "regime", "train_size", "n", "trainable_params", "total_params", "band",
            "band_lo", "band_hi", "plateau_first", "plateau_last", "best_val_acc_min", "best_val_acc_max"]
    for m in ("best_val_acc", "test_acc", "ood_acc"):
        keep += [f"{m}_mean", f"{m}_half", f"{m}_n"]
    for m in ("test_acc", "ood_acc"):
        keep += [f"{m}_lo", f"{m}_hi", f"{m}_images"]
    out = regimes[[c for c in keep if c in regimes]].copy()
    return out.merge(choice, on="arch", how="left")


def comparisons_table(comparisons: list) -> Tab:
    """Transfer - scratch per architecture, train size and split (analysis.regime_effects): the
    numbers of the answer box, with each side's accuracy."""
    from analysis.regime_effects import accuracy_text

    rows = []
    for c in comparisons:
        e = c.effect
        regime = regime_label(c.transfer_regime)
        rows.append([c.arch, c.size_label, c.split_label, regime, f"{e.n_seeds} × {e.n_images}",
                     accuracy_text(c.transfer.estimate, c.transfer.lo, c.transfer.hi, c.transfer.n_seeds),
                     accuracy_text(c.scratch.estimate, c.scratch.lo, c.scratch.hi, c.scratch.n_seeds),
                     e.short(), fmt_p_plain(e.p_value), fmt_p_plain(c.p_holm)])
    header = ["Architecture", "Train size", "Images", "Transfer regime", "Seeds × images", "Transfer",
              "Scratch", "Difference, pp [95%]", "p", "Holm p"]
    note = ("Per architecture and train size, the transfer regime with the higher mean validation "
            "accuracy against scratch, every seed of each (seed s of one against seed s of the "
            "other), on the same images. Interval and p: one calculation over seeds and images "
            "(p < 0.05 exactly when the interval excludes 0); Holm p: adjusted across every row of "
            "this table. Conditional on the one train/val/test split.")
    return Tab(header, rows, note)


def fmt_p_plain(p: float) -> str:
    if p is None or not math.isfinite(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def failed_table(failed: pd.DataFrame) -> Tab:
    rows = []
    for _, f in failed.sort_values(["arch", "regime", "seed"]).iterrows():
        error = str(f.get("error") or "not recorded").strip().splitlines()
        rows.append([f["arch"], f["regime"], str(f["seed"]), f["train_size"], f["trial_id"],
                     error[-1][:200] if error else ""])
    return Tab(["Architecture", "Regime", "Seed", "Train size", "Trial", "Error"], rows,
               "Failed trials are excluded from every statistic." if rows else "")
