"""Rebuilt validation bands against a printed Table II (`python -m analysis.external_logs
--compare PRINTED.csv`): each endpoint beside the printed one, the mean and worst error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.bands import parse_band
from analysis.csv_input import read_csv
from trainables.errors import UserError
from trainables.regimes import REGIMES, regime_label


def compare_bands(regimes: pd.DataFrame, printed: str | Path) -> pd.DataFrame:
    """Each rebuilt band beside a printed Table II (columns arch, val_band_<regime>): one row per
    arch x regime with printed and rebuilt text, and the absolute error of each endpoint in points
    (rebuilt endpoints unrounded, printed ones as printed)."""
    p = Path(printed)
    table = read_csv(p, "printed Table II", "arch, val_band_<regime> ...")
    cols = {r: f"val_band_{r}" for r in REGIMES if f"val_band_{r}" in table.columns}
    if "arch" not in table.columns or not cols:
        raise UserError(f"{p}: needs columns arch and val_band_<regime> (e.g. val_band_finetune)")
    table["arch"] = table["arch"].str.strip()
    rows = []
    for _, r in regimes.iterrows():
        match = table[table["arch"] == r["arch"]]
        if match.empty or r["regime"] not in cols:
            continue
        text = match.iloc[0][cols[r["regime"]]]
        try:
            plo, phi = parse_band(text)
        except ValueError as exc:
            raise UserError(f"{p}: {r['arch']} {cols[r['regime']]}: {exc}") from None
        lo, hi = 100 * r["band_lo"], 100 * r["band_hi"]
        rows.append({"arch": r["arch"], "regime": r["regime"], "printed": text.strip(), "rebuilt": r["band"],
                     "rebuilt_lo": lo, "rebuilt_hi": hi, "err_lo": abs(lo - plo), "err_hi": abs(hi - phi)})
    return pd.DataFrame(rows)


def comparison_summary(cmp: pd.DataFrame) -> tuple[float, float, str]:
    """(mean, max absolute endpoint error in points, the worst cell)."""
    errs = np.concatenate([cmp["err_lo"].to_numpy(), cmp["err_hi"].to_numpy()])
    worst = cmp.assign(w=np.maximum(cmp["err_lo"], cmp["err_hi"])).sort_values("w").iloc[-1]
    return (float(errs.mean()), float(errs.max()),
            f"{worst['arch']} {worst['regime']}: printed {worst['printed']}, rebuilt "
            f"{worst['rebuilt_lo']:.1f}-{worst['rebuilt_hi']:.1f}")


def comparison_markdown(cmp: pd.DataFrame) -> str:
    from analysis.tables import markdown_table

    rows = [[r["arch"], regime_label(r["regime"]), r["printed"], r["rebuilt"],
             f"{r['rebuilt_lo']:.1f}-{r['rebuilt_hi']:.1f}", f"{r['err_lo']:.1f} / {r['err_hi']:.1f}"]
            for _, r in cmp.iterrows()]
    mean, worst, where = comparison_summary(cmp)
    return (markdown_table(["Architecture", "Regime", "Printed", "Rebuilt", "Rebuilt (unrounded)",
                            "Error lo / hi (points)"], rows)
            + f"\n\nMean absolute endpoint error {mean:.2f} points, worst {worst:.2f} ({where}).\n")
