"""One machine of tests/integration/ray_launcher.py: what runs inside its namespaces (the
shell script that sets them up, its sshd's configuration), what it must not see (the project's
source), which of its processes are Ray's, and whether such machines can exist here at all."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT_ROOT
from tests.integration.netns import namespace_pids
from tests.integration.netns import unavailable as namespaces_unavailable

SSHD = Path("/usr/sbin/sshd")
PACKAGES = ("sweep", "trainables", "analysis", "feature_reuse")
"""What a node needs of the checkout (with pyproject.toml) and what is covered on every node."""

# A node: one process tree in fresh mount, UTS and PID namespaces (unshare --pid --fork makes
# this script pid 1's parent side; sshd becomes pid 1 and reaps every orphan, Ray's included).
NODE_SH = r"""
set -e
hostname "$FR_HOSTNAME"
mount -t tmpfs -o size=1g,mode=1777 fr-shm /dev/shm
mount -t tmpfs -o mode=0755 fr-run /run
mkdir -m 0755 /run/sshd
mount -t tmpfs -o mode=0755 fr-log /var/log
mount --bind "$FR_NODE_FOLDER" "$FR_HOME"
mount --bind "$FR_PASSWD" /etc/passwd
while [ "$1" != "--" ]; do
  mount -t tmpfs -o size=64k,mode=0755,ro fr-hidden "$1"
  shift
done
shift
exec "$@"
"""

_RAY_MARKERS = ("raylet", "gcs_server", "ray/_private", "ray/dashboard", "ray/autoscaler",
                "default_worker", "ray::", "log_monitor", "sweep.run", "analysis.report")


def unavailable() -> str | None:
    """Why SSH nodes cannot exist here (None when they can)."""
    reason = namespaces_unavailable()
    if reason:
        return reason
    if not SSHD.is_file():
        return ("needs Debian's openssh-server for the nodes' SSH servers (`make sshd` installs "
                "it, as CI does)")
    for tool in ("ssh", "ssh-keygen", "rsync", "git"):
        if shutil.which(tool) is None:
            return f"needs {tool!r} (`make sshd` installs openssh-server and rsync, as CI does)"
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount", "--mount-proc", "true"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"cannot create PID namespaces: {probe.stderr.strip() or probe.returncode}"
    return None


def source_folders() -> list[Path]:
    """The project's packages wherever this Python would import them from: the checkout, and
    the editable install's target when that is another checkout (a worktree sharing a venv)."""
    folders = {PROJECT_ROOT / p for p in PACKAGES}
    code = ("import importlib.util as u, os\n"
            f"for p in {PACKAGES!r}:\n"
            "    s = u.find_spec(p)\n"
            "    print(os.path.dirname(s.origin) if s and s.origin else '')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/",
                         env=env, timeout=60).stdout
    folders.update(Path(line) for line in out.split() if line)
    return sorted(f for f in folders if f.is_dir())


def ray_processes(netns: str) -> list[str]:
    """The command lines of the Ray processes (and sweep/report drivers) in a namespace."""
    found = []
    for pid in namespace_pids(netns):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(m in cmd for m in _RAY_MARKERS):
            found.append(f"{pid}: {cmd[:200]}")
    return found


def passwd_with_home(passwd_line: str, home: Path) -> str:
    fields = passwd_line.split(":")
    fields[5] = str(home)
    return ":".join(fields)


def sshd_config(ip: str, ssh: Path, home: Path) -> str:
    """One node's sshd: its address only, the test's host key and authorized key, root by key."""
    return "\n".join([
        f"ListenAddress {ip}:22",
        f"HostKey {ssh / 'host_ed25519'}",
        f"AuthorizedKeysFile {ssh / 'authorized_keys'}",
        "PidFile none",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "PrintMotd no",
        "PrintLastLog no",
        "StrictModes no",  # the key files lie under /tmp (world-writable), which it refuses
        # Ray opens several connections at once (file mounts, setup, the autoscaler's updaters)
        "MaxStartups 64",
        "MaxSessions 64",
        "LogLevel INFO",
        ""])
