"""A results table's files: per-trial files and compacted parts, read under replace-by-trial-id,
and compaction, which merges many per-trial files into a few large parts, losslessly.

A table folder (``<results>/<table>/``) holds two kinds of visible Parquet files:

- **fresh files**, any other name (the writers use ``<trial_id>.parquet``): what trials wrote
  since the last compaction. Their rows always win.
- **compacted parts**, ``compacted-<generation>-<random>.parquet``: rows of many trials, written
  by :func:`compact_folder`. A later generation wins over an earlier one (ties: the larger name).

Replace-by-trial-id: each trial's rows come from exactly one source, the newest that holds the
trial: the fresh files if any of them does, else the newest compacted part that does. So writing
a trial again after a compaction (a retried failure, a rerun) replaces its compacted rows, as
writing its file again always did. :func:`read_folder` applies that rule; reading the folder with
plain pandas/pyarrow instead sees every row, including rows a newer source replaced.

:func:`compact_folder` merges a table folder's fresh files (and, size-tiered, its newest parts)
into one new compacted part, keeping replace-by-trial-id: a trial's rows are taken from its newest
source, so the part holds exactly what readers saw before.

Crash safety. The new part is written through `trainables.results.storage.atomic_output` (a
hidden temporary name, then a rename), and only then are the merged files deleted (a fresh file
only if it did not change since it was listed). Killed at any point, the folder reads the same as
before: until the new part exists nothing changed; afterwards the new part holds every merged
row, and a merged file not yet deleted holds the same rows (or, for a fresh file written
meanwhile, newer ones, which win). The next compaction removes the leftovers; the sweep's
start-up removes a killed writer's temporary file.

A concurrent writer's rows are never deleted: only files whose names, sizes and modification
times are those read into the new part go. On a local folder each is first renamed to
a hidden name and checked there (a rename is atomic), so a file rewritten at any moment, even
between the check and the delete, is either the renamed one (it differs: put back under its name,
unless a newer one is already there) or a new file the compaction never touches. On an object
store a rename is a copy, so there the check is one listing just before the deletes, and a trial
that rewrites its file in the milliseconds between them could lose that write: compact an object
store's results when no sweep writes into them (the sweep compacts its own after its last trial).

This module knows files and the ``trial_id`` column, not the tables' schemas (they come in:
trainables/results/tables.py).
"""

from __future__ import annotations

import os
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from trainables.results.storage import TMP_PREFIX, atomic_output, join, resolve

PART_PREFIX = "compacted-"
_PART_RE = re.compile(r"^compacted-(\d{10})-([0-9a-f]{8})\.parquet$")


@dataclass(frozen=True)
class Part:
    path: str
    generation: int
    size: int

    @property
    def order(self) -> tuple[int, str]:
        return (self.generation, self.path)


@dataclass
class Listing:
    """A table folder's visible Parquet files (hidden names: temporaries, ignored)."""

    fresh: list[pafs.FileInfo] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)
    """Newest first."""

    @property
    def fresh_paths(self) -> list[str]:
        return [f.path for f in self.fresh]


def part_name(generation: int) -> str:
    return f"{PART_PREFIX}{generation:010d}-{uuid.uuid4().hex[:8]}.parquet"


def list_folder(fs: pafs.FileSystem, folder: str) -> Listing | None:
    """None when the folder does not exist."""
    try:
        infos = fs.get_file_info(pafs.FileSelector(folder))
    except FileNotFoundError:
        return None
    listing = Listing()
    for info in sorted(infos, key=lambda i: i.base_name):
        name = info.base_name
        if info.type != pafs.FileType.File or not name.endswith(".parquet") or name.startswith((".", "_")):
            continue
        match = _PART_RE.match(name)
        if match:
            listing.parts.append(Part(info.path, int(match.group(1)), info.size or 0))
        else:
            listing.fresh.append(info)
    listing.parts.sort(key=lambda p: p.order, reverse=True)
    return listing


