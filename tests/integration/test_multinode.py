"""A real two-node Ray cluster (tests/integration/multinode.py): `ray start --head` and
`ray start --address` in two network namespaces joined by a veth pair, each node with its own
mount namespace, token authentication on.

The worker sees neither the head's data folder nor its storage folder (both lie in the head's
private folder, covered on the worker), and neither node has the project's source: it reaches
them as the job's runtime_env (`ray job submit --working-dir .`). The sweep is submitted to the
head. What must hold:

- trials run on both nodes, and the trials table records each trial's node;
- every row lands in the head's results (the head serves its storage folder through Ray);
- the images reach the worker through Ray's object store, checked against the manifest;
- killing the worker's raylet while a trial sleeps there after its first checkpointed epoch makes
  Ray retry that trial on the head from its checkpoint: nothing lost, nothing duplicated;
- the report on the head draws Grad-CAM without being told where the data is.

Small for CI on 2 cores: the smoke preset (2 epochs, 64 px), mobilenet_v2 fine-tuned (the bundled
ImageNet weights), 3 seeds, 20 generated images. About 2-3 minutes, most of it Ray's start-up.
Skipped, with the reason, where network/mount namespaces cannot be created (not root, no `ip`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, write_image
from tests.integration.multinode import TwoNodeCluster, unavailable
from trainables.presets import PRESETS
from trainables.results import tables as results

REASON = unavailable()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=str(REASON))]

EPOCHS = PRESETS["smoke"].overrides["epochs"]
SEEDS = 3
NAME = "mn"
JOB_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def cluster():
    # Head: 1 CPU, worker: 2 CPUs, so that 3 one-CPU trials start at once, two on the worker.
    with TwoNodeCluster.start(head_cpus=1, worker_cpus=2) as c:
        yield c


@pytest.fixture(scope="module")
def head_paths(cluster) -> dict[str, Path]:
    """Data and storage in the head's private folder (covered on the worker)."""
    data = cluster.head.home / "data" / "pool"
    for ci, cls in enumerate(("ants", "bees")):
        for i in range(10):
            write_image(data / cls / f"{i}.jpg", (200 * ci + 20, 60, 230 - 200 * ci), seed=i)
    common = cluster.base / "common"  # test plumbing both nodes see (the fault's marker)
    common.mkdir()
    return {"data": data, "storage": cluster.head.home / "runs", "common": common}


def test_two_nodes_each_see_only_their_own_folders(cluster, head_paths):
    code = f"""
import json, os, socket
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

@ray.remote(num_cpus=0)
def look():
    return {{"node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(),
            "ip": ray.util.get_node_ip_address(),
            "data": os.path.isdir({str(head_paths["data"])!r}),
            "source": os.path.isfile({str(PROJECT_ROOT / "sweep" / "run.py")!r})}}

nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
print(json.dumps(ray.get([look.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, False))
                          .remote() for n in nodes])))
"""
    seen = {r["node"]: r for r in json.loads(cluster.python("head", code).strip().splitlines()[-1])}
    head, worker = seen[cluster.head.node_id], seen[cluster.worker.node_id]
    assert (head["host"], head["ip"]) == ("fr-head", cluster.head.ip)
    assert (worker["host"], worker["ip"]) == ("fr-worker", cluster.worker.ip)
    assert head["data"] and not worker["data"], "the worker must not see the head's data folder"
    assert not head["source"] and not worker["source"], "nodes must get the code from the job"


def trials_rows(results_root: Path) -> list[dict]:
    if not (results_root / "trials").is_dir():
        return []
    return results.read_table(str(results_root), "trials").to_pylist()


def wait_for(condition, job: subprocess.Popen, cluster: TwoNodeCluster, what: str,
             timeout: float = JOB_TIMEOUT_S) -> None:
    deadline = time.time() + timeout
    while not condition():
        if job.poll() is not None:
            raise AssertionError(f"the job ended ({job.returncode}) before {what}\n{cluster.logs()}")
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{cluster.logs()}")
        time.sleep(0.5)


