"""The grid, preflight and --dry-run: everything the sweep decides before Ray starts."""

from __future__ import annotations

import signal
import sys
import time

import pytest

from sweep.grid import GridSpec, build_grid, split_done, with_ids
from sweep.layout import Experiment
from sweep.preflight import check_storage, run_preflight
from trainables.config import trial_id
from trainables.errors import UserError
from trainables.presets import PRESETS
from trainables.regimes import REGIMES
from trainables.results.storage import join


@pytest.fixture
def pool(make_pool):
    return make_pool({"a": 10, "b": 10})


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


def test_preflight_builds_the_manifest_once_and_writes_it(pool, tmp_path, torch_home):
    exp = Experiment.at(str(tmp_path / "runs"), "x")
    spec = GridSpec(PRESETS["smoke"], train_sizes=("4",))
    ready = run_preflight(spec, exp, str(tmp_path / "runs"), str(pool), None)
    assert (tmp_path / "runs" / "x" / "manifest.json").read_text() == ready.manifest.to_json()
    assert len(ready.grid) == len(ready.todo) == 3 and not ready.done
    assert not list((tmp_path / "runs" / "x").glob(".probe-*")), "the storage probe was left"


def test_preflight_refuses_a_different_split_in_the_same_experiment(pool, tmp_path, torch_home):
    exp = Experiment.at(str(tmp_path / "runs"), "x")
    spec = GridSpec(PRESETS["smoke"], regimes=("scratch",))
    run_preflight(spec, exp, "runs", str(pool), None, split_seed=0)
    with pytest.raises(UserError, match="different split"):
        run_preflight(spec, exp, "runs", str(pool), None, split_seed=1)


def test_unreachable_storage_is_reported_within_the_timeout(tmp_path):
    # a port nobody listens on: the S3 client retries; the probe gives up on time
    uri = "s3://bucket/runs?endpoint_override=127.0.0.1:9&scheme=http"
    start = time.monotonic()
    problem = check_storage(Experiment.at(uri, "x"), uri, timeout_s=3)
    assert time.monotonic() - start < 15
    assert problem is not None and problem.startswith(f"--storage {uri}")


def test_preflight_failures_come_back_in_seconds_all_in_one_message(sweep_main, tmp_path,
                                                                    capsys, monkeypatch):
    """Missing data, missing weights and unwritable storage: one message, exit 2, no Ray."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))  # no weights cached
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    start = time.monotonic()
    code = sweep_main(["--preset", "smoke", "--archs", "resnet18", "--data", str(tmp_path / "nope"),
                       "--storage", str(blocker)])
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert code == 2, err
    assert elapsed < 30, f"preflight took {elapsed:.0f} s"
    assert "preflight found 3 problems" in err
    for needle in (str(tmp_path / "nope"), "resnet18-", "--storage", "Fix:"):
        assert needle in err
    assert "Traceback" not in err
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()


def test_dry_run_prints_grid_and_resources_and_writes_nothing(sweep_main, pool, tmp_path,
                                                             capsys):
    storage = tmp_path / "runs"
    code = sweep_main(["--preset", "smoke", "--data", str(pool), "--train-sizes", "4",
                       "--storage", str(storage), "--gpus-per-trial", "0.25", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0, out
    table = [line for line in out.splitlines() if line.split()[1:2] == ["mobilenet_v2"]]
    assert len(table) == 3
    assert all("1 CPU + 0.25 GPU" in line and line.endswith("to run") for line in table)
    assert "4 trials per GPU" in out
    assert not storage.exists()


def test_sigterm_stops_a_sweep_like_ctrl_c_and_the_old_handler_returns():
    import os

    from sweep.ray_session import sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal arrives within this
    assert signal.getsignal(signal.SIGTERM) is before