FILES_PER_SCAN = 2000
"""Files opened by one pyarrow dataset at a time: a dataset keeps every file's metadata while it
lives (~100 KB per `trials` file), so 100k fresh files in one dataset would hold ~10 GB."""


def dataset(fs: pafs.FileSystem, paths: list[str], schema: pa.Schema,
            format: str | ds.FileFormat = "parquet") -> ds.Dataset:
    return ds.dataset(paths, schema=schema, format=format, filesystem=fs)


def scan(fs: pafs.FileSystem, paths: list[str], schema: pa.Schema,
         columns: list[str] | None = None, filter: pc.Expression | None = None,
         format: str | ds.FileFormat = "parquet") -> pa.Table:
    """The rows of these files, FILES_PER_SCAN files at a time."""
    if not paths:
        return schema.empty_table().select(columns) if columns else schema.empty_table()
    pieces = [dataset(fs, paths[i:i + FILES_PER_SCAN], schema, format).to_table(columns=columns,
                                                                                 filter=filter)
              for i in range(0, len(paths), FILES_PER_SCAN)]
    return pa.concat_tables(pieces) if len(pieces) != 1 else pieces[0]


def batches(fs: pafs.FileSystem, paths: list[str], schema: pa.Schema):
    for i in range(0, len(paths), FILES_PER_SCAN):
        yield from dataset(fs, paths[i:i + FILES_PER_SCAN], schema).to_batches()


def _ids(fs: pafs.FileSystem, paths: list[str]) -> pa.Array:
    """The distinct trial ids in these files (read dictionary-encoded: no string per row)."""
    fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns={"trial_id"}))
    chunks = []
    for i in range(0, len(paths), FILES_PER_SCAN):
        column = ds.dataset(paths[i:i + FILES_PER_SCAN], format=fmt, filesystem=fs).to_table(
            columns=["trial_id"])["trial_id"]
        chunks += [c.dictionary.take(pc.unique(c.indices)) for c in column.chunks]
    return pc.unique(pa.chunked_array(chunks, pa.string())) if chunks else pa.array([], pa.string())


def read_sources(fs: pafs.FileSystem, sources: list[list[str]], schema: pa.Schema,
                 columns: list[str] | None = None, filter: pc.Expression | None = None,
                 format: str | ds.FileFormat = "parquet") -> pa.Table:
    """Rows of `sources` (lists of paths, newest first) under replace-by-trial-id: a trial's
    rows come from the first source that holds the trial. `filter` applies to the rows."""
    sources = [s for s in sources if s]
    if not sources:
        return scan(fs, [], schema, columns)
    if len(sources) == 1:
        return scan(fs, sources[0], schema, columns, filter, format)
    keep_id = columns is None or "trial_id" in columns
    read_cols = columns if keep_id else [*columns, "trial_id"]
    pieces, seen = [], None
    for i, paths in enumerate(sources):
        expr = filter
        if seen is not None and len(seen):
            newer = ~pc.field("trial_id").isin(seen)
            expr = newer if expr is None else newer & expr
        pieces.append(scan(fs, paths, schema, read_cols, expr, format))
        if i < len(sources) - 1:
            ids = _ids(fs, paths)
            seen = ids if seen is None else pc.unique(pa.concat_arrays([seen, ids]))
    table = pa.concat_tables(pieces)
    return table if keep_id else table.drop_columns(["trial_id"])


def read_folder(folder_uri: str, schema: pa.Schema, columns: list[str] | None = None,
                filter: pc.Expression | None = None, format: str | ds.FileFormat = "parquet"
                ) -> pa.Table:
    """A table folder's rows (a local path or URI), fresh files and compacted parts together,
    each trial's rows from its newest source. An absent folder reads as empty. `format` may
    carry read options (e.g. dictionary-encoded columns, with a `schema` to match)."""
    fs, folder = resolve(folder_uri)
    listing = list_folder(fs, folder)
    if listing is None:
        listing = Listing()
    sources = [listing.fresh_paths] + [[p.path] for p in listing.parts]
    return read_sources(fs, sources, schema, columns, filter, format)


