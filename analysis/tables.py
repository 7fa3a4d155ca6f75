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


def fmt_ci(mean: float, half: float, n: int, show_n: bool = False) -> str:
    """"70.7 ± 2.1" (percent), "70.7 (n=1)" when one seed gives no interval."""
    if mean is None or not math.isfinite(mean):
        return "n/a"
    if n < 2 or not math.isfinite(half):
        return f"{100 * mean:.1f} (n={n})"
    text = f"{100 * mean:.1f} ± {100 * half:.1f}"
    return f"{text} (n={n})" if show_n else text


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


def fmt_interval(mean: float, half: float, n: int, lo_clip: float = 0.0, hi_clip: float = 1.0) -> str:
    """"94.9 [88.7, 100.0]" (percent): mean and its 95% interval clipped to [0, 100];
    "94.9 (1 seed)" when one seed gives no interval."""
    if mean is None or not math.isfinite(mean):
        return "n/a"
    if n < 2 or half is None or not math.isfinite(half):
        return f"{100 * mean:.1f} ({n} seed{'s' if n != 1 else ''})"
    lo, hi = max(mean - half, lo_clip), min(mean + half, hi_clip)
    return f"{100 * mean:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


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


def table2(res: Results, regimes: pd.DataFrame, best: pd.DataFrame) -> Table2:
    """One row per architecture, the study's columns: the validation band of each regime, then
    the OOD accuracy of the best transfer and of the best scratch model (chosen on validation)."""
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
            b = best[best["arch"] == arch]
            b = b.iloc[0] if not b.empty else pd.Series(dtype=object)
            for tag in ("transfer", SCRATCH):
                row.append("—" if pd.isna(b.get(f"{tag}_trial")) else whole_pct(b[f"{tag}_ood"]))
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
        legend += (f" {ood} columns: accuracy of the best transfer model (fine-tune or feature "
                   "extraction) and of the best scratch model, each chosen on validation accuracy.")
    legend += " Means and 95% intervals: the table below."
    long = _long(regimes, best)
    return Table2(header, rows, long, legend, intervals_table(regimes, best, ood, has_ood))


def intervals_table(regimes: pd.DataFrame, best: pd.DataFrame, ood: str, has_ood: bool) -> Tab:
    """Table II's numbers with their spread: per architecture x regime, trainable parameters and
    mean [95% interval] across seeds of best-val, test and OOD accuracy."""
    header = ["Architecture", "Regime", "Trainable params", "Seeds", "Best val", "Test"]
    if has_ood:
        header.append(ood)
    rows = []
    for _, r in regimes.iterrows():
        row = [r["arch"], regime_label(r["regime"]), fmt_params(r["trainable_params"]),
               str(r["n"]), fmt_interval(r["best_val_acc_mean"], r["best_val_acc_half"],
                                         int(r["best_val_acc_n"])),
               fmt_interval(r["test_acc_mean"], r["test_acc_half"], int(r["test_acc_n"]))]
        if has_ood:
            row.append(fmt_interval(r["ood_acc_mean"], r["ood_acc_half"], int(r["ood_acc_n"])))
        rows.append(row)
    note = ("Accuracy in percent: mean across seeds [two-sided 95% t-interval, clipped to [0, 100]]. "
            "Best val: the accuracy of the epoch each trial kept (its best), not a band.")
    return Tab(header, rows, note)


def _long(regimes: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """The CSV: one row per arch x regime with every number, arch-level OOD columns repeated.
    `*_half` is the unclipped t half-width; `*_ci_lo`/`*_ci_hi` are clipped to [0, 1]."""
    keep = ["arch", "regime", "train_size", "n", "trainable_params", "total_params", "band",
            "band_lo", "band_hi", "plateau_first", "plateau_last"]
    for m in ("best_val_acc", "test_acc", "ood_acc"):
        keep += [f"{m}_mean", f"{m}_half", f"{m}_n"]
    out = regimes[[c for c in keep if c in regimes]].copy()
    for m in ("best_val_acc", "test_acc", "ood_acc"):
        if f"{m}_mean" in out:
            out[f"{m}_ci_lo"] = (out[f"{m}_mean"] - out[f"{m}_half"]).clip(lower=0.0)
            out[f"{m}_ci_hi"] = (out[f"{m}_mean"] + out[f"{m}_half"]).clip(upper=1.0)
    arch_cols = [c for c in best.columns if c != "arch" and not c.endswith("model_path")]
    return out.merge(best[["arch", *arch_cols]], on="arch", how="left")


def _signed_interval(diff: float, lo: float, hi: float) -> str:
    return (f"{100 * diff:+.1f} [{100 * max(lo, -1.0):+.1f}, {100 * min(hi, 1.0):+.1f}]"
            if math.isfinite(lo) else f"{100 * diff:+.1f}")


def paired_tables(paired: pd.DataFrame, seed_diffs: pd.DataFrame, ood: str) -> tuple[Tab, Tab]:
    """Transfer vs scratch per architecture (and train size, when `paired` has that column, as
    analysis.answer.paired_by_size gives it): McNemar + bootstrap; and the seed-paired view."""
    rows = []
    by_size = "train_size" in paired.columns
    for _, p in paired.iterrows():
        split = "test" if p["split"] == "test" else ood
        row = [p["arch"]] + ([str(p["train_size"])] if by_size else [])
        rows.append(row + [split, f"{p['transfer_regime']}", str(p["n"]), fmt_pct(p["acc_transfer"]),
                           fmt_pct(p["acc_scratch"]), _signed_interval(p["diff"], p["boot_lo"], p["boot_hi"]),
                           f"{p['b']} / {p['c']}", f"{p['p_value']:.3g}"])
    header = (["Architecture"] + (["Train size"] if by_size else [])
              + ["Images", "Transfer regime", "n", "Transfer", "Scratch", "Diff, pp [bootstrap 95%]",
                 "b / c", "McNemar p"])
    images = Tab(header, rows,
                 "Best transfer vs best scratch model (each chosen on validation accuracy, at each "
                 "train size), on the same images. b: images only the transfer model gets right; c: "
                 "only the scratch model. p: exact two-sided McNemar test; the interval resamples "
                 "images (2000 draws).")
    srows = []
    for _, s in seed_diffs.iterrows():
        metric = "test" if s["metric"] == "test_acc" else ood
        if not math.isfinite(s["diff_mean"]):
            continue
        mean, half = s["diff_mean"], s["diff_half"]
        ci = (_signed_interval(mean, mean - half, mean + half) if s["n"] >= 2 and math.isfinite(half)
              else f"{100 * mean:+.1f} (1 seed)")
        srows.append([s["arch"], metric, ci, str(s["n"])])
    seeds = Tab(["Architecture", "Accuracy", "Transfer − scratch, pp [95% t-interval]", "Seeds"], srows,
                "Seed-paired, full train size: per seed, the transfer regime with the better validation "
                "accuracy minus the scratch model of the same seed; t-interval across seeds, clipped "
                "to [-100, 100].")
    return images, seeds


def failed_table(failed: pd.DataFrame) -> Tab:
    rows = []
    for _, f in failed.sort_values(["arch", "regime", "seed"]).iterrows():
        error = str(f.get("error") or "not recorded").strip().splitlines()
        rows.append([f["arch"], f["regime"], str(f["seed"]), f["train_size"], f["trial_id"],
                     error[-1][:200] if error else ""])
    return Tab(["Architecture", "Regime", "Seed", "Train size", "Trial", "Error"], rows,
               "Failed trials are excluded from every statistic." if rows else "")
