"""Fault injection for the reliability tests, driven by one environment variable.

    FEATURE_REUSE_FAULT="KIND@key=value,key=value,..."

KIND is "oom" (raise torch.OutOfMemoryError, as CUDA does when a trial does not fit), "kill"
(SIGKILL the trial's own process mid-epoch, as when a worker dies) or "sleep" (stall for
`seconds=N`, default 60, as a slow or hung worker does; the tests use it to hold a trial
mid-epoch while they kill the driver, or a node). The keys arch, regime, seed, epoch, where and
host (the machine's hostname) select where it fires (absent keys match anything); `once=PATH`
makes it fire only while PATH does not exist (the file is created when it fires), so a retried
trial runs clean.
Unset (the normal case), this module does nothing.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import torch

ENV = "FEATURE_REUSE_FAULT"


def _parse(spec: str) -> tuple[str, dict[str, str]]:
    kind, _, rest = spec.partition("@")
    params = dict(item.split("=", 1) for item in rest.split(",") if "=" in item)
    return kind.strip(), params


def maybe_inject(config, epoch: int, where: str = "epoch") -> None:
    """Called by the engine after `where` in an epoch; fires the configured fault if it matches."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    kind, params = _parse(spec)
    wanted = {"arch": config.arch, "regime": config.regime, "seed": str(config.seed),
              "epoch": str(epoch), "where": where, "host": socket.gethostname()}
    if any(params.get(k, v) != v for k, v in wanted.items()):
        return
    once = params.get("once")
    if once:
        marker = Path(once)
        if marker.exists():
            return
        marker.write_text(f"{kind} fired at {config.arch}/{config.regime}/seed {config.seed}, "
                          f"epoch {epoch}\n")
    if kind == "oom":
        raise torch.OutOfMemoryError(
            f"CUDA out of memory (injected by {ENV}) in {config.arch}/{config.regime} "
            f"seed {config.seed} epoch {epoch}")
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "sleep":
        time.sleep(float(params.get("seconds", 60)))
        return
    raise ValueError(f"{ENV}: unknown fault kind {kind!r}; use oom, kill or sleep")
