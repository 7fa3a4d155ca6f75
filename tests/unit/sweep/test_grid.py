"""The grid: architecture x regime x train size x seed, its trial ids, what is left to run."""

from __future__ import annotations

import pytest

from sweep.grid import GridSpec, build_grid, split_done, with_ids
from sweep.layout import Experiment
from trainables.config import legacy_trial_id, trial_id
from trainables.errors import UserError
from trainables.presets import PRESETS
from trainables.regimes import REGIMES
from trainables.results.storage import join


def test_demo_grid_is_mobilenet_times_regimes_train_sizes_and_seeds():
    configs = build_grid(GridSpec(PRESETS["demo"]))
    assert [(c.arch, c.regime, c.train_size, c.seed) for c in configs] == [
        ("mobilenet_v2", r, n, s) for r in REGIMES for n in ("10", "all")
        for s in range(1 if REGIMES[r].seedless else 3)]
    assert {(c.epochs, c.train_crop, c.val_resize, c.test_resize, c.preset)
            for c in configs} == {(15, 160, 183, 160, "demo")}
    points = with_ids(configs, "manifest-hash")
    assert len({p.trial_id for p in points}) == 18 + 2, "3 regimes x 2 sizes x 3 seeds + 2 probes"
    assert points[0].trial_id == trial_id(configs[0], "manifest-hash")


def test_grid_runs_the_probe_once_per_train_size_whatever_the_seeds():
    configs = build_grid(GridSpec(PRESETS["demo"]))
    probes = [(c.train_size, c.seed) for c in configs if c.regime == "linear_probe"]
    assert probes == [("10", 0), ("all", 0)]
    assert len(configs) == 3 * 2 * 3 + 2


def test_trial_ids_stay_what_they_were():
    """The id hashes the grid point, the fields the regime reads and the split: the same trial
    keeps its id across versions, so a rerun skips it. Ids of the smoke preset's scratch trials on
    the embedded demo split; `legacy_trial_id` gives those the sweep before issue 22 wrote (every
    field hashed), which the sweep recognises from the rows' config_json. Below "all" those
    trials trained every seed on one subset: policy "split" is that trial; the default per-seed
    subsets change the numbers, so they are new trials."""
    configs = [PRESETS["smoke"].trial("mobilenet_v2", "scratch", seed, "2") for seed in (0, 1)]
    split = [c.replace(subset_seed_policy="split") for c in configs]
    assert [legacy_trial_id(c, "056fcb4752075fa6") for c in split] == ["f18ad3c915169122",
                                                                       "ae82676a78f14b68"]
    assert [trial_id(c, "056fcb4752075fa6") for c in split] == ["d20c0e0c378e8f15", "b4e7ec9277423581"]
    assert not {trial_id(c, "056fcb4752075fa6") for c in configs} & {"d20c0e0c378e8f15", "b4e7ec9277423581"}


def test_grid_crosses_archs_regimes_train_sizes_and_seeds():
    spec = GridSpec(PRESETS["smoke"], archs=("resnet18", "mobilenet_v2"), regimes=("scratch",),
                    seeds=2, train_sizes=("4", "all"))
    configs = build_grid(spec)
    assert len(configs) == 2 * 1 * 2 * 2
    assert {(c.arch, c.train_size, c.seed) for c in configs} == {
        (a, t, s) for a in ("resnet18", "mobilenet_v2") for t in ("4", "all") for s in (0, 1)}
    assert spec.pretrained_archs == []  # scratch only: no weights needed


def test_every_bad_option_is_reported_at_once():
    spec = GridSpec(PRESETS["demo"], archs=("alexnett",), regimes=("sideways",), seeds=0,
                    train_sizes=("zero",))
    problems = spec.problems()
    assert len(problems) == 4
    with pytest.raises(UserError) as info:
        build_grid(spec)
    for needle in ("alexnett", "sideways", "--seeds must be at least 1", "'zero' is invalid"):
        assert needle in str(info.value)


def test_split_done_keeps_only_unfinished_points():
    points = with_ids(build_grid(GridSpec(PRESETS["smoke"], seeds=2)), "h")
    done, todo = split_done(points, {points[1].trial_id, "someone-else"})
    assert done == [points[1]] and todo == points[:1] + points[2:]


def test_experiment_paths_keep_a_uri_query_at_the_end():
    exp = Experiment.at("s3://bucket/runs?endpoint_override=localhost:9000", "demo")
    assert exp.results == "s3://bucket/runs/demo/results?endpoint_override=localhost:9000"
    assert join("/a/b/", "c") == "/a/b/c"
