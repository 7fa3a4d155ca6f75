"""A results table's files: per-trial files and compacted parts, read under replace-by-trial-id.

A table folder (``<results>/<table>/``) holds two kinds of visible Parquet files:

- **fresh files**, any other name (the writers use ``<trial_id>.parquet``): what trials wrote
  since the last compaction. Their rows always win.
- **compacted parts**, ``compacted-<generation>-<random>.parquet``: rows of many trials, written
  by trainables/compaction.py. A later generation wins over an earlier one (ties: the larger
  name).

Replace-by-trial-id: each trial's rows come from exactly one source, the newest that holds the
trial: the fresh files if any of them does, else the newest compacted part that does. So writing
a trial again after a compaction (a retried failure, a rerun) replaces its compacted rows, as
writing its file again always did. :func:`read_folder` applies that rule; reading the folder with
plain pandas/pyarrow instead sees every row, including rows a newer source replaced.

This module knows files and the ``trial_id`` column, not the tables' schemas (they come in).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from trainables.storage import resolve

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