# ----------------------------------------------------------------- compaction
TIER_RATIO = 4
"""An incremental compaction also merges the newest part while that part holds at most this many
times the rows merged so far (size-tiered: O(log n) parts, each row rewritten O(log n) times).
`full=True` merges everything."""
ROW_GROUP_ROWS = 256 * 1024
DELETE_THREADS = 16
"""Deletes in flight at once: one request each on an object store, so 100k in a row would take
hours."""


@dataclass
class CompactionResult:
    folder: str
    part: str | None = None
    """The new part's path (None: nothing to do)."""
    merged_files: int = 0
    merged_parts: int = 0
    rows: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    kept_changed: list[str] = field(default_factory=list)
    """Fresh files rewritten while compacting: merged, but kept (their newer rows win)."""

    def describe(self) -> str:
        if self.part is None:
            return f"{self.folder}: nothing to compact"
        kept = f"; {len(self.kept_changed)} file(s) changed meanwhile, kept" if self.kept_changed else ""
        return (f"{self.folder}: {self.merged_files} file(s) + {self.merged_parts} part(s) -> 1 part, "
                f"{self.rows:,} rows, {self.bytes_before / 2**20:.1f} -> {self.bytes_after / 2**20:.1f} MiB"
                f"{kept}")


@dataclass(frozen=True)
class Plan:
    """What one compaction of a folder sees (one listing); which parts it merges is decided
    when it has read the fresh files (see TIER_RATIO)."""

    uri: str
    fresh: list[pafs.FileInfo]
    parts: list[Part]
    """Newest first."""
    full: bool

    @property
    def empty(self) -> bool:
        return not self.fresh and (not self.full or len(self.parts) <= 1)

    @property
    def generation(self) -> int:
        return max((p.generation for p in self.parts), default=0) + 1


def plan_compaction(folder_uri: str, full: bool = False) -> Plan:
    fs, folder = resolve(folder_uri)
    listing = list_folder(fs, folder) or Listing()
    return Plan(folder_uri, listing.fresh, listing.parts, full)


def _num_rows(fs: pafs.FileSystem, path: str) -> int:
    with fs.open_input_file(path) as f:
        return pq.ParquetFile(f).metadata.num_rows


