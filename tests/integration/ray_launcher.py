"""Machines reachable over SSH, on one machine, for Ray's on-premise launcher (`ray up`).

    with SshNodes.start(cpus=[1, 2]) as nodes:
        nodes.launcher(["ray", "up", "-y", str(nodes.write_cluster_file(config))])

Each node is a network namespace (10.X.Y.n on a bridge in the head's namespace, with a default
route so that Ray finds the node's address as on a real machine) running one SSH server, in its
own mount, UTS and PID namespaces. Everything `ray up` starts on a node over SSH therefore sees
that node only:

- its own processes: the `ray stop` in Ray's start commands stops this node's Ray, not every
  Ray on the machine;
- root's home at one path on every node (as /home/ubuntu on every machine of a real cluster),
  which is the node's own folder: a copy of /etc/passwd says so to sshd, and the real /root is
  neither read nor written; its own hostname, /dev/shm, /run (sshd's) and /var/log (login
  records);
- the other nodes' folders, the launcher's folder (the private key) and the project's source
  covered by empty tmpfs: nodes get the code from `ray up`'s file mounts only.

The machine's own setup is its ~/.bashrc, written here as a user's machine would have it: it
activates this project's venv (nodes share this machine's disk, and nothing is installed), keeps
Ray's and Python's temporary files in the node's folder, and tells Ray how many CPUs the node
has (RAY_OVERRIDE_RESOURCES; every node would otherwise claim the whole machine).

The launcher (`ray up`, `ray exec`, `ray down`) runs in the head's network namespace, with root's
home its own folder (its ~/.ray/auth_token is the token every node gets; its key pair is made
for the test), RAY_TMPDIR there (Ray's cluster state file) and USER set to the run's folder name,
so that Ray's SSH control sockets (/tmp/ray_ssh_<hash of USER>) are the run's own; teardown
removes that folder. SSH host keys are never checked by Ray (it passes StrictHostKeyChecking=no
and UserKnownHostsFile=/dev/null itself).

Needs root, iproute2, util-linux's unshare and Debian's openssh-server and rsync (`make sshd`);
`ssh_machine.unavailable()` says what is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.conftest import PROJECT_ROOT
from tests.integration.netns import (
    TMP,
    _ip,
    kill_namespace,
    make_base,
    owned_name,
    ray_ssh_control_dir,
    sweep_stale,
)
from tests.integration.ssh_machine import (
    NODE_SH,
    PACKAGES,
    SSHD,
    passwd_with_home,
    source_folders,
    sshd_config,
)

VENV_BIN = Path(sys.executable).parent

# The launcher: root's home is its own folder (ssh reads ~/.ssh from the passwd entry, Ray
# expands ~ from HOME).
_LAUNCHER_SH = r"""
set -e
mount --bind "$FR_PASSWD" /etc/passwd
exec "$@"
"""

@dataclass
class SshNode:
    role: str  # "head", "worker1", ...
    ip: str
    netns: str
    folder: Path
    """The node's root home (seen at SshNodes.home on the node itself)."""
    resources: dict[str, float]
    hidden: list[Path] = field(default_factory=list)
    sshd: subprocess.Popen | None = None
    bashrc_extra: str = ""

    @property
    def hostname(self) -> str:
        return f"fr-{self.role}"


