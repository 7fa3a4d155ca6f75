"""Which Parquet files under a results root cannot be read, or hold another schema.

Readers (the report, the sweep's summary, its preflight) read a whole table at once; one truncated
file, or a file another tool dropped into `trials/`, would otherwise fail that read with a message
naming no file, or, worse, read as rows of nulls (NaN in every statistic). `check_table` names each
such file with the fix; it reads only footers, so callers run it when a read failed or looked
wrong, not on every read.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from trainables.errors import UserError
from trainables.results import TABLES
from trainables.storage import is_temporary, join, resolve

REQUIRED: dict[str, tuple[str, ...]] = {
    "epochs": ("trial_id", "arch", "regime", "seed", "train_size", "epoch"),
    "trials": ("trial_id", "arch", "regime", "seed", "train_size", "status"),
    "predictions": ("trial_id", "arch", "regime", "seed", "train_size", "split", "path"),
}
"""Columns every version of the schema has had; newer optional columns may be absent."""
OK_REQUIRED = ("epochs", "best_epoch", "best_val_acc", "test_acc")
"""Values a trial row marked "ok" always has: null there means a foreign or damaged file."""


def _compatible(found: pa.DataType, wanted: pa.DataType) -> bool:
    if found == wanted or pa.types.is_null(found):
        return True
    for kind in (pa.types.is_integer, pa.types.is_floating, pa.types.is_string):
        if kind(wanted):
            return kind(found) or (kind is pa.types.is_string and pa.types.is_large_string(found))
    return False


def file_problem(fs: pafs.FileSystem, path: str, table: str) -> str | None:
    """Why one file is not a readable file of `table` (None when it is)."""
    try:
        with fs.open_input_file(path) as f:
            parquet = pq.ParquetFile(f)
            schema = parquet.schema_arrow
            if table == "trials" and "status" in schema.names:
                rows = parquet.read(columns=[c for c in ("status", *OK_REQUIRED)
                                             if c in schema.names])
            else:
                rows = None
    except (OSError, ValueError, pa.ArrowException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"not a readable Parquet file (truncated or corrupt: {first[:200]})"
    wanted = TABLES[table]
    missing = [c for c in REQUIRED[table] if c not in schema.names]
    if missing:
        return f"not a {table} file of this tool (lacks the columns {', '.join(missing)})"
    foreign = [c for c in schema.names if c not in wanted.names]
    wrong = [f"{c} is {schema.field(c).type}, expected {wanted.field(c).type}"
             for c in schema.names if c in wanted.names
             and not _compatible(schema.field(c).type, wanted.field(c).type)]
    if foreign or wrong:
        detail = "; ".join(([f"unknown columns {', '.join(foreign[:5])}"] if foreign else []) + wrong)
        return f"a different schema than {table} files of this tool ({detail})"
    if rows is not None:
        for row in rows.to_pylist():
            empty = [c for c in OK_REQUIRED if row.get("status") == "ok" and row.get(c) is None]
            if empty:
                return f"a trial marked ok without {', '.join(empty)} (damaged or hand-edited)"
    return None


def bad_files(root: str, table: str) -> list[tuple[str, str]]:
    """[(path, problem)] of the files of one table under a results root."""
    fs, base = resolve(root)
    folder = f"{base}/{table}"
    if fs.get_file_info(folder).type != pafs.FileType.Directory:
        return []
    out = []
    for info in fs.get_file_info(pafs.FileSelector(folder, recursive=True)):
        name = info.base_name
        if info.type != pafs.FileType.File or name.startswith((".", "_")) or is_temporary(name):
            continue
        problem = file_problem(fs, info.path, table)
        if problem:
            out.append((info.path, problem))
    return sorted(out)


def check_table(root: str, table: str) -> None:
    """Raise one UserError naming every unreadable or foreign file of `table`, with the fix."""
    bad = bad_files(root, table)
    if not bad:
        return
    listing = "\n".join(f"  {path}: {problem}" for path, problem in bad[:20])
    more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
    raise UserError(f"{len(bad)} file(s) in {join(root, table)} cannot be used:\n{listing}{more}\n"
                    "Fix: move each out of the results folder (a file another tool wrote belongs "
                    "elsewhere); a trial's own damaged file can be deleted: a rerun of the same "
                    "sweep runs that trial again")