def test_sweep_job_uses_both_nodes_and_survives_losing_the_worker(cluster, head_paths, torch_home,
                                                                   tmp_path):
    storage, marker = head_paths["storage"], head_paths["common"] / "fault-fired"
    results_root = storage / NAME / "results"
    # The first trial to train epoch 2 on the worker sleeps there (after its epoch-1 checkpoint)
    # until the test kills the worker's raylet; the marker keeps the retry from sleeping again.
    fault = f"sleep@host=fr-worker,epoch=2,where=train,seconds=900,once={marker}"
    runtime_env = {"env_vars": {"TORCH_HOME": str(torch_home), "FEATURE_REUSE_FAULT": fault}}
    t0 = time.time()
    job = cluster.popen("head", [
        "ray", "job", "submit", f"--address={cluster.dashboard_url}", "--working-dir", ".",
        f"--runtime-env-json={json.dumps(runtime_env)}", "--",
        "python", "-m", "sweep.run", "--preset", "smoke", "--archs", "mobilenet_v2",
        "--regimes", "finetune", "--seeds", str(SEEDS), "--data", str(head_paths["data"]),
        "--storage", str(storage), "--name", NAME, "--keep-models", "best",
        "--progress-interval", "5", "--checkpoint-every", "0",
    ], log=tmp_path / "job.log", node_view=False)
    try:
        on_worker = lambda: any(r["node"] == cluster.worker.node_id  # noqa: E731
                                for r in trials_rows(results_root))
        wait_for(lambda: on_worker() and marker.exists(), job, cluster,
                 "a trial finished on the worker and another one sleeps there")
        before = trials_rows(results_root)
        epochs_before = len(results.read_table(str(results_root), "epochs"))
        t_kill = time.time()
        cluster.kill_raylet("worker")
        code = job.wait(JOB_TIMEOUT_S)
    finally:
        if job.poll() is None:
            job.kill()
    t_end = time.time()
    log = (tmp_path / "job.log").read_text()
    assert code == 0, f"the sweep job failed\n{log[-6000:]}\n{cluster.logs()}"

    trials = {r["trial_id"]: r for r in trials_rows(results_root)}
    assert len(trials) == SEEDS and {r["status"] for r in trials.values()} == {"ok"}
    nodes = {cluster.head.node_id: "head", cluster.worker.node_id: "worker"}
    table = sorted((r["seed"], nodes[r["node"]], r["hostname"], r["resumed_from_epoch"])
                   for r in trials.values())
    print("\ntrial-to-node table (seed, node, hostname, resumed_from_epoch):")
    for line in table:
        print("  ", line)
    epochs = results.read_table(str(results_root), "epochs").to_pylist()
    print(f"rows before the kill: {len(before)} trials ({sorted(nodes[r['node']] for r in before)}),"
          f" {epochs_before} epochs; after: {len(trials)} trials, {len(epochs)} epochs; "
          f"job {t_end - t0:.0f} s, {t_end - t_kill:.0f} s of it after the kill")
    assert {node for _, node, _, _ in table} == {"head", "worker"}, table
    assert all(host == f"fr-{node}" for _, node, host, _ in table), table
    resumed = [r for r in trials.values() if r["resumed_from_epoch"]]
    assert len(resumed) == 1, f"exactly the killed trial resumes: {table}"
    assert nodes[resumed[0]["node"]] == "head" and resumed[0]["resumed_from_epoch"] == EPOCHS - 1
    assert {r["trial_id"] for r in before} < set(trials)
    assert resumed[0]["trial_id"] not in {r["trial_id"] for r in before}

    keys = [(e["trial_id"], e["epoch"]) for e in epochs]
    assert len(keys) == len(set(keys)) == SEEDS * EPOCHS, "an epoch row was lost or duplicated"
    predictions = results.read_table(str(results_root), "predictions").to_pylist()
    per_trial = {tid: sum(p["trial_id"] == tid for p in predictions) for tid in trials}
    assert len(set(per_trial.values())) == 1 and min(per_trial.values()) > 0, per_trial
    experiment = storage / NAME
    leftovers = [p for p in experiment.rglob("*") if p.name.startswith((".tmp-", ".served-"))]
    assert leftovers == [], "temporary files left behind"
    assert list(experiment.glob("ray/*/checkpoint_*")) == [], "finished trials keep no checkpoints"
    assert list(experiment.glob("resume/*.json")) == []
    assert "served to the other nodes through Ray" in log
    assert "handed to trials through Ray's object store" in log


def test_report_on_the_head_draws_gradcam_without_the_data_path(cluster, head_paths, torch_home,
                                                                tmp_path):
    """The sweep records where its images were (trainables.data.manifest.DATA_ROOTS_FILE, issue 12);
    the report on the head finds them there and checks them against the manifest."""
    results_root = head_paths["storage"] / NAME / "results"
    if not (results_root / "trials").is_dir():
        pytest.skip("needs the sweep of the test above")
    out = tmp_path / "report"
    proc = cluster.run("head", [sys.executable, "-m", "analysis.report", "--results",
                                str(results_root), "--out", str(out), "--gradcam-n", "2"],
                       node_view=False, env={"TORCH_HOME": str(torch_home)}, timeout=600)
    figures = sorted(p.name for p in out.glob("gradcam_*.png"))
    assert figures == ["gradcam_mobilenet_v2.png"], proc.stdout[-3000:] + proc.stderr[-3000:]
