"""Merge a results root's per-trial Parquet files into a few large files per table.

    python -m sweep.compact [--results runs/demo/results] [--full]

A sweep writes one file per trial per table; at 100k trials that is 300k small files, and
reading them costs more than analysing them. The sweep compacts its results itself after its
last trial; run this on results written by other means (``python -m trainables.train --out``,
an interrupted sweep) or with ``--full`` to merge every part into one. Nothing is lost or
duplicated: a trial's rows come from its newest file, so a trial written again after a
compaction replaces its compacted rows (rules and crash safety: trainables/results/compaction.py). Run
it when no sweep is writing into these results. Exit status: 0 done, 2 bad options.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time

from trainables.errors import UserError
from trainables.results import compaction, storage
from trainables.results import tables as results

DEFAULT_RESULTS = "runs/demo/results"
log = logging.getLogger(__name__)


def compact_results(root: str, full: bool = False) -> list[compaction.CompactionResult]:
    """Compact every table of a results root (see the module docstring)."""
    import pyarrow.fs as pafs

    fs, base = storage.resolve(root)
    if "://" not in root and fs.get_file_info(base).type != pafs.FileType.Directory:
        raise UserError(f"--results {root}: no such folder; pass the results root a sweep wrote "
                        "(<storage>/<name>/results)")
    return [compaction.compact_folder(storage.join(root, table), schema, full=full)
            for table, schema in results.TABLES.items()]


def compact_after_sweep(results_root: str) -> None:
    """The sweep's last step. A failure is a warning, never fatal: the per-trial files stay
    valid and `python -m sweep.compact` retries."""
    t0 = time.perf_counter()
    try:
        done = compact_results(results_root)
    except Exception as exc:  # results stay readable as they are
        log.warning("compacting the results failed (%s: %s); they stay readable as they are. "
                    "Retry with: python -m sweep.compact --results %s", type(exc).__name__, exc,
                    shlex.quote(results_root))
        return
    files = sum(r.merged_files for r in done)
    if files or any(r.merged_parts for r in done):
        log.info("compacted %d result file(s) into %d in %.1f s", files,
                 sum(r.part is not None for r in done), time.perf_counter() - t0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sweep.compact", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=DEFAULT_RESULTS,
                   help=f"results root: a local folder or URI (default {DEFAULT_RESULTS})")
    p.add_argument("--full", action="store_true",
                   help="merge every compacted part too, leaving one file per table (default: "
                        "merge the new files and the newest parts of similar size)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    try:
        done = compact_results(args.results, full=args.full)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for r in done:
        print(r.describe())
    print(f"compacted in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
