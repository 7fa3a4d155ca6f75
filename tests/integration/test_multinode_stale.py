"""A two-node test killed with SIGKILL (a lost CI job, a developer's kill -9) gets no teardown:
its network namespaces, the Ray processes in them and its folder stay behind. The next run of
the harness removes exactly those at its start (tests/integration/netns.py: every name carries
the creating pid, and only names whose pid is gone are swept); a live run's namespace stays.

About a minute on 2 cores, most of it the killed run's `ray start` on its two nodes.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.integration.multinode import TwoNodeCluster
from tests.integration.netns import _ip, namespace_pids, owned_name, unavailable

REASON = unavailable()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=str(REASON))]

CHILD = """
import time
from tests.integration.multinode import TwoNodeCluster
with TwoNodeCluster.start() as cluster:
    print(cluster.head.netns, cluster.worker.netns, cluster.base, flush=True)
    time.sleep(600)
"""


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def ray_pids(netns: str) -> list[int]:
    pids = []
    for pid in namespace_pids(netns):
        try:
            exe = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if exe.endswith((b"/raylet", b"/gcs_server")):
            pids.append(pid)
    return pids


def test_a_killed_run_leaves_namespaces_and_ray_that_the_next_run_removes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    with open(tmp_path / "child.log", "w") as log:
        child = subprocess.Popen([sys.executable, "-c", CHILD], cwd=PROJECT_ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        ready, _, _ = select.select([child.stdout], [], [], 300)
        line = child.stdout.readline() if ready else ""
        assert line, f"the first run did not start its cluster\n{(tmp_path / 'child.log').read_text()}"
        head_ns, worker_ns, base = line.split()
        ray = {ns: ray_pids(ns) for ns in (head_ns, worker_ns)}
        assert all(ray.values()), f"no Ray in the first run's namespaces: {ray}"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)

    # What the SIGKILL left: nobody cleaned up.
    listed = _ip("netns", "list").stdout
    assert head_ns in listed and worker_ns in listed and Path(base).is_dir()
    assert all(running(pid) for pids in ray.values() for pid in pids)

    live = f"{owned_name('live')}-x"  # a namespace of a run that is still alive (this one)
    _ip("netns", "add", live)
    try:
        with TwoNodeCluster.start(start_ray=False):  # the next run
            listed = _ip("netns", "list").stdout
            assert head_ns not in listed and worker_ns not in listed, listed
            assert live in listed, "a live run's namespace was removed"
        left = [pid for pids in ray.values() for pid in pids if running(pid)]
        assert left == [], f"the killed run's Ray processes are still running: {left}"
        assert not Path(base).exists()
    finally:
        _ip("netns", "del", live, check=False)
