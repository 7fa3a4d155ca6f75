"""Preflight and --dry-run: everything the sweep checks before Ray starts."""

from __future__ import annotations

import sys
import time

import pytest

from sweep.grid import GridSpec
from sweep.layout import Experiment
from sweep.plan import DataChoice
from sweep.preflight import check_storage, run_preflight
from trainables.errors import UserError
from trainables.presets import PRESETS


@pytest.fixture
def pool(make_pool):
    return make_pool({"a": 10, "b": 10})


def test_preflight_builds_the_manifest_once_and_writes_it(pool, tmp_path, torch_home):
    exp = Experiment.at(str(tmp_path / "runs"), "x")
    spec = GridSpec(PRESETS["smoke"], train_sizes=("4",))
    ready = run_preflight(spec, exp, str(tmp_path / "runs"), DataChoice(str(pool)))
    ready.release()
    assert (tmp_path / "runs" / "x" / "manifest.json").read_text() == ready.manifest.to_json()
    assert len(ready.grid) == len(ready.todo) == 3 and not ready.done
    assert not list((tmp_path / "runs" / "x").glob(".probe-*")), "the storage probe was left"


def test_preflight_refuses_a_different_split_in_the_same_experiment(pool, tmp_path, torch_home):
    exp = Experiment.at(str(tmp_path / "runs"), "x")
    spec = GridSpec(PRESETS["smoke"], regimes=("scratch",))
    run_preflight(spec, exp, "runs", DataChoice(str(pool), split_seed=0)).release()
    with pytest.raises(UserError, match="different split"):
        run_preflight(spec, exp, "runs", DataChoice(str(pool), split_seed=1))


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
