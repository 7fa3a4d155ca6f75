"""Network namespaces for the multi-node tests: names every run owns, their removal, and the
sweep of what killed runs left behind.

Every namespace and folder a run creates is named `frmn-<pid>-<tag>...` after the creating
process. A run killed before its teardown (SIGKILL, a lost CI job) leaves its namespaces, the
processes in them (Ray's included) and its folder under /tmp; `sweep_stale()`, which every
cluster harness calls at its start, removes exactly those whose pid is gone. A live run's
names, and names of any other form, are never touched.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

OWNER = "frmn"
"""Prefix of every namespace and folder the harnesses make: `frmn-<pid>-<tag>...`."""
_OWNED = re.compile(rf"^{OWNER}-(\d+)-")
TMP = Path("/tmp")
log = logging.getLogger(__name__)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def owned_name(tag: str) -> str:
    """`frmn-<this pid>-<tag>`: the start of every name this run creates."""
    return f"{OWNER}-{os.getpid()}-{tag}"


def namespace_pids(netns: str) -> list[int]:
    out = _ip("netns", "pids", netns, check=False).stdout.split()
    return [int(p) for p in out if p.isdigit()]


def kill_namespace(netns: str) -> list[int]:
    """SIGKILL every process in the network namespace, by pid, until none is left; the pids
    still there after 5 s (none, normally)."""
    for _ in range(10):
        running = namespace_pids(netns)
        if not running:
            return []
        for pid in running:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)
    return namespace_pids(netns)


def ray_ssh_control_dir(user: str) -> Path:
    """Where Ray's SSH command runner keeps its ControlMaster sockets for `user` (getpass's
    name), as ray.autoscaler._private.command_runner builds it; the launcher test runs with
    USER set to its folder's name, so the folder is its own."""
    from ray.autoscaler._private.command_runner import HASH_MAX_LENGTH

    return TMP / f"ray_ssh_{hashlib.sha256(user.encode()).hexdigest()[:HASH_MAX_LENGTH]}"


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return False


def sweep_stale() -> list[str]:
    """Remove what runs of this harness that were killed before their teardown left behind:
    their processes (SIGKILL by pid), network namespaces and folders. Only names of this
    harness's form whose creating pid is gone; returns what was removed."""
    removed = []
    listed = _ip("netns", "list", check=False).stdout.split("\n")
    for netns in (line.split()[0] for line in listed if line.strip()):
        owner = _OWNED.match(netns)
        if owner and _pid_gone(int(owner.group(1))):
            kill_namespace(netns)
            _ip("netns", "del", netns, check=False)
            removed.append(f"namespace {netns}")
    for folder in TMP.glob(f"{OWNER}-*"):
        owner = _OWNED.match(folder.name)
        if owner and _pid_gone(int(owner.group(1))):
            for path in (folder, ray_ssh_control_dir(folder.name)):
                if path.exists():
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(str(path))
    if removed:
        log.warning("removed what killed earlier runs left: %s", ", ".join(removed))
    return removed


def make_base(tag: str) -> Path:
    """This run's folder, /tmp/frmn-<pid>-<tag> (short: Ray's unix sockets live under it and
    must stay < 108 characters)."""
    base = TMP / owned_name(tag)
    base.mkdir(mode=0o700)
    return base


def unavailable() -> str | None:
    """Why two-node tests cannot run here (None when they can): root, tools, namespaces."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "needs root to create network and mount namespaces (CI runs as root)"
    for tool in ("ip", "unshare", "mount", "hostname"):
        if shutil.which(tool) is None:
            return f"needs the {tool!r} command (iproute2 / util-linux)"
    tag = secrets.token_hex(3)
    probes = [f"{owned_name(tag)}-pa", f"{owned_name(tag)}-pb"]
    try:
        for ns in probes:
            made = _ip("netns", "add", ns, check=False)
            if made.returncode != 0:
                return f"cannot create a network namespace: {made.stderr.strip() or made.returncode}"
        veth = _ip("link", "add", f"frp{tag}a", "netns", probes[0], "type", "veth", "peer", "name",
                   f"frp{tag}b", "netns", probes[1], check=False)
        if veth.returncode != 0:
            return f"cannot create a veth pair: {veth.stderr.strip() or veth.returncode}"
        inner = subprocess.run(["ip", "netns", "exec", probes[0], "unshare", "--mount", "--uts",
                                "--propagation", "private", "sh", "-c",
                                "mount -t tmpfs fr-probe /mnt && hostname fr-probe"],
                               capture_output=True, text=True, timeout=30)
        if inner.returncode != 0:
            return f"cannot create mount/UTS namespaces: {inner.stderr.strip() or inner.returncode}"
    finally:
        for ns in probes:
            _ip("netns", "del", ns, check=False)
    return None
