"""Two real Ray nodes on one machine: each in its own network, mount and UTS namespace.

    with TwoNodeCluster.start(base, hide_from_worker=[data, storage]) as cluster:
        cluster.run("head", ["ray", "job", "submit", ...])

`ray start --head` runs in one network namespace and `ray start --address=HEAD:6379` in
another, joined by a veth pair with addresses only inside the two namespaces (10.X.Y.1 and
10.X.Y.2, random X and Y). Each node's processes also get their own mount namespace, in which
the other node's private folder (and any folder the test names) is covered by an empty tmpfs,
their own /dev/shm (the object store), their own hostname (`fr-head`, `fr-worker`), HOME and
RAY_TMPDIR. Ray's token authentication is on: every process gets RAY_AUTH_MODE=token and the
cluster's token in RAY_AUTH_TOKEN (nothing is written to the real ~/.ray).

Teardown (also when the test fails): every process left in either network namespace is
SIGKILLed by pid (`ip netns pids`; never `ray stop`, which would stop every Ray on the machine),
the namespaces are deleted (which deletes the veth pair), and the private folders removed.
Every name carries the creating process's pid, and `start()` first removes what runs killed
before their teardown left (tests/integration/netns.py).

Needs root, iproute2's `ip` and util-linux's `unshare`; `unavailable()` says why not.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import PROJECT_ROOT
from tests.integration.netns import (
    _ip,
    kill_namespace,
    make_base,
    namespace_pids,
    owned_name,
    sweep_stale,
    unavailable,  # noqa: F401 (the tests import it from here)
)

VENV_BIN = Path(sys.executable).parent
GCS_PORT = 6379
DASHBOARD_PORT = 8265
SOURCE_DIRS = ("sweep", "trainables", "analysis")
"""The project's packages: covered on both nodes, so trials can only import the copy Ray ships
with the job's runtime_env (`ray job submit --working-dir .`)."""

# Runs inside the node's fresh mount + UTS namespace: hostname, private /dev/shm, the node's own
# Ray temp dir at the path every node uses, then an empty read-only tmpfs over every folder this
# node must not see, then the node's command.
_NODE_SH = r"""
set -e
hostname "$FR_HOSTNAME"
mount -t tmpfs -o size=1g,mode=1777 fr-shm /dev/shm
mount --bind "$FR_NODE_RAY_TMP" "$RAY_TMPDIR"
while [ "$1" != "--" ]; do
  mount -t tmpfs -o size=64k,mode=0755,ro fr-hidden "$1"
  shift
done
shift
exec "$@"
"""


@dataclass
class Node:
    role: str  # "head" | "worker"
    netns: str
    ip: str
    home: Path
    """Private to this node (HOME, RAY_TMPDIR, logs); covered on the other node."""
    hidden: list[Path] = field(default_factory=list)
    node_id: str = ""

    @property
    def hostname(self) -> str:
        return f"fr-{self.role}"

    @property
    def ray_tmp(self) -> Path:
        """This node's Ray temp dir, seen by its processes at the cluster's common path (a worker
        node uses the head's temp dir path, as machines of a real cluster do)."""
        return self.home / "ray"


