"""Per-epoch validation logs from outside a sweep (the study's own, or a user's runs), read into
the same `Results` the report uses, so Table II and Fig. 2 come from the same code.

    python -m analysis.external_logs LOGS.csv [--lines LINES.csv] [--compare PRINTED.csv]
                                     [--band-from-epoch half] [--out DIR]

LOGS.csv, one row per run and epoch (docs/analysis.md, "External logs"):

    arch, regime, epoch, val_acc     required; regime: finetune | feature_extract | scratch;
                                     epoch 1-based; val_acc a fraction in [0, 1]
    seed, train_size, lr, val_loss, trainable_params   optional (seed 0, size "all"; else empty)
    anything else (e.g. source_file) ignored

LINES.csv (optional), per architecture: arch and any of LINE_COLUMNS (fractions): Fig. 2's lines
and Table II's OOD columns, given to its transfer-regime and scratch run (chosen on validation).
PRINTED.csv (optional): a printed Table II (arch, val_band_<regime>: "98-100%"; compared by
analysis.band_comparison). The study's files: ../shared/data/paper_study/. A malformed file stops
with `error: ...` naming the file, the line and the column (analysis.csv_input).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from functools import cached_property
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import aggregate
from analysis.band_comparison import compare_bands, comparison_markdown, comparison_summary
from analysis.bands import BAND_RULE_HELP, BandRule
from analysis.csv_input import line_of, number, read_csv
from analysis.load import TRIAL_COLUMNS, Results, arch_order, is_full_size, read_prediction_table
from trainables.config import parse_train_size
from trainables.errors import UserError
from trainables.regimes import REGIMES, SCRATCH, TRANSFER_REGIMES

REQUIRED = ("arch", "regime", "epoch", "val_acc")
OPTIONAL = ("seed", "train_size", "lr", "val_loss", "trainable_params")
LINE_COLUMNS = ("test_acc_best_transfer", "ood_acc_best_transfer", "ood_acc_best_scratch")
LAYOUT = ("arch, regime, epoch, val_acc [, seed, train_size, lr, val_loss, trainable_params] "
          "(docs/analysis.md, 'External logs')")
PRESET = "external"


@dataclass
class ExternalResults(Results):
    """Results built from external logs: no predictions, no manifest, no config_json."""

    source: str = ""

    def predictions(self, trial_ids: list[str]) -> pd.DataFrame:
        return self.prediction_table(trial_ids).to_pandas()

    def prediction_table(self, trial_ids: list[str], columns: list[str] | None = None,
                         dictionary: bool = False):
        return read_prediction_table(self.root, [], columns, dictionary)  # always empty

    @cached_property
    def select_on(self) -> list[str]:
        return []


# ------------------------------------------------------------------------------- reading
def read_logs(path: str | Path) -> pd.DataFrame:
    """LOGS.csv validated into a frame: arch, regime, seed, train_size, epoch, val_acc, lr,
    val_loss, trainable_params. Every problem is a UserError naming the file, line and column."""
    p = Path(path)
    df = read_csv(p, "external logs", LAYOUT)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise UserError(f"{p}: missing column(s) {', '.join(missing)}; the layout is {LAYOUT}")
    if df.empty:
        raise UserError(f"{p} has a header but no rows")
    for col in ("arch", "regime"):
        for i, v in enumerate(df[col].tolist()):
            if not str(v).strip():
                raise UserError(f"{p} line {line_of(i)}: column {col} is empty")
    out = pd.DataFrame({"arch": df["arch"].str.strip(), "regime": df["regime"].str.strip()})
    bad = ~out["regime"].isin(REGIMES)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(f"{p} line {line_of(i)}: column regime has {out['regime'].iloc[i]!r}; expected one "
                        f"of {', '.join(REGIMES)}")
    out["epoch"] = number(df, "epoch", p, required=True, integer=True, lo=1).astype(int)
    out["val_acc"] = number(df, "val_acc", p, required=True, lo=0, hi=1,
                             hint=" (a fraction: write 0.87, not 87)")
    out["seed"] = (number(df, "seed", p, required=False, integer=True) if "seed" in df
                   else np.zeros(len(df)))
    out["seed"] = np.nan_to_num(out["seed"], nan=0.0).astype(int)
    sizes = df["train_size"].str.strip().replace("", "all") if "train_size" in df else \
        pd.Series(["all"] * len(df))
    for i, s in enumerate(sizes.tolist()):
        try:
            parse_train_size(s)
        except UserError as exc:
            raise UserError(f"{p} line {line_of(i)}: column train_size: {exc}") from None
    out["train_size"] = sizes.to_numpy()
    out["lr"] = number(df, "lr", p, required=False, lo=0) if "lr" in df else np.nan
    out["val_loss"] = number(df, "val_loss", p, required=False, lo=0) if "val_loss" in df else np.nan
    out["trainable_params"] = (number(df, "trainable_params", p, required=False, integer=True, lo=0)
                               if "trainable_params" in df else np.nan)
    key = ["arch", "regime", "seed", "train_size", "epoch"]
    dup = out.duplicated(key, keep=False)
    if dup.any():
        rows = np.flatnonzero(dup.to_numpy())
        first = out.iloc[rows[0]]
        same = [int(r) for r in rows if (out.iloc[r][key] == first[key]).all()]
        raise UserError(f"{p} lines {line_of(same[0])} and {line_of(same[1])}: the same arch, regime, seed, "
                        f"train_size and epoch ({first['arch']}, {first['regime']}, {first['seed']}, "
                        f"{first['train_size']}, {first['epoch']}) twice")
    return out


def read_lines(path: str | Path) -> pd.DataFrame:
    """LINES.csv validated: arch plus the LINE_COLUMNS present (fractions, NaN when empty)."""
    p = Path(path)
    df = read_csv(p, "Fig. 2 lines file", f"arch, {', '.join(LINE_COLUMNS)}")
    if "arch" not in df.columns:
        raise UserError(f"{p}: missing column arch; the layout is arch, {', '.join(LINE_COLUMNS)}")
    present = [c for c in LINE_COLUMNS if c in df.columns]
    if not present:
        raise UserError(f"{p}: none of the columns {', '.join(LINE_COLUMNS)}")
    out = pd.DataFrame({"arch": df["arch"].str.strip()})
    for i, a in enumerate(out["arch"].tolist()):
        if not a:
            raise UserError(f"{p} line {line_of(i)}: column arch is empty")
    dup = out["arch"].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise UserError(f"{p} line {line_of(i)}: architecture {out['arch'].iloc[i]!r} appears twice")
    for col in LINE_COLUMNS:
        out[col] = (number(df, col, p, required=False, lo=0, hi=1, hint=" (a fraction)") if col in present
                    else np.nan)
    return out


# ------------------------------------------------------------------------------- Results
def _best_epoch(g: pd.DataFrame) -> pd.Series:
    """The kept epoch of one run: best val accuracy, then lower val loss, then earlier epoch."""
    order = g.sort_values(["val_acc", "val_loss", "epoch"], ascending=[False, True, True],
                          na_position="last", kind="stable")
    return order.iloc[0]


def load_external_logs(logs: str | Path, lines: str | Path | None = None,
                       ood_kind: str = "real") -> ExternalResults:
    """Read LOGS.csv (and LINES.csv) into Results: one trial per arch x regime x seed x train size."""
    epochs = read_logs(logs)
    line_df = read_lines(lines) if lines is not None else None
    keys = ["arch", "regime", "seed", "train_size"]
    epochs["trial_id"] = [f"external:{a}-{r}-{s}-{t}" for a, r, s, t in
                          epochs[keys].itertuples(index=False)]
    rows = []
    for tid, g in epochs.groupby("trial_id", sort=False):
        best = _best_epoch(g)
        params = g["trainable_params"].dropna()
        size = best["train_size"]
        per_class = parse_train_size(size)
        rows.append({"trial_id": tid, "arch": best["arch"], "regime": best["regime"],
                     "seed": int(best["seed"]), "train_size": size, "preset": PRESET, "status": "ok",
                     "error": None, "epochs": int(g["epoch"].max()), "best_epoch": int(best["epoch"]),
                     "best_val_acc": float(best["val_acc"]), "best_val_loss": float(best["val_loss"]),
                     "test_acc": math.nan, "ood_acc": math.nan, "classes_json": None,
                     "train_images": None,
                     "train_images_per_class": float(per_class) if isinstance(per_class, int) else math.nan,
                     "trainable_params": float(params.iloc[0]) if len(params) else math.nan,
                     "total_params": math.nan, "ood_kind": "none", "model_path": None,
                     "split_manifest_hash": None})
    trials = pd.DataFrame(rows, columns=TRIAL_COLUMNS)
    notes = [f"external logs {logs}: {len(trials)} runs ({trials['arch'].nunique()} architectures), "
             "no per-image predictions, so no paired tests or claims"]
    if line_df is not None:
        trials = _apply_lines(trials, line_df, Path(lines), Path(logs), ood_kind)
        notes.append(f"test and OOD lines from {lines}, given to each architecture's best transfer "
                     "(and best scratch) run, chosen on validation")
    ep = epochs[["trial_id", "arch", "regime", "train_size", "seed", "epoch", "val_acc", "lr"]]
    ep = ep.sort_values(["trial_id", "epoch"], kind="stable").reset_index(drop=True)
    return ExternalResults(root=str(logs), trials=trials, failed=trials.iloc[0:0], epochs=ep,
                           manifest_path=None, notes=notes, source=str(logs))


def _apply_lines(trials: pd.DataFrame, lines: pd.DataFrame, path: Path, logs: Path,
                 ood_kind: str) -> pd.DataFrame:
    trials = trials.copy()
    sizes = trials["train_size"].unique().tolist()
    full = [s for s in sizes if is_full_size(s)]
    full_size = sorted(full)[0] if full else max(sizes, key=lambda s: parse_train_size(s) or 0)
    at_full = trials[trials["train_size"] == full_size]
    known = set(trials["arch"])
    for i, row in lines.reset_index(drop=True).iterrows():
        arch = row["arch"]
        if arch not in known:
            raise UserError(f"{path} line {line_of(int(i))}: architecture {arch!r} has no runs in {logs} "
                            f"(it has {', '.join(arch_order(sorted(known)))})")
        sub = at_full[at_full["arch"] == arch]
        for regimes, cols in ((TRANSFER_REGIMES, {"test_acc": "test_acc_best_transfer",
                                                  "ood_acc": "ood_acc_best_transfer"}),
                              ((SCRATCH,), {"ood_acc": "ood_acc_best_scratch"})):
            regime = aggregate.best_regime(sub, regimes)  # the regime Table II and Fig. 2 read
            cand = aggregate.rank(sub[sub["regime"] == regime])
            if cand.empty:
                continue
            idx = cand.index[0]
            for target, col in cols.items():
                if math.isfinite(row[col]):
                    trials.loc[idx, target] = row[col]
    if trials["ood_acc"].notna().any():
        trials["ood_kind"] = ood_kind
    return trials


# ------------------------------------------------------------------------------- outputs
@dataclass
class ExternalTables:
    res: ExternalResults
    regimes: pd.DataFrame
    choice: pd.DataFrame
    """analysis.aggregate.regime_choice: which transfer regime, the lines' values."""
    table2: object  # analysis.tables.Table2
    rule: BandRule


