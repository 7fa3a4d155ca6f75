"""Table II (Markdown, CSV, LaTeX) and the report's smaller tables, from analysis.aggregate."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import pandas as pd

from analysis.bands import BandRule, format_epochs
from analysis.load import REGIME_LABELS, Results, regime_order


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
    """Trainable parameters in millions, three significant digits (0.00256M for a small head)."""
    if n is None or not math.isfinite(n):
        return "n/a"
    return f"{n / 1e6:.3g}M"


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
    header: list[str]
    rows: list[list[str]]
    long: pd.DataFrame
    legend: str

    def markdown(self) -> str:
        return markdown_table(self.header, self.rows) + "\n\n" + self.legend + "\n"

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


def table2(res: Results, regimes: pd.DataFrame, best: pd.DataFrame) -> Table2:
    """One row per architecture: the band and best-val mean +/- CI per regime, then the OOD
    accuracy of the best transfer and the best scratch model (+ mean +/- CI across seeds)."""
    ood = res.ood_label
    present = regime_order(regimes["regime"].unique().tolist())
    header = ["Architecture"] + [REGIME_LABELS.get(r, r) for r in present]
    has_ood = bool(res.ood_kinds)
    if has_ood:
        header += [f"{ood}: best transfer", f"{ood}: best scratch"]
    ns = set(regimes["best_val_acc_n"].tolist())
    uniform_n = len(ns) == 1
    rows = []
    for arch in regimes["arch"].unique():
        row = [arch]
        for regime in present:
            r = regimes[(regimes["arch"] == arch) & (regimes["regime"] == regime)]
            if r.empty:
                row.append("—")
                continue
            r = r.iloc[0]
            row.append(f"{r['band']} · " + fmt_ci(r["best_val_acc_mean"], r["best_val_acc_half"],
                                                  int(r["best_val_acc_n"]), show_n=not uniform_n))
        if has_ood:
            b = best[best["arch"] == arch]
            b = b.iloc[0] if not b.empty else pd.Series(dtype=object)
            for tag in ("transfer", "scratch"):
                if pd.isna(b.get(f"{tag}_trial")):
                    row.append("—")
                    continue
                who = (f"{b[f'{tag}_regime']}, s{int(b[f'{tag}_seed'])}" if tag == "transfer"
                       else f"s{int(b[f'{tag}_seed'])}")
                row.append(f"{fmt_pct(b[f'{tag}_ood'])} ({who}) · "
                           + fmt_ci(b[f"{tag}_ood_mean"], b[f"{tag}_ood_half"], int(b[f"{tag}_ood_n"]),
                                    show_n=not uniform_n))
        rows.append(row)
    plateau = sorted({format_epochs(int(a), int(b)) for a, b in
                      zip(regimes["plateau_first"].dropna(), regimes["plateau_last"].dropna(),
                          strict=True)})
    n_text = f"n={ns.pop()} seeds" if uniform_n else "n seeds per cell"
    rule = BandRule.parse(regimes["band_rule"].iloc[0] if "band_rule" in regimes and len(regimes) else None)
    legend = (f"Train size: {res.full_size}. Regime cells: {rule.describe()} (epochs "
              f"{', '.join(plateau) or 'n/a'}) · best-val accuracy mean ± 95% CI (t-interval, {n_text}), "
              "percent.")
    if has_ood:
        legend += (f" {ood} cells: OOD accuracy of the best model, chosen on validation accuracy "
                   "(regime, seed) · mean ± 95% CI across seeds of each seed's best transfer "
                   "regime (resp. its scratch model).")
    long = _long(regimes, best)
    return Table2(header, rows, long, legend)


def _long(regimes: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """The CSV: one row per arch x regime with every number, arch-level OOD columns repeated."""
    keep = ["arch", "regime", "train_size", "n", "trainable_params", "total_params", "band",
            "band_lo", "band_hi", "plateau_first", "plateau_last"]
    for m in ("best_val_acc", "test_acc", "ood_acc"):
        keep += [f"{m}_mean", f"{m}_half", f"{m}_n"]
    out = regimes[[c for c in keep if c in regimes]].copy()
    for m in ("best_val_acc", "test_acc", "ood_acc"):
        if f"{m}_mean" in out:
            out[f"{m}_ci_lo"] = out[f"{m}_mean"] - out[f"{m}_half"]
            out[f"{m}_ci_hi"] = out[f"{m}_mean"] + out[f"{m}_half"]
    arch_cols = [c for c in best.columns if c != "arch" and not c.endswith("model_path")]
    return out.merge(best[["arch", *arch_cols]], on="arch", how="left")


def paired_tables(paired: pd.DataFrame, seed_diffs: pd.DataFrame, ood: str) -> tuple[Tab, Tab]:
    """Transfer vs scratch per architecture: McNemar + bootstrap, and the seed-paired view."""
    rows = []
    for _, p in paired.iterrows():
        split = "test" if p["split"] == "test" else ood
        rows.append([p["arch"], split, f"{p['transfer_regime']}", str(p["n"]), fmt_pct(p["acc_transfer"]),
                     fmt_pct(p["acc_scratch"]),
                     f"{100 * p['diff']:+.1f} [{100 * p['boot_lo']:+.1f}, {100 * p['boot_hi']:+.1f}]",
                     f"{p['b']} / {p['c']}", f"{p['p_value']:.3g}"])
    images = Tab(["Architecture", "Images", "Transfer regime", "n", "Transfer", "Scratch",
                  "Diff, pp [bootstrap 95%]", "b / c", "McNemar p"], rows,
                 "Best transfer vs best scratch model (each chosen on validation accuracy), on the "
                 "same images. b: images only the transfer model gets right; c: only the scratch "
                 "model. p: exact two-sided McNemar test; the interval resamples images (2000 draws).")
    srows = []
    for _, s in seed_diffs.iterrows():
        metric = "test" if s["metric"] == "test_acc" else ood
        if not math.isfinite(s["diff_mean"]):
            continue
        ci = (f"{100 * s['diff_mean']:+.1f} ± {100 * s['diff_half']:.1f}" if s["n"] >= 2 and
              math.isfinite(s["diff_half"]) else f"{100 * s['diff_mean']:+.1f} (n=1)")
        srows.append([s["arch"], metric, ci, str(s["n"])])
    seeds = Tab(["Architecture", "Accuracy", "Transfer − scratch, pp (95% CI)", "Seeds"], srows,
                "Seed-paired: per seed, the transfer regime with the better validation accuracy minus "
                "the scratch model of the same seed; t-interval across seeds.")
    return images, seeds


def regimes_table(regimes: pd.DataFrame, ood: str) -> Tab:
    """Detail: one row per arch x regime with params and mean +/- CI of every metric."""
    rows = []
    for _, r in regimes.iterrows():
        rows.append([r["arch"], REGIME_LABELS.get(r["regime"], r["regime"]),
                     fmt_params(r["trainable_params"]), str(r["n"]), r["band"],
                     fmt_ci(r["best_val_acc_mean"], r["best_val_acc_half"], int(r["best_val_acc_n"])),
                     fmt_ci(r["test_acc_mean"], r["test_acc_half"], int(r["test_acc_n"])),
                     fmt_ci(r["ood_acc_mean"], r["ood_acc_half"], int(r["ood_acc_n"]))])
    return Tab(["Architecture", "Regime", "Trainable params", "Seeds", "Val band", "Best val", "Test",
                ood], rows, "Accuracies in percent, mean ± 95% CI (t-interval) across seeds.")


def failed_table(failed: pd.DataFrame) -> Tab:
    rows = []
    for _, f in failed.sort_values(["arch", "regime", "seed"]).iterrows():
        error = str(f.get("error") or "not recorded").strip().splitlines()
        rows.append([f["arch"], f["regime"], str(f["seed"]), f["train_size"], f["trial_id"],
                     error[-1][:200] if error else ""])
    return Tab(["Architecture", "Regime", "Seed", "Train size", "Trial", "Error"], rows,
               "Failed trials are excluded from every statistic." if rows else "")
