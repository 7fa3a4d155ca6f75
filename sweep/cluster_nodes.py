"""The Ray cluster a sweep joins, as `ray up` users meet it: the machines of an on-premise cluster
file that are not in it, and a driver whose Ray differs from the cluster's.

Missing machines. On the head of a cluster started by `ray up`, the launcher leaves the cluster
file at ~/ray_bootstrap_config.yaml. For an on-premise cluster (`provider: type: local`) it lists
every machine (head_ip, worker_ips), so the sweep can name the ones that never joined: a worker
whose setup or `ray start` failed (Ray's autoscaler on the head retries it once, then leaves it
out) is otherwise invisible, and the sweep just runs slower on the machines it has. The reason is
quoted from the autoscaler's log on the head where it says one (e.g. Ray's version check).
Elsewhere (no such file, a cloud provider whose workers come and go) nothing is reported.

Versions. Ray refuses a driver whose Ray or Python version differs from the cluster's with a
RuntimeError whose text lists both; `version_refusal` turns it into one line naming both and the
fix.

Stopping the workers. For an on-premise cluster `ray down` runs `ray stop` on the head only and
marks the workers terminated without connecting to them (ray-project/ray#17022, #43232): their
raylets exit a minute later, their log monitors never. On the head,

    python -m sweep.cluster_nodes stop-workers

runs `ray stop` on every worker of ~/ray_bootstrap_config.yaml over SSH, with the key and user
`ray up` left there; docs/cluster.md has it run through `ray exec` before `ray down`.
"""

from __future__ import annotations

import argparse
import logging
import re
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from trainables.errors import UserError

log = logging.getLogger("sweep")

BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")
"""Where `ray up` leaves the cluster file on the head node."""

