"""How large a grid the sweep takes, counted before it is built."""

from __future__ import annotations

import pytest

from sweep.grid import GridSpec, build_grid
from sweep.option_checks import MAX_GRID_TRIALS, check_options, grid_size
from sweep.run import build_parser
from trainables.errors import UserError
from trainables.presets import PRESETS


def test_grid_size_is_the_grids_length_seedless_regimes_once():
    spec = GridSpec(PRESETS["demo"], archs=("mobilenet_v2", "resnet18"), seeds=3,
                    train_sizes=("4", "all"))
    assert grid_size(spec) == len(build_grid(spec)) == 2 * 2 * (3 * 3 + 1)


def _args(*argv: str):
    args = build_parser().parse_args(list(argv))
    return args, GridSpec(PRESETS[args.preset], archs=tuple(args.archs or ()) or None,
                          regimes=tuple(args.regimes or ()) or None, seeds=args.seeds,
                          train_sizes=tuple(args.train_sizes or ()) or None)


def test_a_100k_trial_grid_is_taken_and_one_past_the_limit_refused():
    sizes = [str(n) for n in range(1, 26)]
    args, spec = _args("--preset", "smoke", "--archs", "resnet18", "squeezenet1_0", "--regimes",
                       "finetune", "scratch", "--seeds", "1000", "--train-sizes", *sizes)
    assert grid_size(spec) == 100_000
    check_options(args, spec)
    too_many = MAX_GRID_TRIALS // 1000 + 1  # sizes x 1000 seeds, one arch and regime
    args, spec = _args("--preset", "smoke", "--regimes", "scratch", "--seeds", "1000",
                       "--train-sizes", *[str(n) for n in range(1, too_many + 1)])
    with pytest.raises(UserError, match=f"the grid has {too_many * 1000} trials"):
        check_options(args, spec)
