"""Read a results root (the Parquet tables of trainables/results/tables.py) into pandas for analysis.

Only what the sweep wrote is used: the three tables, the kept models they point to, and the
split manifest beside the results (``<results>/manifest.json`` from ``trainables.train`` or
``<results>/../manifest.json`` from ``sweep.run``).
"""

from __future__ import annotations

import json
import pathlib
import posixpath
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from analysis.configurations import check_one_configuration, select
from analysis.report_inputs import check_results_root, manifest_notes, read_manifest_json
from trainables.config import parse_train_size
from trainables.errors import UserError
from trainables.results.compaction import read_folder
from trainables.results.storage import join, resolve
from trainables.results.tables import (
    PREDICTIONS_SCHEMA,
    check_table,
    read_checked,
    read_table,
)

DEFAULT_RESULTS = "runs/demo/results"
PRODUCE_HINT = ("run the sweep first: `python -m sweep.run` (writes runs/demo/results), or pass "
                "--results with the folder a sweep or `python -m trainables.train --out` wrote")
KEY_COLUMNS = ["trial_id", "arch", "regime", "seed", "train_size"]
EPOCH_COLUMNS = ["trial_id", "epoch", "val_acc", "lr"]
TRIAL_COLUMNS = KEY_COLUMNS + [
    "preset", "source", "status", "error", "epochs", "best_epoch", "best_val_acc", "best_val_loss",
    "test_acc", "ood_acc", "classes_json", "train_images", "train_images_per_class", "trainable_params",
    "total_params", "ood_kind", "model_path", "split_manifest_hash", "one_class_test",
    "one_class_ood", "test_confusion_json", "ood_confusion_json", "train_subset_seed", "finished_at"]
"""What the analysis reads of `trials` (not the large JSON and provenance columns; the confusion
matrices give the one-class flags their counts: analysis.one_class). Columns an older file lacks
read as null."""
ANTS_BEES_CAVEAT = ("the classes are ants and bees: these photos most likely come from ImageNet "
                    "itself, so ImageNet-pretrained models have seen photos like them and "
                    "transfer looks better here than on a truly new domain")


def arch_order(archs: list[str] | pd.Series) -> list[str]:
    """The study's order (trainables.archs.STUDY_ARCHS), then any others alphabetically."""
    from trainables.archs import STUDY_ARCHS

    present = set(archs)
    known = [a for a in STUDY_ARCHS if a in present]
    return known + sorted(present - set(known))


def is_full_size(train_size: str) -> bool:
    try:
        return parse_train_size(train_size) is None
    except UserError:
        return False


@dataclass
class Results:
    root: str
    trials: pd.DataFrame
    """Finished trials with status "ok" (the only ones statistics use)."""
    failed: pd.DataFrame
    """Trials whose last attempt failed: listed in the report, excluded from statistics."""
    epochs: pd.DataFrame
    """Per-epoch rows of the ok trials (EPOCH_COLUMNS plus the trial keys)."""
    manifest_path: str | None = None
    notes: list[str] = field(default_factory=list)

    @cached_property
    def manifest_layout(self) -> str | None:
        """The manifest's layout ("embedded-demo", "pool", "presplit"), read without torch."""
        if self.manifest_path is None:
            return None
        return read_manifest_json(self.root, self.manifest_path).get("layout")

    @cached_property
    def manifest(self) -> Any:
        """The split manifest (trainables.data.manifest.Manifest) the trials used, or None. Loaded on
        first use (Grad-CAM and image paths need it); a manifest of another split is noted and
        ignored."""
        if self.manifest_path is None:
            return None
        from trainables.data.manifest import Manifest

        manifest = Manifest.from_json(_read_text(self.root, self.manifest_path))
        hashes = self.trials["split_manifest_hash"].dropna().unique().tolist()
        if hashes and manifest.hash not in hashes:
            self.notes.append(f"the manifest at {self.manifest_path} (hash {manifest.hash}) is not the "
                              f"one the trials used ({', '.join(hashes)}); image paths are not resolved "
                              "through it")
            return None
        return manifest

    @cached_property
    def full_size(self) -> str:
        """The train size Table II and Fig. 2 use: "all" when present, else the largest."""
        sizes = self.trials["train_size"].unique().tolist()
        full = [s for s in sizes if is_full_size(s)]
        if full:
            return sorted(full)[0]
        per_class = self.trials.groupby("train_size")["train_images_per_class"].mean()
        if per_class.notna().any():
            return str(per_class.idxmax())
        return max(sizes, key=lambda s: parse_train_size(s) or 0)  # runs without image counts

    @cached_property
    def full(self) -> pd.DataFrame:
        return self.trials[self.trials["train_size"] == self.full_size]

    @cached_property
    def ood_kinds(self) -> list[str]:
        kinds = self.trials["ood_kind"].fillna("none").unique().tolist()
        return sorted(k for k in kinds if k != "none")

    @property
    def ood_label(self) -> str:
        """How to name the OOD columns and lines: "OOD (real)" or "OOD (synthetic shift)"."""
        return ood_label(self.ood_kinds)

    @cached_property
    def select_on(self) -> list[str]:
        """The distinct `select_on` values of the trials' config_json (how each trial chose its
        kept epoch); empty when no trial records one (then: best validation accuracy)."""
        return read_select_on(self.root, self.trials["trial_id"].tolist())

    @cached_property
    def classes(self) -> list[str]:
        for text in self.trials["classes_json"].dropna():
            return list(json.loads(text))
        if self.manifest_path is not None:
            return list(json.loads(_read_text(self.root, self.manifest_path)).get("classes", []))
        return []

    @property
    def caveat(self) -> str | None:
        if self.manifest_layout == "embedded-demo":
            from trainables.data.demo import CAVEAT

            return CAVEAT
        if sorted(c.lower() for c in self.classes) == ["ants", "bees"]:
            return ANTS_BEES_CAVEAT
        return None

    def predictions(self, trial_ids: list[str]) -> pd.DataFrame:
        return read_predictions(self.root, trial_ids)

    def prediction_table(self, trial_ids: list[str], columns: list[str] | None = None,
                         dictionary: bool = False) -> pa.Table:
        return read_prediction_table(self.root, trial_ids, columns, dictionary)