def rebuild(res: ExternalResults, rule: BandRule | str | None = None) -> ExternalTables:
    """Table II's numbers for external logs, through the same functions as for a sweep."""
    from analysis import tables

    rule = BandRule.parse(rule)
    regimes = aggregate.regime_summary(res, rule)
    choice = aggregate.regime_choice(res)
    return ExternalTables(res, regimes, choice, tables.table2(res, regimes, choice), rule)


def fig2(t: ExternalTables):
    """Fig. 2 for external logs (analysis.figures.fig2)."""
    from analysis import figures

    return figures.fig2(aggregate.epoch_curves(t.res), t.regimes, t.choice, t.res.ood_label)


def write_outputs(t: ExternalTables, out: Path, prefix: str = "") -> list[Path]:
    """table2.md/.csv and fig2.png (+ .pdf) for external logs into `out`."""
    from analysis import figures

    out.mkdir(parents=True, exist_ok=True)
    files = []
    for ext, text in (("md", t.table2.markdown()), ("csv", t.table2.csv())):
        path = out / f"{prefix}table2.{ext}"
        path.write_text(text, encoding="utf-8")
        files.append(path)
    files += figures.save(fig2(t), out, f"{prefix}fig2", pdf=False)
    return files


def report_section(logs: str, lines: str | None, out: Path, rule: BandRule | str | None = None
                   ) -> tuple[str, list[Path]]:
    """HTML for `analysis.report --external-logs`: the logs' Table II and Fig. 2 beside the sweep's."""
    from analysis.render import figure_html

    t = rebuild(load_external_logs(logs, lines), rule)
    files = write_outputs(t, out, prefix="external_")
    png = next(f for f in files if f.suffix == ".png")
    html = (f"<h2>External logs: {escape(str(logs))}</h2>\n"
            f'<p class="note">{escape(" · ".join(t.res.notes))}. Bands: {escape(t.rule.describe())}.</p>\n'
            + t.table2.html()
            + figure_html(png, "Fig. 2, external logs"))
    return html, files


