"""`ray up` for real: cluster.local.yaml launched with Ray's on-premise launcher over SSH, a sweep
on it, `ray down` in the middle of that sweep, `ray up` again, the same command finishing only
what was missing, the report on the head, `ray down`.

The machines are network namespaces on this machine, each with its own SSH server, mount, UTS
and PID namespace (tests/integration/ray_launcher.py): the head (1 CPU), worker1 (2 CPUs) and
worker2, whose Python reports another Ray version. The launcher runs what a user types, from a
git checkout with the project's packages:

    python -m trainables.provenance stamp && ray up -y cluster.yaml
    ray exec cluster.yaml "cd ~/feature-reuse && python -m sweep.run ... --address auto"
    ray exec cluster.yaml "cd ~/feature-reuse && python -m analysis.report --results ..."
    ray exec cluster.yaml "cd ~/feature-reuse && python -m sweep.cluster_nodes stop-workers"
    ray down -y cluster.yaml

`cluster.yaml` here is cluster.local.yaml with exactly these changes (`cluster_config`): the
addresses, the SSH user and the key made for the test, a unique cluster name, and its one
command that needs the network, `pip install -e ~/feature-reuse`, replaced by printing the Ray
version of the environment the machine's ~/.bashrc activates (the project's venv, which the
nodes share with this machine; nothing is installed).

What must hold:
- worker2 never joins: Ray refuses its `ray start` (another Ray version, named with the
  cluster's); the sweep runs on the head and worker1, and its summary names worker2 and why;
- trials run on both of the other nodes, every row lands in the head's storage folder, and
  every row carries the commit stamped in the checkout (the synced code ran, not this one);
- `ray down` while the head's trial sleeps after its first checkpointed epoch, then `ray up`
  and the same command: the finished trials are skipped, the interrupted one continues from its
  checkpoint, no epoch row is lost or duplicated;
- a driver whose Ray version differs from the cluster's is refused with both versions named;
- the report runs on the head; after `stop-workers` (`ray down` of an on-premise cluster stops
  Ray on the head only) and the last `ray down` no Ray process is left on any node, and nothing
  was written outside the test's folders.

Small for CI on 2 cores: the smoke preset (2 epochs, 64 px), mobilenet_v2 from scratch, 3 seeds,
20 generated images. Skipped, with the reason, where namespaces or sshd cannot exist.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT, write_image
from tests.integration.netns import TMP, ray_ssh_control_dir
from tests.integration.ray_launcher import SshNodes
from tests.integration.ssh_machine import ray_processes, unavailable
from trainables.results import tables as results

REASON = unavailable()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=str(REASON))]

CLUSTER_LOCAL = PROJECT_ROOT / "cluster.local.yaml"
INSTALL = 'pip install --quiet -e ~/feature-reuse"[cluster]"'
ENV_CHECK = "python -c 'import ray, sys; print(sys.prefix, \"ray\", ray.__version__)'"
OTHER_RAY = "2.59.0"
NAME = "up"
SEEDS = 3
SWEEP_TIMEOUT_S = 420
SWEEP = ("cd ~/feature-reuse && {env}python -m sweep.run --preset smoke --archs mobilenet_v2 "
         "--regimes scratch --seeds 3 --data ~/pool --name up --keep-models none "
         "--checkpoint-every 0 --progress-interval 5 --address auto")
FAULT = "FEATURE_REUSE_FAULT=sleep@host=fr-head,epoch=2,where=train,seconds=900,once=$HOME/fault "


def cluster_config(nodes: SshNodes) -> dict:
    """cluster.local.yaml as this test launches it (see the module docstring)."""
    config = yaml.safe_load(CLUSTER_LOCAL.read_text())
    setup = config["setup_commands"]
    assert setup.count(INSTALL) == 1, f"cluster.local.yaml must install with `{INSTALL}`"
    setup[setup.index(INSTALL)] = ENV_CHECK
    config["cluster_name"] = nodes.base.name
    config["provider"].update(head_ip=nodes.head.ip, worker_ips=[w.ip for w in nodes.workers])
    config["auth"] = {"ssh_user": "root", "ssh_private_key": str(nodes.key)}
    return config


def other_ray(folder: Path) -> None:
    """A sitecustomize that makes this Python report Ray OTHER_RAY (what a machine with another
    Ray installed reports; installing a second Ray would take ~1 GB and the network)."""
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(f"import ray\nray.__version__ = {OTHER_RAY!r}\n")


@pytest.fixture(scope="module")
def nodes():
    with SshNodes.start(cpus=[1, 2, 1],
                        bashrc_extra={"worker2": "export PYTHONPATH=$HOME/other-ray"}) as n:
        other_ray(n.node("worker2").folder / "other-ray")
        other_ray(n.node("head").folder / "other-ray")  # for the driver refused below
        for ci, cls in enumerate(("ants", "bees")):
            for i in range(10):
                write_image(n.head.folder / "pool" / cls / f"{i}.jpg",
                            (200 * ci + 20, 60, 230 - 200 * ci), seed=i)
        yield n


def git_checkout(nodes: SshNodes) -> None:
    """The user's checkout is a git repository (the stamp names its commit)."""
    env = {"HOME": str(nodes.launcher_home), "PATH": "/usr/bin:/bin", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for argv in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "checkout"]):
        subprocess.run(["git", *argv], cwd=nodes.checkout, env=env, check=True, timeout=60)