def ood_label(kinds: list[str]) -> str:
    if not kinds:
        return "OOD (none)"
    short = sorted({"synthetic shift" if k.startswith("synthetic shift") else k for k in kinds})
    return f"OOD ({', '.join(short)})"


def _join(base: str, *parts: str) -> str:
    return posixpath.join(base, *parts)


def find_manifest(root: str) -> str | None:
    """Path of the split manifest next to the results (``<results>/manifest.json`` from
    trainables.train, ``<results>/../manifest.json`` from sweep.run), or None."""
    fs, base = resolve(root)
    for candidate in (_join(base, "manifest.json"),
                      _join(posixpath.dirname(base.rstrip("/")), "manifest.json")):
        if fs.get_file_info(candidate).type == pafs.FileType.File:
            return candidate
    return None


def _read_text(root: str, path: str) -> str:
    fs, _ = resolve(root)
    with fs.open_input_stream(path) as f:
        return f.read().decode("utf-8")


def load_results(root: str = DEFAULT_RESULTS, with_manifest: bool = True,
                 where: dict[str, Any] | None = None) -> Results:
    """Read the trials and epochs tables; clear errors for a missing or empty results root, and
    for trials of different configurations (analysis/configurations.py), unless `where` (field
    -> value) keeps one of them."""
    check_results_root(root, PRODUCE_HINT)
    trials_tbl = read_checked(root, "trials", columns=TRIAL_COLUMNS)
    if trials_tbl.num_rows == 0:
        raise UserError(f"results folder {root} holds no finished trials (no {root}/trials/*.parquet);"
                        f" {PRODUCE_HINT}")
    trials = trials_tbl.to_pandas()
    if trials["source"].isna().any():  # rows written before the column existed
        from trainables.archs import source_of

        trials["source"] = trials["source"].fillna(trials["arch"].map(source_of))
    ok = trials[trials["status"] == "ok"].reset_index(drop=True)
    failed = trials[trials["status"] != "ok"].reset_index(drop=True)
    if ok.empty:
        first = failed["error"].dropna().head(3).tolist()
        raise UserError(f"all {len(failed)} trial(s) in {root} failed, nothing to analyse; first "
                        f"error(s): {' | '.join(first) or 'not recorded'}. Fix the cause and rerun "
                        "the sweep (it resumes unfinished trials)")
    notes = []
    if where:
        ok = select(root, ok, where)
        chosen = ", ".join(f"{k}={v}" for k, v in where.items())
        if ok.empty:
            raise UserError(f"--where {chosen}: no finished trial in {root} has these settings. "
                            "Fix: use the values the error without --where lists")
        notes.append(f"only the trials with {chosen} (--where)")
    check_one_configuration(root, ok)
    ok = once_per_grid_point(ok, notes)
    epochs = _epochs_of(read_checked(root, "epochs", columns=EPOCH_COLUMNS), ok)
    presets = sorted(ok["preset"].dropna().unique().tolist())
    if len(presets) > 1:
        notes.append(f"trials of several presets are pooled: {', '.join(presets)}")
    hashes = ok["split_manifest_hash"].dropna().unique().tolist()
    if len(hashes) > 1:
        notes.append(f"trials use {len(hashes)} different split manifests; paired tests only "
                     "pair images both trials saw")
    manifest_path = find_manifest(root) if with_manifest else None
    if manifest_path is not None:
        notes += manifest_notes(read_manifest_json(root, manifest_path), manifest_path)
    return Results(root=root, trials=ok, failed=failed, epochs=epochs,
                   manifest_path=manifest_path, notes=notes)