# ----------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.external_logs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logs", help="per-epoch validation logs (CSV, layout above)")
    p.add_argument("--lines", default=None, metavar="LINES.csv",
                   help="per-architecture test/OOD lines (CSV, layout above)")
    p.add_argument("--compare", default=None, metavar="PRINTED.csv",
                   help="a printed Table II to compare the rebuilt bands with")
    p.add_argument("--band-from-epoch", default="half", metavar="RULE", help=BAND_RULE_HELP)
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write table2.md, table2.csv, fig2.png here (and band_comparison.md with --compare)")
    p.add_argument("--ood-kind", default="real", metavar="KIND",
                   help="what the lines' OOD set is (default real)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rule = BandRule.parse(args.band_from_epoch)
        res = load_external_logs(args.logs, args.lines, ood_kind=args.ood_kind)
        t = rebuild(res, rule)
        cmp = compare_bands(t.regimes, args.compare) if args.compare else None
        files = write_outputs(t, Path(args.out)) if args.out else []
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Table II from {args.logs} (bands: {rule.describe()})\n")
    print(t.table2.markdown())
    if cmp is not None:
        text = comparison_markdown(cmp)
        print(f"Against {args.compare}:\n\n{text}")
        if args.out:
            path = Path(args.out) / "band_comparison.md"
            path.write_text(text, encoding="utf-8")
            files.append(path)
            (Path(args.out) / "band_comparison.json").write_text(json.dumps(
                dict(zip(("mean_abs_error", "max_abs_error"), comparison_summary(cmp)[:2], strict=True))
                | {"band_from_epoch": rule.spec}, indent=2), encoding="utf-8")
            files.append(Path(args.out) / "band_comparison.json")
    for f in files:
        print(f"wrote {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