@dataclass
class SshNodes:
    base: Path
    nodes: list[SshNode]
    ready_s: float = 0.0

    @property
    def head(self) -> SshNode:
        return self.nodes[0]

    @property
    def workers(self) -> list[SshNode]:
        return self.nodes[1:]

    @property
    def home(self) -> Path:
        """Root's home on every node (each node sees its own folder there)."""
        return self.base / "h"

    @property
    def launcher_home(self) -> Path:
        return self.base / "launcher"

    @property
    def key(self) -> Path:
        return self.launcher_home / ".ssh" / "id_ed25519"

    @property
    def checkout(self) -> Path:
        """The user's checkout that `ray up` syncs (file_mounts "~/feature-reuse": ".")."""
        return self.base / "checkout"

    @property
    def user(self) -> str:
        """USER and LOGNAME of the launcher and the nodes' shells (Ray's SSH control folder)."""
        return self.base.name

    def node(self, role: str) -> SshNode:
        return next(n for n in self.nodes if n.role == role)

    # ------------------------------------------------------------------------- the cluster file
    def write_cluster_file(self, config: dict, name: str = "cluster.yaml") -> Path:
        path = self.launcher_home / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # ------------------------------------------------------------------------- the launcher
    def launcher_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RAY_", "PYTEST_")) and k not in ("PYTHONPATH",)}
        env.update({"PATH": f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
                    "HOME": str(self.launcher_home), "USER": self.user, "LOGNAME": self.user,
                    "RAY_TMPDIR": str(self.launcher_home / "r"),
                    "TMPDIR": str(self.launcher_home / "tmp"),
                    "FR_PASSWD": str(self.base / "passwd-launcher"),
                    "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"})
        return env

    def launcher_argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.head.netns, "unshare", "--mount", "--propagation",
                "private", "sh", "-c", _LAUNCHER_SH, "fr-launcher", *map(str, argv)]

    def launcher(self, argv: Sequence[str], log: Path, timeout: float = 300,
                 check: bool = True) -> subprocess.CompletedProcess:
        """Run a `ray` launcher command as the user does (cwd: the checkout); its output is
        appended to `log` and returned."""
        proc = subprocess.run(self.launcher_argv(argv), env=self.launcher_env(), cwd=self.checkout,
                              capture_output=True, text=True, timeout=timeout)
        with open(log, "a") as f:
            f.write(f"$ {' '.join(map(str, argv))}  (exit {proc.returncode})\n{proc.stdout}\n"
                    f"{proc.stderr}\n")
        proc.stdout = proc.stdout + proc.stderr  # ray exec: the remote output, then Ray's
        if check and proc.returncode != 0:
            raise AssertionError(f"`{' '.join(map(str, argv))}` exited {proc.returncode}\n"
                                 f"{proc.stdout[-6000:]}")
        return proc

    def launcher_popen(self, argv: Sequence[str], log: Path) -> subprocess.Popen:
        return subprocess.Popen(self.launcher_argv(argv), env=self.launcher_env(),
                                cwd=self.checkout, stdout=open(log, "w"),
                                stderr=subprocess.STDOUT)

    # ------------------------------------------------------------------------- lifecycle
    @classmethod
    @contextmanager
    def start(cls, cpus: Sequence[int], bashrc_extra: dict[str, str] | None = None,
              hide: Sequence[Path] = ()) -> Iterator[SshNodes]:
        """Nodes with the given CPU counts (the first is the head), each running sshd, after
        removing what killed earlier runs left (netns.sweep_stale). `bashrc_extra` adds lines
        to a node's ~/.bashrc (by role); `hide` covers more folders on every node."""
        sweep_stale()
        tag = secrets.token_hex(2)
        base = make_base(tag)
        subnet = f"10.{random.randint(100, 250)}.{random.randint(1, 250)}"
        roles = ["head", *[f"worker{i}" for i in range(1, len(cpus))]]
        nodes = [SshNode(role, f"{subnet}.{i + 1}", f"{owned_name(tag)}-{role[0]}{i}",
                         base / f"n-{role}", {"CPU": n, "object_store_memory": 150 * 2**20},
                         bashrc_extra=(bashrc_extra or {}).get(role, ""))
                 for i, (role, n) in enumerate(zip(roles, cpus, strict=True))]
        self = cls(base, nodes)
        made: list[str] = []
        try:
            self._prepare(hide)
            for node in nodes:
                _ip("netns", "add", node.netns)
                made.append(node.netns)
                _ip("-n", node.netns, "link", "set", "lo", "up")
            self._wire(f"fv{tag}", f"{subnet}.0/24")
            t0 = time.time()
            for node in nodes:
                self._start_sshd(node)
            for node in nodes:
                self._wait_sshd(node)
            self.ready_s = time.time() - t0
            yield self
        finally:
            self._teardown(made)

    def _prepare(self, hide: Sequence[Path]) -> None:
        ssh = self.base / "ssh"
        for folder in (self.home, ssh, self.launcher_home / ".ssh", self.launcher_home / "r",
                       self.launcher_home / "tmp", self.launcher_home / ".ray"):
            folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fr-test",
                        "-f", str(self.key)], check=True, timeout=30)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(ssh / "host_ed25519")], check=True, timeout=30)
        shutil.copy(f"{self.key}.pub", ssh / "authorized_keys")
        (self.launcher_home / ".ray" / "auth_token").write_text(secrets.token_hex(32))
        passwd = Path("/etc/passwd").read_text().splitlines()
        for name, home in (("passwd-nodes", self.home), ("passwd-launcher", self.launcher_home)):
            lines = [passwd_with_home(line, home) if line.startswith("root:") else line
                     for line in passwd]
            (self.base / name).write_text("\n".join(lines) + "\n")
        self.checkout.mkdir()
        for package in PACKAGES:
            shutil.copytree(PROJECT_ROOT / package, self.checkout / package,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copy(PROJECT_ROOT / "pyproject.toml", self.checkout / "pyproject.toml")
        covered = [*source_folders(), *map(Path, hide), self.launcher_home, self.checkout]
        for node in self.nodes:
            node.folder.mkdir()
            (node.folder / "r").mkdir()
            (node.folder / "tmp").mkdir()
            node.hidden = [n.folder for n in self.nodes if n is not node] + covered
            (node.folder / ".bashrc").write_text(self._bashrc(node))
            (ssh / f"sshd-{node.role}.conf").write_text(sshd_config(node.ip, ssh, self.home))

    def _bashrc(self, node: SshNode) -> str:
        return "\n".join([
            "# This machine's setup (tests/integration/ray_launcher.py): the project's Python",
            "# environment, Ray's and Python's temporary files in this home, this node's CPUs.",
            f"source {VENV_BIN / 'activate'}",
            "export RAY_TMPDIR=$HOME/r TMPDIR=$HOME/tmp RAY_USAGE_STATS_ENABLED=0",
            f"export USER={self.user} LOGNAME={self.user}",
            f"export RAY_OVERRIDE_RESOURCES='{json.dumps(node.resources)}'",
            node.bashrc_extra, ""])

    def _wire(self, prefix: str, cidr: str) -> None:
        """A bridge in the head's namespace; a veth pair to each worker's namespace."""
        bridge = f"{prefix}b"
        head = self.head
        _ip("-n", head.netns, "link", "add", bridge, "type", "bridge")
        _ip("-n", head.netns, "addr", "add", f"{head.ip}/24", "dev", bridge)
        _ip("-n", head.netns, "link", "set", bridge, "up")
        for i, node in enumerate(self.workers, start=1):
            near, far = f"{prefix}{i}h", f"{prefix}{i}w"
            _ip("link", "add", near, "netns", head.netns, "type", "veth", "peer", "name", far,
                "netns", node.netns)
            _ip("-n", head.netns, "link", "set", near, "master", bridge)
            _ip("-n", head.netns, "link", "set", near, "up")
            _ip("-n", node.netns, "addr", "add", f"{node.ip}/24", "dev", far)
            _ip("-n", node.netns, "link", "set", far, "up")
            _ip("-n", node.netns, "route", "add", "default", "via", head.ip)
        _ip("-n", head.netns, "route", "add", "default", "dev", bridge)

    def _start_sshd(self, node: SshNode) -> None:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "FR_HOSTNAME": node.hostname,
               "FR_NODE_FOLDER": str(node.folder), "FR_HOME": str(self.home),
               "FR_PASSWD": str(self.base / "passwd-nodes")}
        argv = ["ip", "netns", "exec", node.netns, "unshare", "--mount", "--uts", "--pid",
                "--fork", "--mount-proc", "--propagation", "private", "sh", "-c", NODE_SH,
                "fr-node", *map(str, node.hidden), "--", str(SSHD), "-D", "-e", "-f",
                str(self.base / "ssh" / f"sshd-{node.role}.conf")]
        log = open(self.base / f"sshd-{node.role}.log", "w")
        node.sshd = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)

    def _wait_sshd(self, node: SshNode, timeout: float = 30) -> None:
        log = self.base / f"sshd-{node.role}.log"
        deadline = time.time() + timeout
        while "Server listening" not in log.read_text():
            if node.sshd.poll() is not None or time.time() > deadline:
                raise AssertionError(f"sshd on {node.role} did not start:\n{log.read_text()}")
            time.sleep(0.1)

    def worker_start(self, node: SshNode) -> str | None:
        """What the head's autoscaler (its latest session) logged of the node's `ray start`:
        "succeeded", "failed" (it then leaves the node out until the next `ray up`), or None
        while it runs."""
        sessions = sorted(self.head.folder.glob("r/ray/session_2*"))  # named by start time
        log = sessions[-1] / "logs" / "monitor.out" if sessions else None
        text = log.read_text(errors="replace") if log and log.is_file() else ""
        found = re.findall(rf"NodeUpdater: {re.escape(node.ip)}: Ray start commands (succeeded|failed)",
                           text)
        return found[-1] if found else None

    def logs(self) -> str:
        parts = []
        for log in sorted(self.base.glob("*.log")):
            parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def _teardown(self, namespaces: list[str]) -> None:
        """Kill what runs in the nodes' namespaces, delete them, remove the run's folders (and
        Ray's SSH control folder for its USER); then check that nothing is left."""
        left = [pid for ns in namespaces for pid in kill_namespace(ns)]
        for ns in namespaces:
            _ip("netns", "del", ns, check=False)
        keep = os.environ.get("FR_KEEP_NODES")  # a folder to copy the nodes' files to, to debug
        if keep:
            with contextlib.suppress(shutil.Error):  # sockets and FIFOs are not copied
                shutil.copytree(self.base, Path(keep) / self.base.name, symlinks=True,
                                dirs_exist_ok=True)
        for node in self.nodes:
            if node.sshd is not None:
                node.sshd.wait(timeout=30)
        control = ray_ssh_control_dir(self.user)
        shutil.rmtree(control, ignore_errors=True)
        shutil.rmtree(self.base, ignore_errors=True)
        listed = _ip("netns", "list", check=False).stdout
        leaked = [ns for ns in namespaces if ns in listed]
        assert not left and not leaked and not self.base.exists() and not control.exists(), (
            f"SSH nodes left processes {left}, namespaces {leaked}, {self.base} or {control}")
        assert TMP.is_dir()
