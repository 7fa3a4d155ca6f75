"""`feature-reuse results EXPERIMENT --out FOLDER`: the current rows of each results table as one
Parquet file per table, for any Parquet tool.

A results table is a folder of per-trial files and compacted parts (docs/results.md); a trial
written again (a retried failure, a rerun after a compaction) can have rows in two of them, and
a plain glob over the folder (DuckDB, Polars, pandas) sees both. This command reads each table
the way the report does (`trainables.results.tables.read_table`: each trial's rows from its
newest file) and writes them as <FOLDER>/<table>.parquet, so that

    duckdb -c "SELECT regime, avg(test_acc) FROM 'export/trials.parquet' GROUP BY regime"

counts every trial once. Exit status: 0 written, 2 bad options (nothing written).
"""

from __future__ import annotations

import argparse
import logging
import sys

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from analysis.report_inputs import check_results_root
from trainables.errors import UserError
from trainables.presets import path_option
from trainables.results import tables as results
from trainables.results.storage import atomic_output, join, resolve

log = logging.getLogger("feature_reuse.results")
HINT = ("pass an experiment folder (<storage>/<name>, e.g. runs/demo) or its results folder "
        "(runs/demo/results)")


def results_root(experiment: str) -> str:
    """The results folder of EXPERIMENT: the experiment folder's results/, or the folder itself
    when it is a results folder; else a UserError naming what it is."""
    path_option("EXPERIMENT", experiment)
    fs, base = resolve(experiment)
    if fs.get_file_info(f"{base.rstrip('/')}/results/trials").type == pafs.FileType.Directory:
        return join(experiment, "results")
    check_results_root(experiment, HINT)  # names an experiment folder's parent, a table, a file
    if fs.get_file_info(f"{base.rstrip('/')}/trials").type != pafs.FileType.Directory:
        raise UserError(f"{experiment} holds no results (no trials/ folder); {HINT}")
    return experiment


def export(experiment: str, out: str, tables: tuple[str, ...] = tuple(results.TABLES)
           ) -> dict[str, tuple[str, int]]:
    """table -> (file written, rows): each table's current rows, one file per table, each
    written atomically (a reader of an earlier export never sees half a file)."""
    root = results_root(experiment)
    path_option("--out", out)
    written = {}
    for table in tables:
        rows = results.read_checked(root, table)
        target = join(out if "://" in out else out.rstrip("/") or "/", f"{table}.parquet")
        with atomic_output(target) as stream:
            pq.write_table(rows, stream)
        written[table] = (target, rows.num_rows)
    return written


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="feature-reuse results", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", metavar="EXPERIMENT",
                   help="experiment folder (runs/demo) or its results folder, or a URI of one")
    p.add_argument("--out", required=True, metavar="FOLDER",
                   help="folder (or URI) for <table>.parquet, one file per table; created")
    p.add_argument("--tables", nargs="+", choices=list(results.TABLES),
                   default=list(results.TABLES), help="which tables (default: all three)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        written = export(args.experiment, args.out, tuple(args.tables))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for table, (path, rows) in written.items():
        log.info("%s: %d rows -> %s", table, rows, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