class _RowGroups:
    """Batches in, row groups of up to ROW_GROUP_ROWS rows out (one per FILES_PER_SCAN batches
    at least), instead of one tiny row group per small file."""

    def __init__(self, writer: pq.ParquetWriter) -> None:
        self.writer, self.pending, self.rows, self.written = writer, [], 0, 0

    def add(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self.pending.append(batch)
            self.rows += batch.num_rows
            # a file's batch of one `trials` row still carries ~40 column buffers: bound both
            if self.rows >= ROW_GROUP_ROWS or len(self.pending) >= FILES_PER_SCAN:
                self.flush()

    def flush(self) -> None:
        if self.pending:
            self.writer.write_table(pa.Table.from_batches(self.pending), row_group_size=ROW_GROUP_ROWS)
            self.written += self.rows
            self.pending, self.rows = [], 0


def _write_merged(fs: pafs.FileSystem, plan: Plan, schema: pa.Schema, stream) -> list[Part]:
    """Stream the fresh files, then the newest parts (rows of trials already written skipped),
    into `stream` in bounded memory; returns the parts merged."""
    seen = pa.array([], pa.string())
    merged: list[Part] = []
    with pq.ParquetWriter(stream, schema) as writer:
        out = _RowGroups(writer)
        if plan.fresh:  # in name order: one trial's rows together, trials sorted by id
            ids = []
            for batch in batches(fs, [f.path for f in plan.fresh], schema):
                out.add(batch)
                ids.append(pc.unique(batch["trial_id"]))
            seen = pc.unique(pa.chunked_array(ids, pa.string()))
        rows = out.written + out.rows
        for part in plan.parts:  # newest first: a contiguous newest run keeps generations in order
            n = _num_rows(fs, part.path)
            if not plan.full and n > TIER_RATIO * rows:
                break
            ids = []
            for batch in dataset(fs, [part.path], schema).to_batches():
                ids.append(pc.unique(batch["trial_id"]))
                out.add(batch.filter(pc.invert(pc.is_in(batch["trial_id"], value_set=seen)))
                        if len(seen) else batch)
            seen = pc.unique(pa.chunked_array([seen, *ids], pa.string()))
            merged.append(part)
            rows += n
        out.flush()
    return merged


def apply_compaction(plan: Plan, schema: pa.Schema) -> CompactionResult:
    """Write the plan's new part, then delete what it merged (fresh files only if unchanged
    since the plan was made)."""
    result = CompactionResult(plan.uri)
    if plan.empty:
        return result
    fs, folder = resolve(plan.uri)
    name = part_name(plan.generation)
    with atomic_output(join(plan.uri, name)) as stream:
        merged = _write_merged(fs, plan, schema, stream)
    path = f"{folder}/{name}"
    result.part, result.rows = path, _num_rows(fs, path)
    result.merged_files, result.merged_parts = len(plan.fresh), len(merged)
    result.bytes_after = fs.get_file_info(path).size or 0
    result.bytes_before = sum(f.size or 0 for f in plan.fresh) + sum(p.size for p in merged)
    if isinstance(fs, pafs.LocalFileSystem):
        done = [_set_aside_if_read(fs, before, result) for before in plan.fresh]
    else:  # one listing, not a stat per file (on S3 a LIST returns 1000 files' sizes and times)
        now = {i.path: i for i in fs.get_file_info(pafs.FileSelector(folder))} if plan.fresh else {}
        done = []
        for before in plan.fresh:
            after = now.get(before.path)
            if after is None or after.type != pafs.FileType.File:
                continue
            if _same(after, before):
                done.append(before.path)
            else:
                result.kept_changed.append(before.path)
    _delete_all(fs, [p for p in done if p] + [p.path for p in merged])
    return result


def _same(a: pafs.FileInfo, b: pafs.FileInfo) -> bool:
    return (a.mtime_ns, a.size) == (b.mtime_ns, b.size)


def _set_aside_if_read(fs: pafs.FileSystem, before: pafs.FileInfo,
                       result: CompactionResult) -> str | None:
    """Rename the fresh file to a hidden name; return that name when it is the file that was
    read (to delete), else put it back (or drop it when a newer file took its name) and keep."""
    folder, _, name = before.path.rpartition("/")
    aside = f"{folder}/{TMP_PREFIX}compacted-{name}-{uuid.uuid4().hex[:8]}.tmp"
    try:
        fs.move(before.path, aside)
    except FileNotFoundError:
        return None
    if _same(fs.get_file_info(aside), before):
        return aside
    result.kept_changed.append(before.path)
    try:
        os.link(aside, before.path)  # put back, never over a newer file: its rows win anyway
    except FileExistsError:
        pass
    fs.delete_file(aside)
    return None


def compact_folder(folder_uri: str, schema: pa.Schema, full: bool = False) -> CompactionResult:
    """Merge the folder's fresh files (and its newest parts, or all with `full`) into one new
    compacted part; see the module docstring for the rules and crash safety."""
    return apply_compaction(plan_compaction(folder_uri, full), schema)


def _delete_all(fs: pafs.FileSystem, paths: list[str]) -> None:
    def delete(path: str) -> None:
        try:
            fs.delete_file(path)
        except FileNotFoundError:
            pass

    with ThreadPoolExecutor(DELETE_THREADS) as pool:
        list(pool.map(delete, paths))
