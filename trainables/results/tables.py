"""The results tables: their schema (single source of truth), the atomic per-trial writer, and
the reader, which names a damaged or foreign file instead of failing without one.

Layout under a results root (a local path or any pyarrow filesystem URI, s3:// included)::

    <root>/epochs/<trial_id>.parquet       one row per trial and epoch
    <root>/trials/<trial_id>.parquet       one row per trial
    <root>/predictions/<trial_id>.parquet  one row per trial and evaluated image

Each file is written through `trainables.results.storage.atomic_output` (a hidden temporary
name, then a rename), so a reader never sees a partial file. A trial's files are keyed by its id,
so writing a trial again replaces its rows instead of duplicating them. The ``trials`` file is
written last: its presence marks a trial as finished. A compaction
(trainables/results/compaction.py, ``python -m sweep.compact``) merges these per-trial files into
a few large parts; the readers here read both kinds together, each trial's rows from its newest
file.

Readers (the report, the sweep's summary, its preflight) read a whole table at once; one truncated
file, or a file another tool dropped into `trials/`, would otherwise fail that read with a message
naming no file, or, worse, read as rows of nulls (NaN in every statistic). `read_checked` reads
and, when the read failed or looks wrong, names each such file with the fix (`check_table`, which
reads only footers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from trainables.errors import UserError
from trainables.results.compaction import read_folder
from trainables.results.storage import atomic_output, is_temporary, join, resolve

SCHEMA_VERSION = 4
"""3: trials gained source (study, torchvision or timm), node (the Ray node), probe_c and
probe_grid_json (the linear probe); 4: one_class_test, one_class_ood and train_subset_seed.
Older files read with the newer columns null."""
ONE_CLASS_SHARE = 0.95
"""A trial that predicts one class for at least this share of a split's images is flagged on its
row (`one_class_<split>`: that class; analysis.one_class reads it)."""

# Columns that identify a trial; repeated in every table so each can be read alone.
_KEY_FIELDS = [
    pa.field("trial_id", pa.string(), nullable=False),
    pa.field("arch", pa.string(), nullable=False),
    pa.field("regime", pa.string(), nullable=False),
    pa.field("seed", pa.int64(), nullable=False),
    pa.field("train_size", pa.string(), nullable=False),
]

EPOCHS_SCHEMA = pa.schema(_KEY_FIELDS + [
    pa.field("epoch", pa.int64(), nullable=False),  # 1-based
    pa.field("train_loss", pa.float64()),
    pa.field("train_acc", pa.float64()),
    pa.field("val_loss", pa.float64()),
    pa.field("val_acc", pa.float64()),
    pa.field("select_score", pa.float64()),  # what picks the kept epoch (config select_on)
    pa.field("lr", pa.float64()),
    pa.field("seconds", pa.float64()),
])

TRIALS_SCHEMA = pa.schema(_KEY_FIELDS + [
    pa.field("preset", pa.string()),
    pa.field("source", pa.string()),  # "study" | "torchvision" | "timm": where the arch's entry comes from
    pa.field("status", pa.string(), nullable=False),  # "ok" | "failed"
    pa.field("error", pa.string()),
    pa.field("config_json", pa.string()),
    pa.field("overrides_json", pa.string()),  # the user's --set/--config on top of the preset
    pa.field("epochs", pa.int64()),
    pa.field("best_epoch", pa.int64()),
    pa.field("best_val_acc", pa.float64()),
    pa.field("best_val_loss", pa.float64()),
    pa.field("test_acc", pa.float64()),
    pa.field("ood_acc", pa.float64()),
    pa.field("test_recall_json", pa.string()),  # {"class": recall}
    pa.field("ood_recall_json", pa.string()),
    pa.field("test_confusion_json", pa.string()),  # rows = true label, columns = predicted
    pa.field("ood_confusion_json", pa.string()),
    pa.field("classes_json", pa.string()),
    pa.field("train_images", pa.int64()),
    pa.field("train_images_per_class", pa.float64()),
    pa.field("trainable_params", pa.int64()),
    pa.field("total_params", pa.int64()),
    pa.field("ood_kind", pa.string()),  # "real" | "synthetic shift: ..." | "none"
    pa.field("train_seconds", pa.float64()),
    pa.field("total_seconds", pa.float64()),
    pa.field("peak_memory_mb", pa.float64()),  # = peak_allocated_mb (kept for readers)
    pa.field("peak_allocated_mb", pa.float64()),
    pa.field("peak_reserved_mb", pa.float64()),
    pa.field("resumed_from_epoch", pa.int64()),
    pa.field("model_path", pa.string()),
    pa.field("probe_c", pa.float64()),  # linear_probe: the C chosen on validation; else null
    pa.field("probe_grid_json", pa.string()),  # linear_probe: the validation curve over the C grid
    pa.field("one_class_test", pa.string()),  # the class predicted for >= ONE_CLASS_SHARE of test; else null
    pa.field("one_class_ood", pa.string()),  # the same on OOD; null when not one-class or no OOD
    pa.field("train_subset_seed", pa.int64()),  # seed of the N-per-class training subset; null at "all"
    # provenance
    pa.field("split_manifest_hash", pa.string()),
    pa.field("code_version", pa.string()),
    pa.field("library_versions_json", pa.string()),
    pa.field("device", pa.string()),
    pa.field("hostname", pa.string()),
    pa.field("node", pa.string()),  # Ray node id; null outside Ray
    pa.field("started_at", pa.string()),
    pa.field("finished_at", pa.string()),
    pa.field("schema_version", pa.int64()),
])

PREDICTIONS_SCHEMA = pa.schema(_KEY_FIELDS + [
    pa.field("split", pa.string(), nullable=False),  # "test" | "ood"
    pa.field("path", pa.string(), nullable=False),  # relative to its data root
    pa.field("true_label", pa.string()),
    pa.field("pred_label", pa.string()),
    pa.field("prob", pa.float64()),  # probability of the predicted class
    pa.field("true_prob", pa.float64()),  # probability of the true class
    pa.field("correct", pa.bool_()),
])

BEST_TRIAL_ORDER: tuple[tuple[str, bool], ...] = (
    ("best_val_acc", False), ("best_val_loss", True), ("best_epoch", True), ("trial_id", True))
"""Which of several trials is "the best model" (the report, and the sweep's --keep-models best):
(column, ascending): highest best-val accuracy, then lower val loss, then the earlier epoch, then
trial id. Chosen on validation only; the seed never decides."""


def one_class_label(preds: Sequence[int], classes: list[str]) -> str | None:
    """The class predicted for at least ONE_CLASS_SHARE of the images, else None."""
    if not len(preds):
        return None
    counts = Counter(int(p) for p in preds)
    top, n = max(counts.items(), key=lambda kv: (kv[1], -kv[0]))
    return classes[top] if n >= ONE_CLASS_SHARE * len(preds) else None


def best_trial_key(row: dict[str, Any]) -> tuple:
    """Sort key of a trials row by BEST_TRIAL_ORDER (smallest first = best)."""
    key = []
    for column, ascending in BEST_TRIAL_ORDER:
        value = row.get(column)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            key.append(value if ascending else -value)
        else:
            key.append(value if value is not None else "")
    return tuple(key)


TABLES: dict[str, pa.Schema] = {
    "epochs": EPOCHS_SCHEMA,
    "trials": TRIALS_SCHEMA,
    "predictions": PREDICTIONS_SCHEMA,
}


def to_table(table: str, rows: Iterable[dict[str, Any]]) -> pa.Table:
    schema = TABLES[table]
    rows = list(rows)
    return pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows],
                                schema=schema)


def write_table_atomic(root: str, table: str, trial_id: str, rows: Iterable[dict[str, Any]]) -> str:
    """Write one trial's rows of one table; readers see all of it or none of it."""
    final = join(root, table, f"{trial_id}.parquet")
    with atomic_output(final) as stream:
        pq.write_table(to_table(table, rows), stream)
    return final


def write_trial(root: str, trial_id: str, epochs: list[dict], trial: dict,
                predictions: list[dict]) -> None:
    """Write a trial's three tables; ``trials`` last, as the finished marker."""
    write_table_atomic(root, "epochs", trial_id, epochs)
    write_table_atomic(root, "predictions", trial_id, predictions)
    write_table_atomic(root, "trials", trial_id, [trial])


def finished_trial_ids(root: str, status: str | None = "ok") -> set[str]:
    """Ids of trials with a ``trials`` row (optionally only those with this status)."""
    table = read_table(root, "trials", columns=["trial_id", "status"])
    return {tid for tid, st in zip(table["trial_id"].to_pylist(), table["status"].to_pylist(), strict=True)
            if status is None or st == status}


def read_table(root: str, table: str, columns: list[str] | None = None,
               filter: pc.Expression | None = None) -> pa.Table:
    """Read one table of a results root (per-trial files and compacted parts together, each
    trial's rows from its newest file: trainables/results/compaction.py); an absent table reads as
    empty with the schema. `filter` selects rows (e.g. ``pc.field("trial_id").isin(ids)``)."""
    return read_folder(join(root, table), TABLES[table], columns, filter)


# ----------------------------------------------------------------- checked reads
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


def read_checked(root: str, table: str, columns: list[str] | None = None) -> pa.Table:
    """read_table, with one UserError naming any unreadable or foreign file instead of a pyarrow
    traceback or rows of nulls."""
    try:
        out = read_table(root, table, columns=columns)
    except (OSError, ValueError, pa.ArrowException) as exc:
        check_table(root, table)
        raise UserError(f"cannot read {root}/{table} ({str(exc).splitlines()[0][:300]}). Fix: "
                        "move unreadable files out of the results folder") from None
    if out.num_rows and _has_holes(out, table):
        check_table(root, table)
        raise UserError(f"{root}/{table} holds rows without their trial keys or metrics, and no "
                        "single file explains it. Fix: move files that another tool wrote out of "
                        "the results folder")
    return out


def _has_holes(tbl: pa.Table, table: str) -> bool:
    names = set(tbl.column_names)
    if "trial_id" in names and tbl["trial_id"].null_count:
        return True
    if table == "trials" and "status" in names:
        if tbl["status"].null_count:
            return True
        ok = pc.equal(tbl["status"], "ok")
        for column in OK_REQUIRED:
            if column in names:
                holes = pc.and_(ok, pc.is_null(tbl[column]))
                if pc.any(holes).as_py():
                    return True
    return False
