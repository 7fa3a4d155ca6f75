"""Fractional trials spread over the GPUs of one simulated 4-GPU node (ray.init(num_gpus=4)).

The GPUs are logical (no CUDA here): what is tested is where trials go. Ray alone gives every
fractional request the fullest GPU that still fits it, so four quarter-GPU trials share GPU 0
while GPUs 1-3 idle; `sweep.resources.spread_trial_gpu` (used by the sweep's trainable) puts
each trial on the least loaded GPU of its node instead.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.integration.conftest import sweep_on_logical_gpus

pytestmark = pytest.mark.slow
NODE_GPUS = 4
NODE_CPUS = 8


@pytest.fixture(scope="module")
def gpu_node():
    import ray

    ray.init(num_cpus=NODE_CPUS, num_gpus=NODE_GPUS, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING", object_store_memory=100 * 2**20)
    yield ray.get_runtime_context().get_node_id()
    ray.shutdown()


def hold_together(config, folder: str, expected: int, spread: bool):
    """A stand-in trial: start, (optionally) take a GPU the way the sweep's trainable does,
    wait until `expected` trials hold theirs at once, report what it got."""
    import ray
    from ray import tune

    from sweep.gpu_spread import spread_trial_gpu, trial_gpu_share

    tid = config["point"]["trial_id"]
    share = trial_gpu_share() if spread else None
    with spread_trial_gpu(share) as gpu_ids:
        Path(folder, f"{tid}.holding").write_text(",".join(gpu_ids))
        deadline = time.time() + 90
        while len(list(Path(folder).glob("*.holding"))) < expected and time.time() < deadline:
            time.sleep(0.1)
        waited_out = time.time() > deadline
        time.sleep(0.5)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    tune.report({"gpu_ids": gpu_ids, "ray_gpu_ids": [str(g) for g in ray.get_gpu_ids()],
                 "visible": visible, "waited_out": waited_out})


def run_stand_ins(tmp_path: Path, n: int, spread: bool) -> list[dict]:
    from ray import tune

    folder = tmp_path / f"hold-{n}-{spread}"
    folder.mkdir()
    points = [{"trial_id": f"t{i}"} for i in range(n)]
    trainable = tune.with_parameters(hold_together, folder=str(folder), expected=n, spread=spread)
    tuner = tune.Tuner(tune.with_resources(trainable, {"cpu": 1, "gpu": 0.25}),
                       param_space={"point": tune.grid_search(points)},
                       run_config=tune.RunConfig(storage_path=str(tmp_path / "ray"), verbose=0,
                                                 name=f"hold-{n}-{spread}"))
    grid = tuner.fit()
    assert not grid.errors
    reports = [r.metrics for r in grid]
    assert len(reports) == n and not any(r["waited_out"] for r in reports), "trials never overlapped"
    return reports


def test_ray_alone_packs_quarter_gpu_trials_onto_gpu_0(gpu_node, tmp_path):
    reports = run_stand_ins(tmp_path, 4, spread=False)
    assert {tuple(r["ray_gpu_ids"]) for r in reports} == {("0",)}


def test_spread_puts_eight_quarter_gpu_trials_two_on_each_gpu(gpu_node, tmp_path):
    reports = run_stand_ins(tmp_path, 8, spread=True)
    used = sorted(r["gpu_ids"][0] for r in reports)
    assert used == ["0", "0", "1", "1", "2", "2", "3", "3"]
    assert all(r["visible"] == r["gpu_ids"][0] for r in reports), \
        "CUDA_VISIBLE_DEVICES must point at the GPU the trial took"
    from sweep.gpu_spread import GpuLedger, ledger_path

    assert GpuLedger(ledger_path(gpu_node)).claims() == {}, "finished trials release their GPU"


def test_a_small_sweep_runs_on_all_four_gpus(gpu_node, make_pool, tmp_path, torch_home, capsys,
                                             monkeypatch):
    """The real CLI and trainable (smoke preset): four quarter-GPU trials on a 4-GPU node run
    one on each GPU (Ray alone would put all four on GPU 0)."""
    code, trials, finals = sweep_on_logical_gpus(
        monkeypatch, make_pool({"a": 10, "b": 10}), tmp_path / "runs", "spread",
        "--seeds", "4", "--gpus-per-trial", "0.25")
    assert code == 0, capsys.readouterr().out
    assert len(trials) == 4 and {t["status"] for t in trials} == {"ok"}
    assert sorted(r["gpu_ids"] for r in finals) == ["0", "1", "2", "3"]
