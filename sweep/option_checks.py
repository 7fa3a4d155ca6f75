"""The sweep CLI's numbers and names, refused before any work: NaN, infinities, negatives, names
that are not one plain folder, grids too large to run.

How large a grid can be (`MAX_GRID_TRIALS`) is measured, not guessed: docs/sweep.md ("Large
grids") gives what the driver does per trial before Ray starts (the grid, its trial ids, the
dry-run listing, the order, Tune's parameter space), timed with `--dry-run` at 100,000 trials.
"""

from __future__ import annotations

import argparse

from sweep.grid import MAX_SEED, GridSpec
from trainables import presets as options
from trainables.errors import UserError
from trainables.regimes import REGIMES

MAX_SEEDS = 1000
MAX_GRID_TRIALS = 200_000
"""Twice the 100k-trial studies results compaction is built for. Beyond this a grid is a typo
(`--seeds 1000 --train-sizes 1 2 ... 50`): the driver alone would take minutes and gigabytes
to plan it, and Ray Tune keeps a record of every trial in memory for the whole sweep."""


def grid_size(spec: GridSpec) -> int:
    """The number of trials `spec` asks for (seedless regimes run seed 0 only), counted without
    building the grid; unknown regimes count as seeded (they are refused elsewhere)."""
    seeds = max(spec.resolved_seeds, 0)
    per_regime = sum(1 if r in REGIMES and REGIMES[r].seedless else seeds
                     for r in spec.resolved_regimes)
    return len(spec.resolved_archs) * len(spec.resolved_train_sizes) * per_regime


def check_options(args: argparse.Namespace, spec: GridSpec) -> None:
    """Refuse bad numbers, paths and names with one UserError naming the option."""
    for flag, value in (("--storage", args.storage), ("--data", args.data), ("--ood", args.ood)):
        options.path_option(flag, value)
    if args.name is not None:
        options.experiment_name("--name", args.name)
    if args.address is not None:
        options.text_option("--address", args.address)
        if not args.address.strip():
            raise UserError("--address is empty. Fix: pass 'auto' on a cluster node, or "
                            "HOST:PORT of the head, or leave it out for a local Ray")
    if args.gpu_memory_gb is not None:
        options.finite("--gpu-memory-gb", args.gpu_memory_gb, 0, above=True, example="80")
    options.finite("--progress-interval", args.progress_interval, 0, above=True, example="30")
    options.whole("--split-seed", args.split_seed, 0, MAX_SEED)
    options.whole("--max-failures", args.max_failures, 0)
    options.finite("--checkpoint-every", args.checkpoint_every, 0, example="5")
    if spec.resolved_seeds > MAX_SEEDS:  # below 1 and out-of-range seeds: GridSpec.problems
        options.whole("--seeds", spec.resolved_seeds, 1, MAX_SEEDS)
    n = grid_size(spec)
    if n > MAX_GRID_TRIALS:
        raise UserError(f"the grid has {n} trials (archs x regimes x train sizes x seeds), more "
                        f"than {MAX_GRID_TRIALS}. Fix: fewer seeds or train sizes, or split the "
                        "study into several sweeps")
