"""Fractional GPUs on a simulated two-node Ray cluster (ray.cluster_utils.Cluster).

The GPU is logical (declared with num_gpus=1; there is no CUDA here): what is tested is Ray's
scheduling of the sweep's resource requests, and the GPU preflight. A CPU-only head node and a
worker with one GPU and plenty of CPUs, so that the GPU is the binding constraint: 0.25-GPU
trials must run four at a time on that one GPU, never five, and never on the head. Spreading
over the GPUs of a multi-GPU node: tests/integration/test_gpu_spread.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sweep.resources import CUDA_CONTEXT_GB, HEADROOM, plan_resources, ray_cluster_info
from tests.integration.conftest import sweep_on_logical_gpus
from trainables.archs import ARCHS
from trainables.device import LOGICAL_GPUS_ENV

pytestmark = pytest.mark.slow
WORKER_CPUS = 8


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 0,
                                                      "include_dashboard": False,
                                                      "object_store_memory": 100 * 2**20})
    gpu_node = c.add_node(num_cpus=WORKER_CPUS, num_gpus=1, object_store_memory=100 * 2**20)
    ray.init(address=c.address, log_to_driver=False, logging_level="WARNING")
    c.wait_for_nodes()
    yield c, gpu_node.node_id
    ray.shutdown()
    c.shutdown()


def hold_until_four_started(config, folder: str):
    """A stand-in trial: announce its start, wait (up to 60 s) until four trials have started,
    then hold a moment and report what Ray gave it."""
    import ray
    from ray import tune

    start = time.time()
    Path(folder, f"{config['point']['trial_id']}.start").write_text(str(start))
    deadline = start + 60
    while len(list(Path(folder).glob("*.start"))) < 4 and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    tune.report({"start": start, "end": time.time(), "waited_out": time.time() > deadline,
                 "node_id": ray.get_runtime_context().get_node_id(),
                 "gpu_ids": [str(g) for g in ray.get_gpu_ids()]})


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = best = 0
    for _, step in events:
        running += step
        best = max(best, running)
    return best


def test_four_quarter_gpu_trials_share_one_gpu_and_a_fifth_waits(cluster, tmp_path):
    from ray import tune

    _, gpu_node = cluster
    info = ray_cluster_info(timeout_s=30)
    assert (info.gpus, info.cpus) == (1.0, 2 + WORKER_CPUS)
    # the GPU node's CUDA facts were read there, and found what is here: no CUDA behind the logical GPU
    assert [r.node_id for r in info.gpu_nodes] == [gpu_node]
    assert info.gpu_nodes[0].error is None and not info.gpu_nodes[0].facts["usable"]
    # "auto" for a GPU just big enough for four mobilenet_v2 trials (registry estimate, headroom)
    four = 4 * (ARCHS["mobilenet_v2"].peak_memory_gb * HEADROOM + CUDA_CONTEXT_GB) + 0.1
    plan = plan_resources(["mobilenet_v2"], info, None, gpu_memory_gb=four)
    assert plan.for_arch("mobilenet_v2").bundle() == {"CPU": 1.0, "GPU": 0.25}

    folder = tmp_path / "starts"
    folder.mkdir()
    points = [{"trial_id": f"t{i}", "trial": {"arch": "mobilenet_v2"}} for i in range(5)]
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(hold_until_four_started, folder=str(folder)), plan),
        param_space={"point": tune.grid_search(points)},
        run_config=tune.RunConfig(storage_path=str(tmp_path / "ray"), verbose=0))
    grid = tuner.fit()
    assert not grid.errors
    reports = [r.metrics for r in grid]
    assert len(reports) == 5
    assert {r["node_id"] for r in reports} == {gpu_node}, "a GPU trial ran on the CPU-only head"
    assert {tuple(r["gpu_ids"]) for r in reports} == {("0",)}, "all trials share the one GPU"
    first_four = sorted(reports, key=lambda r: r["start"])[:4]
    assert not any(r["waited_out"] for r in first_four), "four trials never ran at once"
    assert max_overlap([(r["start"], r["end"]) for r in reports]) == 4


def test_sweep_refuses_a_gpu_node_where_cuda_is_unusable(cluster, make_pool, tmp_path, capsys,
                                                        monkeypatch):
    """The GPU preflight: one task on the GPU node finds no CUDA behind Ray's GPU (as a
    node without GPU passthrough or with too old a driver would), so the sweep stops before any
    trial, naming the node and the cause, instead of training on CPUs for hours."""
    from sweep.run import main

    monkeypatch.delenv(LOGICAL_GPUS_ENV, raising=False)
    code = main(["--preset", "smoke", "--data", str(make_pool({"a": 10, "b": 10})),
                 "--train-sizes", "4", "--regimes", "scratch", "--seeds", "1",
                 "--storage", str(tmp_path / "runs"), "--name", "nocuda", "--gpu-memory-gb", "7"])
    err = capsys.readouterr().err
    assert code == 2
    assert "GPU node" in err and "1 GPU" in err and "CUDA is unusable there" in err
    assert "no NVIDIA driver" in err and "--gpus all" in err
    assert not (tmp_path / "runs" / "nocuda" / "results" / "trials").exists(), "no trial may run"


def test_sweep_cli_packs_real_trials_on_the_gpu_node(cluster, make_pool, tmp_path, torch_home,
                                                      capsys, monkeypatch):
    """The real CLI and trainable (smoke preset) with --gpus-per-trial auto: each trial asks
    for a quarter GPU and lands on the GPU node's GPU 0. The GPU is logical, so
    FEATURE_REUSE_LOGICAL_GPUS lets the trials train on the CPU (and say so on their rows)."""
    _, gpu_node = cluster
    four = 4 * (ARCHS["mobilenet_v2"].peak_memory_gb * HEADROOM + CUDA_CONTEXT_GB) + 0.1
    code, trials, finals = sweep_on_logical_gpus(
        monkeypatch, make_pool({"a": 10, "b": 10}), tmp_path / "runs", "gpu",
        "--seeds", "2", "--gpu-memory-gb", f"{four:.2f}")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "mobilenet_v2 1 CPU + 0.25 GPU" in out
    assert "logical GPUs only" in out  # the preflight's note
    assert "memory check skipped: no GPU node with usable CUDA" in out  # the table's estimates kept
    assert len(trials) == 2 and {t["status"] for t in trials} == {"ok"}
    assert len(finals) == 2
    assert {(r["node_id"], r["gpu_ids"]) for r in finals} == {(gpu_node, "0")}