@dataclass
class TwoNodeCluster:
    head: Node
    worker: Node
    token: str
    base: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    _logs: list[Path] = field(default_factory=list)

    # ------------------------------------------------------------------------- addresses
    @property
    def gcs_address(self) -> str:
        return f"{self.head.ip}:{GCS_PORT}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.head.ip}:{DASHBOARD_PORT}"

    def node(self, role: str) -> Node:
        return {"head": self.head, "worker": self.worker}[role]

    # ------------------------------------------------------------------------- processes
    def env(self, node: Node, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RAY_", "PYTEST_")) and k not in ("PYTHONPATH",)}
        env.update({
            "PATH": f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(node.home), "RAY_TMPDIR": str(self.base / "ray"),
            "FR_NODE_RAY_TMP": str(node.ray_tmp), "TMPDIR": str(node.home),
            "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token,
            "RAY_USAGE_STATS_ENABLED": "0", "FR_HOSTNAME": node.hostname,
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.env_extra)
        env.update(extra or {})
        return env

    def node_argv(self, node: Node, argv: Sequence[str]) -> list[str]:
        """argv run as one of the node's processes: its network namespace, and a fresh mount +
        UTS namespace with the other node's folders covered."""
        return ["ip", "netns", "exec", node.netns, "unshare", "--mount", "--uts",
                "--propagation", "private", "sh", "-c", _NODE_SH, "fr-node",
                *[str(p) for p in node.hidden], "--", *argv]

    def client_argv(self, node: Node, argv: Sequence[str]) -> list[str]:
        """argv run in the node's network namespace only (it sees every folder): a user's shell
        on that machine, e.g. `ray job submit --working-dir .` from a checkout."""
        return ["ip", "netns", "exec", node.netns, *argv]

    def run(self, role: str, argv: Sequence[str], *, node_view: bool = True,
            env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        node = self.node(role)
        full = self.node_argv(node, argv) if node_view else self.client_argv(node, argv)
        proc = subprocess.run(full, env=self.env(node, env), cwd=cwd or PROJECT_ROOT,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"on {role}: {' '.join(map(str, argv))} exited "
                                 f"{proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n"
                                 f"--- stderr\n{proc.stderr[-4000:]}")
        return proc

    def popen(self, role: str, argv: Sequence[str], log: Path, *, node_view: bool = True,
              env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
        node = self.node(role)
        full = self.node_argv(node, argv) if node_view else self.client_argv(node, argv)
        log.parent.mkdir(parents=True, exist_ok=True)
        self._logs.append(log)
        return subprocess.Popen(full, env=self.env(node, env), cwd=cwd or PROJECT_ROOT,
                                stdout=open(log, "w"), stderr=subprocess.STDOUT)

    def python(self, role: str, code: str, timeout: float = 120, **kw) -> str:
        """Run a Python snippet as a driver on `role`, connected to the cluster; its stdout."""
        prelude = (f"import ray; ray.init(address={self.gcs_address!r}, log_to_driver=False, "
                   "logging_level='ERROR')\n")
        return self.run(role, [sys.executable, "-c", prelude + code], timeout=timeout, **kw).stdout

    def pids(self, node: Node) -> list[int]:
        return namespace_pids(node.netns)

    def raylet_pid(self, node: Node) -> int | None:
        for pid in self.pids(node):
            try:
                exe = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if exe.endswith(b"/raylet"):
                return pid
        return None

    def kill_raylet(self, role: str = "worker") -> int:
        """SIGKILL the node's raylet, as when a machine is lost: Ray must notice by itself."""
        pid = self.raylet_pid(self.node(role))
        assert pid is not None, f"no raylet in the {role}'s namespace"
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_nodes(self, alive: int, timeout: float = 120) -> list[dict]:
        """Ray's view of the nodes (asked on the head), once `alive` of them are alive."""
        code = ("import json, time\n"
                f"deadline = time.time() + {timeout}\n"
                "while True:\n"
                "    nodes = ray.nodes()\n"
                f"    if sum(n['Alive'] for n in nodes) == {alive} or time.time() > deadline:\n"
                "        break\n"
                "    time.sleep(0.5)\n"
                "print(json.dumps([{k: n[k] for k in ('NodeID', 'NodeManagerAddress', 'Alive', "
                "'NodeManagerHostname')} for n in nodes]))\n")
        nodes = json.loads(self.python("head", code, timeout=timeout + 60).strip().splitlines()[-1])
        assert sum(n["Alive"] for n in nodes) == alive, f"expected {alive} alive nodes: {nodes}"
        return nodes

    def logs(self) -> str:
        """The tail of every log this cluster wrote (for assertion messages)."""
        parts = []
        for log in self._logs:
            if log.is_file():
                parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    # ------------------------------------------------------------------------- lifecycle
    @classmethod
    @contextmanager
    def start(cls, hide_from_worker: Sequence[Path] = (), hide_from_head: Sequence[Path] = (),
              head_cpus: int = 1, worker_cpus: int = 1, hide_source: bool = True,
              env: dict[str, str] | None = None, start_ray: bool = True,
              ) -> Iterator[TwoNodeCluster]:
        """The two nodes (and Ray on them unless start_ray is False), after removing what
        killed earlier runs left (sweep_stale)."""
        sweep_stale()
        tag = secrets.token_hex(3)
        base = make_base(tag)
        subnet = f"10.{random.randint(100, 250)}.{random.randint(1, 250)}"
        source = [PROJECT_ROOT / d for d in SOURCE_DIRS] if hide_source else []
        head = Node("head", f"{owned_name(tag)}-h", f"{subnet}.1", base / "head")
        worker = Node("worker", f"{owned_name(tag)}-w", f"{subnet}.2", base / "worker")
        head.hidden = [worker.home, *map(Path, hide_from_head), *source]
        worker.hidden = [head.home, *map(Path, hide_from_worker), *source]
        for node in (head, worker):
            node.ray_tmp.mkdir(parents=True)
        (base / "ray").mkdir()
        cluster = cls(head, worker, token=secrets.token_hex(32), base=base, env_extra=dict(env or {}))
        made: list[str] = []
        try:
            for node in (head, worker):
                _ip("netns", "add", node.netns)
                made.append(node.netns)
                _ip("-n", node.netns, "link", "set", "lo", "up")
            veth = f"frv{tag}"
            _ip("link", "add", f"{veth}h", "netns", head.netns, "type", "veth", "peer", "name",
                f"{veth}w", "netns", worker.netns)
            for node, end in ((head, f"{veth}h"), (worker, f"{veth}w")):
                _ip("-n", node.netns, "addr", "add", f"{node.ip}/24", "dev", end)
                _ip("-n", node.netns, "link", "set", end, "up")
            if start_ray:
                cluster._start_ray(head_cpus, worker_cpus)
            yield cluster
        finally:
            cluster._teardown(made)

    def _start_ray(self, head_cpus: int, worker_cpus: int) -> None:
        common = ["--num-gpus=0", f"--object-store-memory={150 * 2**20}", "--disable-usage-stats",
                  "--log-style=record"]
        # Notice a lost node within seconds (defaults take ~30 s): health checks every second.
        system = json.dumps({"health_check_period_ms": 1000, "health_check_timeout_ms": 1000,
                             "health_check_failure_threshold": 3})
        self.run("head", ["ray", "start", "--head", f"--node-ip-address={self.head.ip}",
                          f"--port={GCS_PORT}", f"--num-cpus={head_cpus}",
                          f"--dashboard-host={self.head.ip}", f"--dashboard-port={DASHBOARD_PORT}",
                          "--include-dashboard=true", f"--system-config={system}", *common],
                 timeout=180)
        self.run("worker", ["ray", "start", f"--address={self.gcs_address}",
                            f"--node-ip-address={self.worker.ip}", f"--num-cpus={worker_cpus}",
                            *common], timeout=180)
        nodes = self.wait_nodes(alive=2)
        by_ip = {n["NodeManagerAddress"]: n["NodeID"] for n in nodes if n["Alive"]}
        self.head.node_id, self.worker.node_id = by_ip[self.head.ip], by_ip[self.worker.ip]

    def _teardown(self, namespaces: list[str]) -> None:
        """Kill what runs in our namespaces, delete them, remove our folders; then check that
        nothing is left (a leak fails the test that used the cluster)."""
        left = [pid for ns in namespaces for pid in kill_namespace(ns)]
        for ns in namespaces:
            _ip("netns", "del", ns, check=False)
        shutil.rmtree(self.base, ignore_errors=True)
        listed = _ip("netns", "list", check=False).stdout
        leaked = [ns for ns in namespaces if ns in listed]
        assert not left and not leaked and not self.base.exists(), (
            f"two-node cluster left processes {left}, namespaces {leaked} or {self.base}")
