"""Checks of command-line values shared by every CLI: numbers, paths, names. No torch import.

Each raises `UserError` naming the option and the fix, so every entry point ends in one
`error: ...` line (exit 2) instead of a traceback, a hang (`--cpus-per-trial nan`) or a folder
created somewhere unexpected (`--out ''` is the current folder).
"""

from __future__ import annotations

import math
import os
import re

from trainables.errors import UserError

NAME_PATTERN = re.compile(r"^\w[\w.+=@,-]*$")
"""Experiment names: letters (any script), digits and . _ - + = @ , ; not starting with a dot
or a dash. `?`, `#`, `%`, spaces and `/` would mean something else in a URI or a shell."""
MAX_NAME = 120


def finite(option: str, value: float, minimum: float | None = None, above: bool = False,
           example: str = "") -> float:
    """`value` as a finite float, at least (or, with `above`, more than) `minimum`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if minimum is None:
        ok = math.isfinite(number)
    else:
        ok = math.isfinite(number) and (number > minimum if above else number >= minimum)
    if not ok:
        bound = "" if minimum is None else (f" above {minimum:g}" if above else f" of at least "
                                            f"{minimum:g}")
        hint = f" (e.g. {example})" if example else ""
        raise UserError(f"{option} {value!r}: use a finite number{bound}{hint}")
    return number


def whole(option: str, value: int, minimum: int = 0, maximum: int | None = None) -> int:
    if value < minimum or (maximum is not None and value > maximum):
        span = f"between {minimum} and {maximum}" if maximum is not None else f"{minimum} or more"
        raise UserError(f"{option} must be a whole number {span}, got {value}")
    return value


def text_option(option: str, value: str) -> str:
    """Any text an option passes on: valid UTF-8 (what manifests and Parquet store)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(value).decode("utf-8", "backslashreplace")
        raise UserError(f"{option} {shown!r} is not valid UTF-8. Fix: rename the folder (or "
                        "pass the name in UTF-8)") from None
    if "\x00" in value:
        raise UserError(f"{option}: contains a NUL character")
    return value


def path_option(option: str, value: str | None) -> str | None:
    """A folder or URI option: not empty (an empty path is the current folder), valid UTF-8."""
    if value is None:
        return None
    text_option(option, value)
    if not value.strip():
        raise UserError(f"{option} is empty. Fix: pass a folder (or a URI such as s3://bucket/x)")
    return value


def experiment_name(option: str, value: str) -> str:
    """A name that is one plain folder on every filesystem and in every URI."""
    text_option(option, value)
    if not NAME_PATTERN.match(value) or len(value) > MAX_NAME:
        raise UserError(f"{option} {value!r}: use a plain folder name of letters, digits and "
                        f". _ - + = @ , (not starting with '.' or '-', at most {MAX_NAME} "
                        "characters); '/', '?', '#', '%' and spaces would change where results go")
    return value


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
