"""The results schema (single source of truth) and its atomic Parquet writers and readers.

Layout under a results root (a local path or any pyarrow filesystem URI, s3:// included)::

    <root>/epochs/<trial_id>.parquet       one row per trial and epoch
    <root>/trials/<trial_id>.parquet       one row per trial
    <root>/predictions/<trial_id>.parquet  one row per trial and evaluated image

Each file is written under a hidden temporary name (``.tmp-...``) and then renamed, so a reader
never sees a partial file: pyarrow datasets skip names starting with "." or "_". A trial's files
are keyed by its id, so writing a trial again replaces its rows instead of duplicating them.
The ``trials`` file is written last: its presence marks a trial as finished.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

SCHEMA_VERSION = 1

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
    pa.field("lr", pa.float64()),
    pa.field("seconds", pa.float64()),
])

TRIALS_SCHEMA = pa.schema(_KEY_FIELDS + [
    pa.field("preset", pa.string()),
    pa.field("status", pa.string(), nullable=False),  # "ok" | "failed"
    pa.field("error", pa.string()),
    pa.field("config_json", pa.string()),
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
    pa.field("peak_memory_mb", pa.float64()),
    pa.field("resumed_from_epoch", pa.int64()),
    pa.field("model_path", pa.string()),
    # provenance
    pa.field("split_manifest_hash", pa.string()),
    pa.field("code_version", pa.string()),
    pa.field("library_versions_json", pa.string()),
    pa.field("device", pa.string()),
    pa.field("hostname", pa.string()),
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

TABLES: dict[str, pa.Schema] = {
    "epochs": EPOCHS_SCHEMA,
    "trials": TRIALS_SCHEMA,
    "predictions": PREDICTIONS_SCHEMA,
}


URI_SCHEMES = ("file://", "s3://", "gs://", "abfs://", "hdfs://")
"""Storage URIs pyarrow's filesystems understand (hdfs:// also needs a JVM and libhdfs)."""


def resolve(root: str) -> tuple[pafs.FileSystem, str]:
    """A results root (local path or URI) -> (filesystem, path inside it)."""
    if "://" in root:
        try:
            return pafs.FileSystem.from_uri(root)
        except pa.ArrowInvalid as exc:
            if "Unrecognized filesystem type" not in str(exc):
                raise
            from trainables.errors import UserError

            raise UserError(f"storage {root!r}: unknown URI scheme {root.split('://')[0]!r}; use "
                            f"a local folder or one of {', '.join(URI_SCHEMES)}") from None
    import os

    return pafs.LocalFileSystem(), os.path.abspath(root)


def to_table(table: str, rows: Iterable[dict[str, Any]]) -> pa.Table:
    schema = TABLES[table]
    rows = list(rows)
    return pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows],
                                schema=schema)


def write_table_atomic(root: str, table: str, trial_id: str, rows: Iterable[dict[str, Any]]) -> str:
    """Write one trial's rows of one table; readers see all of it or none of it."""
    fs, base = resolve(root)
    folder = f"{base}/{table}"
    fs.create_dir(folder, recursive=True)
    final = f"{folder}/{trial_id}.parquet"
    tmp = f"{folder}/.tmp-{trial_id}-{uuid.uuid4().hex[:8]}.parquet"
    pq.write_table(to_table(table, rows), tmp, filesystem=fs)
    fs.move(tmp, final)
    return final


def write_trial(root: str, trial_id: str, epochs: list[dict], trial: dict,
                predictions: list[dict]) -> None:
    """Write a trial's three tables; ``trials`` last, as the finished marker."""
    write_table_atomic(root, "epochs", trial_id, epochs)
    write_table_atomic(root, "predictions", trial_id, predictions)
    write_table_atomic(root, "trials", trial_id, [trial])


def finished_trial_ids(root: str, status: str | None = "ok") -> set[str]:
    """Ids of trials whose ``trials`` file exists (optionally only those with this status)."""
    fs, base = resolve(root)
    folder = f"{base}/trials"
    info = fs.get_file_info(folder)
    if info.type == pafs.FileType.NotFound:
        return set()
    files = [f for f in fs.get_file_info(pafs.FileSelector(folder))
             if f.base_name.endswith(".parquet") and not f.base_name.startswith((".", "_"))]
    if status is None:
        return {f.base_name.removesuffix(".parquet") for f in files}
    table = read_table(root, "trials", columns=["trial_id", "status"])
    return {tid for tid, st in zip(table["trial_id"].to_pylist(), table["status"].to_pylist(), strict=False)
            if st == status}


def read_table(root: str, table: str, columns: list[str] | None = None) -> pa.Table:
    """Read one table of a results root; an absent table reads as empty with the schema."""
    fs, base = resolve(root)
    folder = f"{base}/{table}"
    schema = TABLES[table]
    if fs.get_file_info(folder).type == pafs.FileType.NotFound:
        empty = schema.empty_table()
        return empty.select(columns) if columns else empty
    dataset = ds.dataset(folder, schema=schema, format="parquet", filesystem=fs)
    return dataset.to_table(columns=columns)


def storage_problem(root: str, write: bool = True, timeout_s: float = 60.0) -> str | None:
    """Why results cannot be written under `root` (None when they can), found in seconds.

    Creates the root and writes and deletes a hidden probe file the way the writers above do
    (with `write` off, only checks the root answers). A store that does not answer within
    `timeout_s` (an unreachable endpoint retries for minutes) counts as unreachable."""
    import threading

    from trainables.errors import UserError

    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            fs, base = resolve(root)
            if write:
                fs.create_dir(base, recursive=True)
                name = f"{base}/.write-probe-{uuid.uuid4().hex[:8]}"
                with fs.open_output_stream(name) as f:
                    f.write(b"ok")
                fs.delete_file(name)
            else:
                fs.get_file_info(base)
            outcome.append(None)
        except BaseException as exc:  # reported to the caller below
            outcome.append(exc)

    worker = threading.Thread(target=probe, daemon=True, name="storage-probe")
    worker.start()
    worker.join(timeout_s)
    if not outcome:
        return (f"did not answer within {timeout_s:.0f} s (unreachable endpoint or missing "
                "credentials?)")
    exc = outcome[0]
    if exc is None:
        return None
    if isinstance(exc, UserError):
        return str(exc)
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


STORAGE_FIX = ("Fix: pass a writable local folder, or a reachable URI (" + ", ".join(URI_SCHEMES) +
               ") with its credentials set")


def check_writable(root: str, timeout_s: float = 60.0) -> None:
    """Fail fast, before any training, when results cannot be written under `root`."""
    from trainables.errors import UserError

    problem = storage_problem(root, timeout_s=timeout_s)
    if problem is not None:
        raise UserError(f"cannot write results to {root!r}: {problem}. {STORAGE_FIX}")
