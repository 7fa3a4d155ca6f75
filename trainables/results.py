"""The results schema (single source of truth) and its atomic Parquet writers and readers.

Layout under a results root (a local path or any pyarrow filesystem URI, s3:// included)::

    <root>/epochs/<trial_id>.parquet       one row per trial and epoch
    <root>/trials/<trial_id>.parquet       one row per trial
    <root>/predictions/<trial_id>.parquet  one row per trial and evaluated image

Each file is written through `trainables.storage.atomic_output` (a hidden temporary name, then a
rename), so a reader never sees a partial file. A trial's files
are keyed by its id, so writing a trial again replaces its rows instead of duplicating them.
The ``trials`` file is written last: its presence marks a trial as finished. A compaction
(trainables/compaction.py, ``python -m sweep.compact``) merges these per-trial files into a few
large parts; the readers here read both kinds together, each trial's rows from its newest file.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trainables.storage import atomic_output, join
from trainables.table_files import read_folder

SCHEMA_VERSION = 3
"""3: trials gained source (study, torchvision or timm), node (the Ray node), probe_c and
probe_grid_json (the linear probe); older files read with them null."""

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
    trial's rows from its newest file: trainables/table_files.py); an absent table reads as
    empty with the schema. `filter` selects rows (e.g. ``pc.field("trial_id").isin(ids)``)."""
    return read_folder(join(root, table), TABLES[table], columns, filter)