def once_per_grid_point(ok: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """One row per architecture x regime x seed x train size: a trial of one configuration
    written twice under two ids (its id before and after ids followed what a regime reads, by
    `trainables.train` into the same --out) counts once, its newest row."""
    grid = KEY_COLUMNS[1:]
    if not ok.duplicated(grid).any():
        return ok
    newest = ok.sort_values("finished_at", na_position="first", kind="stable").drop_duplicates(
        grid, keep="last")
    notes.append(f"{len(ok) - len(newest)} trial(s) were written twice under different trial ids; "
                 "the newest row of each counts once")
    return ok.loc[newest.index.sort_values()].reset_index(drop=True)


def _epochs_of(table: pa.Table, trials: pd.DataFrame) -> pd.DataFrame:
    """The epoch rows of these trials, with their keys taken from `trials` (not from the
    millions of repeated strings in the file). Key columns come out as categoricals."""
    encoded = pc.dictionary_encode(table["trial_id"]).combine_chunks()
    ids = pa.array(trials["trial_id"].tolist(), type=pa.string())
    # per distinct id in the file: its row in `trials`, or -1 (failed or unknown trial)
    where = pc.fill_null(pc.index_in(encoded.dictionary, value_set=ids), -1).to_numpy()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    row = where[codes]
    keep = row >= 0
    row = row[keep]
    out = {"trial_id": pd.Categorical.from_codes(codes[keep], categories=encoded.dictionary.to_pandas()
                                                 ) if len(encoded.dictionary) else pd.Categorical([])}
    for name in ("arch", "regime", "train_size"):
        cat = trials[name].astype("category")
        out[name] = pd.Categorical.from_codes(cat.cat.codes.to_numpy()[row], categories=cat.cat.categories)
    out["seed"] = trials["seed"].to_numpy()[row]
    for name in ("epoch", "val_acc", "lr"):
        out[name] = table[name].to_numpy()[keep]
    return pd.DataFrame(out)


def read_select_on(root: str, trial_ids: list[str]) -> list[str]:
    """Distinct `"select_on": "..."` values in these trials' config_json, without parsing every
    JSON document (a regex in Arrow over the one column)."""
    col = read_table(root, "trials", columns=["trial_id", "config_json"])
    if col.num_rows == 0:
        return []
    keep = pc.is_in(col["trial_id"], value_set=pa.array(trial_ids, type=pa.string()))
    text = pc.filter(col["config_json"], keep).combine_chunks()
    found = pc.extract_regex(text, r'"select_on"\s*:\s*"(?P<v>[^"]*)"')
    values = pc.struct_field(found, "v")  # null where the struct is null (no match)
    return sorted(v for v in pc.unique(values).to_pylist() if v is not None)


def read_predictions(root: str, trial_ids: list[str]) -> pd.DataFrame:
    """Predictions of a few trials (every column), as pandas."""
    return read_prediction_table(root, trial_ids).to_pandas()


PREDICTION_KEYS = ("trial_id", "split", "path")
"""String columns of `predictions` that `read_prediction_table(dictionary=True)` keeps encoded."""


def read_prediction_table(root: str, trial_ids: list[str], columns: list[str] | None = None,
                          dictionary: bool = False) -> pa.Table:
    """Predictions of some trials as an Arrow table (only `columns`, default all). Reads their
    own files (<root>/predictions/<id>.parquet, the layout trainables.results writes) when
    present, else filters the whole table (compacted parts and fresh files together, each
    trial's rows from its newest file: trainables/results/compaction.py). With `dictionary`, the
    PREDICTION_KEYS columns come back dictionary-encoded as Parquet stores them (half the CPU
    on millions of rows)."""
    fs, base = resolve(root)
    ids = list(dict.fromkeys(trial_ids))
    schema, fmt = PREDICTIONS_SCHEMA, "parquet"
    if dictionary:
        schema = pa.schema([pa.field(f.name, pa.dictionary(pa.int32(), pa.string()), f.nullable)
                            if f.name in PREDICTION_KEYS else f for f in PREDICTIONS_SCHEMA])
        options = ds.ParquetReadOptions(dictionary_columns=set(PREDICTION_KEYS))
        fmt = ds.ParquetFileFormat(read_options=options)
    empty = schema.empty_table()
    empty = empty.select(columns) if columns else empty
    if not ids:
        return empty
    paths = [_join(base, "predictions", f"{tid}.parquet") for tid in ids]
    infos = fs.get_file_info(paths)
    try:
        if all(i.type == pafs.FileType.File for i in infos):
            dataset = ds.dataset(paths, schema=schema, format=fmt, filesystem=fs)
            return dataset.to_table(columns=columns)
        value_set = pa.array(ids, type=pa.string())
        return read_folder(join(root, "predictions"), schema, columns,
                           pc.field("trial_id").isin(value_set), fmt)
    except (OSError, ValueError, pa.ArrowException) as exc:
        check_table(root, "predictions")  # names the damaged or foreign file
        raise UserError(f"cannot read {root}/predictions ({str(exc).splitlines()[0][:300]})") from None


def default_out_dir(results: str) -> str:
    """<results>/../report for a local path; a local ./report for a URI (figures need a disk)."""
    if "://" in results:
        return "report"
    return str(pathlib.Path(results).resolve().parent / "report")
