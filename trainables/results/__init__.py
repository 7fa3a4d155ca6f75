"""Results I/O: where files go, the three Parquet tables, and compaction.

- `storage`: a local path or any pyarrow filesystem URI, and the one atomic write every file
  the project writes goes through.
- `tables`: the tables' schema, the atomic per-trial writer, the reader (with the checks that
  name a damaged or foreign file).
- `compaction`: a table folder's per-trial files and compacted parts, read under
  replace-by-trial-id, and the compaction that merges them.
"""
