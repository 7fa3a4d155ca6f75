"""Provenance stamped on every result row: code version, library versions, device, host."""

from __future__ import annotations

import functools
import json
import platform
import socket
import subprocess
from pathlib import Path

import torch

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def code_version() -> str:
    """The git commit of the project (suffixed "-dirty" with uncommitted changes), else the
    installed package version."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
                               ).stdout.strip()
        return head[:12] + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from importlib import metadata

        try:
            return "pkg-" + metadata.version("feature-reuse")
        except metadata.PackageNotFoundError:
            return "unknown"


@functools.cache
def library_versions() -> str:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in ("torch", "torchvision", "ray", "numpy", "pillow", "pyarrow", "pandas"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return json.dumps(versions, sort_keys=True)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def hostname() -> str:
    return socket.gethostname()