_MISMATCH = re.compile(r"Version mismatch: The cluster was started with:\s*Ray: (\S+)\s*"
                       r"Python: (\S+)\s*This process on (.+?) was started with:\s*Ray: (\S+)\s*"
                       r"Python: (\S+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def expected_machines(path: Path = BOOTSTRAP_CONFIG) -> list[str]:
    """The addresses an on-premise cluster file lists (head first), as IP addresses; [] when
    this is not the head of such a cluster."""
    try:
        config = yaml.safe_load(path.expanduser().read_text())
    except (OSError, yaml.YAMLError):
        return []
    provider = config.get("provider") if isinstance(config, dict) else None
    if not isinstance(provider, dict) or provider.get("type") != "local":
        return []
    workers = provider.get("worker_ips") or []
    names = [provider.get("head_ip"), *(workers if isinstance(workers, list) else [])]
    return [_address(str(n)) for n in names if n]


def _address(name: str) -> str:
    try:
        return socket.gethostbyname(name)
    except OSError:
        return name


def missing_lines(path: Path = BOOTSTRAP_CONFIG) -> list[str]:
    """What to tell the user about machines of the cluster file that are not in the connected
    Ray cluster (none when all joined, when this is not an on-premise cluster's head, or when
    the sweep runs on a Ray of its own there)."""
    import ray

    expected = expected_machines(path)
    if not expected:
        return []
    try:
        alive = {n.get("NodeManagerAddress") for n in ray.nodes() if n.get("Alive")}
    except Exception as exc:  # Ray itself failing is reported by the sweep's own checks
        log.debug("cannot list the Ray nodes: %s", exc)
        return []
    if expected[0] not in alive:  # not that cluster (e.g. a local Ray started on its head)
        return []
    missing = [ip for ip in expected if ip not in alive]
    if not missing:
        return []
    reasons = autoscaler_reasons(missing)
    unknown = "its setup or `ray start` failed, or it is still starting"
    lines = [f"note: {len(missing)} of the {len(expected)} machines in {path} are not in the Ray "
             f"cluster; the sweep runs on the other {len(expected) - len(missing)}:"]
    lines += [f"  {ip}: {reasons.get(ip) or unknown}" for ip in missing]
    lines.append("  why: `ray monitor CLUSTER.yaml` shows the autoscaler's log; fix the machine and "
                 "run `ray up` again (the same sweep command then adds trials there)")
    return lines


def autoscaler_reasons(ips: list[str]) -> dict[str, str]:
    """The last reason the head's autoscaler logged for each address (best effort: its log
    format is Ray's, and only a driver on the head can read it)."""
    try:
        import ray

        logs = Path(ray._private.worker._global_node.get_logs_dir_path())  # noqa: SLF001
        text = _ANSI.sub("", "".join(p.read_text(errors="replace")
                                     for p in sorted(logs.glob("monitor.*"))))
    except Exception as exc:  # not on the head, or Ray moved its logs: no reason, no failure
        log.debug("cannot read the autoscaler's log: %s", exc)
        return {}
    reasons = {}
    for found in _MISMATCH.finditer(text):
        cluster_ray, cluster_py, where, node_ray, node_py = found.groups()
        for ip in ips:
            if where.strip() == f"node {ip}":
                reasons[ip] = (f"Ray refused it: it has Ray {node_ray} (Python {node_py}), the "
                               f"cluster Ray {cluster_ray} (Python {cluster_py})")
    for ip in ips:
        if ip not in reasons:
            failed = [ln.strip() for ln in text.splitlines()
                      if f"{ip}:" in ln and ("failed" in ln.lower() or "error" in ln.lower())]
            if failed:
                reasons[ip] = f"the autoscaler logged: {failed[-1].split(' -- ', 1)[-1][:200]}"
    return reasons


def version_refusal(error: str, address: str | None) -> str | None:
    """One line for Ray's version-mismatch error, naming both versions and the fix; None for
    any other error."""
    found = _MISMATCH.search(error)
    if found is None:
        return None
    cluster_ray, cluster_py, _, here_ray, here_py = found.groups()
    where = f"--address {address}" if address else "the Ray cluster"
    return (f"{where} runs Ray {cluster_ray} on Python {cluster_py}, but this machine has Ray "
            f"{here_ray} on Python {here_py}, and Ray refuses a driver of another version. Fix: "
            "run the sweep on the cluster with its own environment (`ray exec CLUSTER.yaml \"cd "
            "~/feature-reuse && python -m sweep.run ... --address auto\"`, or `ray job submit`), "
            f"or install ray=={cluster_ray} on Python {cluster_py} here")


def stop_workers(path: Path = BOOTSTRAP_CONFIG) -> list[str]:
    """`ray stop` on every worker of the on-premise cluster file, over SSH as `ray up` connects
    (its key and user on the head; Ray's own host-key options); one line per worker."""
    try:
        config = yaml.safe_load(path.expanduser().read_text())
        provider, auth = config["provider"], config["auth"]
        workers, user = list(provider.get("worker_ips") or []), auth["ssh_user"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not the cluster file of an on-premise cluster's head "
                         f"({exc}). Fix: run this on the head, e.g. `ray exec CLUSTER.yaml \"cd "
                         "~/feature-reuse && python -m sweep.cluster_nodes stop-workers\"`") from None
    key = ["-i", str(Path(auth["ssh_private_key"]).expanduser())] if auth.get("ssh_private_key") else []
    lines = []
    for ip in workers:
        argv = ["ssh", *key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=20", f"{user}@{ip}",
                "bash --login -c -i 'source ~/.bashrc; ray stop'"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=180)
            ok, said = done.returncode == 0, (done.stdout + done.stderr).strip().splitlines()
        except (OSError, subprocess.TimeoutExpired) as exc:
            ok, said = False, [str(exc)]
        lines.append(f"{ip}: " + ("ray stopped" if ok else f"failed ({said[-1] if said else '?'})"))
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sweep.cluster_nodes",
                                description="On an on-premise cluster's head: stop Ray on every "
                                            "worker (`ray down` stops it on the head only).")
    p.add_argument("command", choices=("stop-workers",))
    p.add_argument("--config", type=Path, default=BOOTSTRAP_CONFIG,
                   help="the cluster file `ray up` left on the head (default %(default)s)")
    args = p.parse_args(argv)
    try:
        lines = stop_workers(args.config)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in lines:
        print(line)
    return 1 if any("failed" in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