def head_rows(nodes: SshNodes, table: str = "trials") -> list[dict]:
    root = nodes.head.folder / "feature-reuse-runs" / NAME / "results"
    if not (root / table).is_dir():
        return []
    return results.read_table(str(root), table).to_pylist()


def outside_entries(nodes: SshNodes) -> set[str]:
    """What Ray's launcher, Ray on a node or an SSH server would leave outside the test's folders
    if a path escaped them (other runs on this machine may add files of their own, so only these
    names count). The run's own SSH control folder is one of its folders: teardown removes it."""
    home, found = Path.home(), set()
    own = ray_ssh_control_dir(nodes.user)
    for p in TMP.glob("*"):
        if p.name.startswith(("ray_ssh", "ray-config", "ray-bootstrap")) and p != own:
            found.add(str(p))
    found.update(str(p) for p in (TMP / "ray").glob(f"cluster-{nodes.base.name}*"))
    for folder in (Path("/var/tmp"), Path("/dev/shm")):
        found.update(str(p) for p in folder.glob("*") if "ray" in p.name or "ssh" in p.name)
    for name in (".ssh", ".ray/auth_token", "ray_bootstrap_config.yaml", "ray_bootstrap_key.pem",
                 "feature-reuse", "feature-reuse-runs", "report", "pool", "fault", "r"):
        if (home / name).exists():
            found.add(f"{home / name} (modified {(home / name).stat().st_mtime})")
    return found


def ray_up_until_worker1_joins(nodes: SshNodes, config: Path, log: Path, tries: int = 3) -> None:
    """`ray up`, until worker1's Ray runs. On a loaded machine its `ray start` can fail (the
    raylet gives up waiting for the head), and the autoscaler then leaves it out; the fix the
    sweep names is to run `ray up` again."""
    worker1 = nodes.node("worker1")
    for _ in range(tries):
        nodes.launcher(["ray", "up", "-y", str(config)], log, timeout=400)
        deadline = time.time() + 300
        while time.time() < deadline and nodes.worker_start(worker1) is None:
            time.sleep(1)
        if nodes.worker_start(worker1) == "succeeded":
            return
    raise AssertionError(f"worker1 never joined in {tries} `ray up`s\n{log.read_text()[-5000:]}")


