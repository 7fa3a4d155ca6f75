"""Reading a user's CSV file (external logs, their lines, a printed Table II) with errors that
name the file, the line (the header is line 1) and the column, never a traceback."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from trainables.errors import UserError


def read_csv(path: str | Path, what: str, layout: str) -> pd.DataFrame:
    """A user's CSV file as strings (header stripped); errors name the file and `layout`."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} {p} does not exist" if not p.exists() else f"{what} {p} is not a file")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise UserError(f"{what} {p} is empty (expected a header line: {layout})") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} {p} is not a readable CSV file: {str(exc).strip()}") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def line_of(i: int) -> int:
    """File line of data row i (the header is line 1)."""
    return i + 2


def number(df: pd.DataFrame, col: str, path: Path, *, required: bool, integer: bool = False,
           lo: float | None = None, hi: float | None = None, hint: str = "") -> np.ndarray:
    """Column `col` as floats (NaN where empty and not `required`); a bad cell is a UserError
    naming the file, the line and the column."""
    out = np.full(len(df), np.nan)
    for i, raw in enumerate(df[col].tolist()):
        text = str(raw).strip()
        if text == "":
            if required:
                raise UserError(f"{path} line {line_of(i)}: column {col} is empty")
            continue
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"{path} line {line_of(i)}: column {col} has {text!r}, not a number") from None
        if not math.isfinite(value) or (integer and value != int(value)):
            kind = "an integer" if integer else "a finite number"
            raise UserError(f"{path} line {line_of(i)}: column {col} has {text!r}, not {kind}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            rng = f"[{lo:g}, {hi:g}]" if hi is not None else f">= {lo:g}"
            raise UserError(f"{path} line {line_of(i)}: column {col} has {text}, outside {rng}{hint}")
        out[i] = value
    return out