def test_ray_up_sweep_ray_down_midway_ray_up_rerun_report_down(nodes, tmp_path):
    log = tmp_path / "launcher.log"
    before = outside_entries(nodes)
    config = nodes.write_cluster_file(cluster_config(nodes))
    git_checkout(nodes)
    t0 = time.time()
    nodes.launcher(["python", "-m", "trainables.provenance", "stamp"], log)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=nodes.checkout, capture_output=True,
                            text=True, check=True).stdout.strip()[:12]
    ray_up_until_worker1_joins(nodes, config, log)
    t_up = time.time()

    # The first run. The trial on the head sleeps after its first checkpointed epoch, holding
    # the head's one CPU: the other two run on worker1.
    # Then ray down, while that trial sleeps.
    first = nodes.launcher_popen(["ray", "exec", str(config), SWEEP.format(env=FAULT)],
                                 tmp_path / "sweep1.log")
    marker = nodes.head.folder / "fault"
    deadline = time.time() + SWEEP_TIMEOUT_S
    while not (marker.exists() and len(head_rows(nodes)) == SEEDS - 1):
        assert first.poll() is None and time.time() < deadline, (
            f"the sweep ended or stalled before two trials finished and one slept on the head\n"
            f"{(tmp_path / 'sweep1.log').read_text()[-6000:]}\n{nodes.logs()}")
        time.sleep(1)
    before_down = head_rows(nodes)
    t_down = time.time()
    nodes.launcher(["ray", "down", "-y", str(config)], log)
    first.wait(timeout=180)
    t_driver_gone = time.time()
    first_log = (tmp_path / "sweep1.log").read_text()

    # ray up again, and the same command: only the interrupted trial runs.
    nodes.launcher(["ray", "up", "-y", str(config)], log, timeout=400)
    rerun = nodes.launcher(["ray", "exec", str(config), SWEEP.format(env=FAULT)], log,
                           timeout=SWEEP_TIMEOUT_S)
    t_rerun = time.time()
    refused = nodes.launcher(["ray", "exec", str(config), SWEEP.format(
        env="PYTHONPATH=~/other-ray ") + " --dry-run; echo sweep exit $?"], log)
    report = nodes.launcher(["ray", "exec", str(config), "cd ~/feature-reuse && python -m "
                             f"analysis.report --results ~/feature-reuse-runs/{NAME}/results "
                             "--out ~/report --no-gradcam"], log, timeout=300)
    stopped = nodes.launcher(["ray", "exec", str(config), "cd ~/feature-reuse && python -m "
                              "sweep.cluster_nodes stop-workers"], log)
    nodes.launcher(["ray", "down", "-y", str(config)], log)
    deadline, left = time.time() + 60, {}
    while time.time() < deadline:
        left = {n.role: ray_processes(n.netns) for n in nodes.nodes}
        if not any(left.values()):
            break
        time.sleep(1)
    t_end = time.time()

    trials = {r["trial_id"]: r for r in head_rows(nodes)}
    epochs = head_rows(nodes, "epochs")
    hosts = sorted((r["seed"], r["hostname"], r["resumed_from_epoch"]) for r in trials.values())
    print(f"\nrows per node (seed, hostname, resumed_from_epoch): {hosts}")
    print(f"before ray down: {len(before_down)} trials; after: {len(trials)} trials, "
          f"{len(epochs)} epoch rows")
    print(f"launch-run-teardown {t_end - t0:.0f} s: ray up {t_up - t0:.0f} s, first run until "
          f"ray down {t_down - t_up:.0f} s, driver gone {t_driver_gone - t_down:.0f} s after ray "
          f"down, ray up + rerun {t_rerun - t_driver_gone:.0f} s, refusal + report + stop-workers + "
          f"ray down {t_end - t_rerun:.0f} s")

    worker2 = nodes.node("worker2").ip
    assert worker2 in first_log and OTHER_RAY in first_log, first_log[-4000:]
    assert f"{worker2}: Ray refused it" in rerun.stdout, rerun.stdout[-4000:]
    assert "grid: 3 trials (2 finished earlier, 1 to run)" in rerun.stdout, rerun.stdout[-4000:]
    assert "trials: 3/3 ok" in rerun.stdout

    assert len(trials) == SEEDS and {r["status"] for r in trials.values()} == {"ok"}
    assert sorted(r["hostname"] for r in before_down) == ["fr-worker1", "fr-worker1"]
    resumed = [r for r in trials.values() if r["resumed_from_epoch"]]
    assert len(resumed) == 1 and resumed[0]["resumed_from_epoch"] == 1, hosts
    assert f"seed {resumed[0]['seed']}, epoch 2" in marker.read_text(), (
        "the interrupted trial trained its first epoch on the head")
    assert {r["code_version"] for r in trials.values()} == {commit}
    keys = [(e["trial_id"], e["epoch"]) for e in epochs]
    assert len(keys) == len(set(keys)) == SEEDS * 2, "an epoch row was lost or duplicated"

    assert "sweep exit 2" in refused.stdout, refused.stdout[-3000:]
    assert f"runs Ray {__import__('ray').__version__}" in refused.stdout, refused.stdout[-3000:]
    assert f"this machine has Ray {OTHER_RAY}" in refused.stdout
    assert "Traceback" not in refused.stdout
    assert (nodes.head.folder / "report" / "report.html").is_file(), report.stdout[-3000:]

    for worker in nodes.workers:
        assert f"{worker.ip}: ray stopped" in stopped.stdout, stopped.stdout[-3000:]
    assert not any(left.values()), f"Ray processes left after ray down: {left}"
    assert outside_entries(nodes) == before, "the launch wrote outside the test's folders"
