"""What CUDA looks like to this process, and why it is unusable when it is.

`CudaFacts.read()` gathers the facts that decide it (torch's CUDA build and kernels, the NVIDIA
driver, CUDA_VISIBLE_DEVICES, torch's own initialisation error) and `diagnosis()` names the first
cause with its fix. Device selection (`trainables.device`) reads them in each trial; the sweep's
GPU preflight ships them from every GPU node (`sweep.resources`). They are plain data, so that
each cause is tested on a machine without a GPU.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

MIN_DRIVER: dict[int, str] = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}
"""Oldest NVIDIA Linux driver per CUDA major version (NVIDIA's minor-version compatibility); torch
wheels bring their own CUDA runtime, only the driver comes from the machine."""
_PINNED_VISIBLE: str | None = None
"""CUDA_VISIBLE_DEVICES when this process first initialised CUDA: CUDA ignores later changes."""


@dataclass(frozen=True)
class GpuFacts:
    index: int
    name: str
    capability: tuple[int, int]
    total_memory: int  # bytes


@dataclass(frozen=True)
class CudaFacts:
    """What decides whether CUDA works in this process: `read()` reads them, tests build them."""

    torch_version: str
    torch_cuda: str | None  # torch.version.cuda; None for a CPU-only build
    arch_list: tuple[str, ...] = ()  # GPU architectures this build has kernels for
    visible_devices: str | None = None  # CUDA_VISIBLE_DEVICES; None when unset
    driver_version: str | None = None  # the NVIDIA kernel driver; None: none seen
    device_count: int = 0
    init_error: str | None = None  # torch's own message when CUDA failed to initialise
    gpus: tuple[GpuFacts, ...] = ()

    @classmethod
    def read(cls) -> CudaFacts:
        """This process's facts. Initialises CUDA when torch has it (call it only where CUDA is
        wanted): afterwards CUDA_VISIBLE_DEVICES can no longer change."""
        global _PINNED_VISIBLE
        visible, count, error, gpus = os.environ.get("CUDA_VISIBLE_DEVICES"), 0, None, []
        if torch.version.cuda:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    torch.cuda.init()
                    count = torch.cuda.device_count()
                except Exception as exc:  # torch raises RuntimeError/AssertionError with the cause
                    error = str(exc).strip() or type(exc).__name__
            if not count and not error:
                error = "; ".join(str(w.message) for w in caught) or "torch sees no CUDA device"
            if _PINNED_VISIBLE is None and torch.cuda.is_initialized():
                _PINNED_VISIBLE = visible if visible is not None else ""
            for i in range(count):
                p = torch.cuda.get_device_properties(i)
                gpus.append(GpuFacts(i, p.name, (p.major, p.minor), p.total_memory))
        arch = tuple(torch.cuda.get_arch_list()) if torch.version.cuda else ()
        return cls(torch.__version__, torch.version.cuda, arch, visible, nvidia_driver_version(),
                   count, error, tuple(gpus))

    @property
    def usable(self) -> bool:
        return self.device_count > 0 and self.init_error is None

    @property
    def gpu_present(self) -> bool:
        """An NVIDIA driver is visible here (so a GPU is meant to be used)."""
        return self.driver_version is not None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "usable": self.usable}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CudaFacts:
        d = {k: v for k, v in d.items() if k != "usable"}
        d["arch_list"] = tuple(d.get("arch_list", ()))
        d["gpus"] = tuple(GpuFacts(g["index"], g["name"], tuple(g["capability"]), g["total_memory"])
                          for g in d.get("gpus", ()))
        return cls(**d)

    def summary(self) -> str:
        build = f"CUDA {self.torch_cuda}" if self.torch_cuda else "CPU-only build"
        driver = f"NVIDIA driver {self.driver_version}" if self.driver_version else "no NVIDIA driver"
        visible = ("CUDA_VISIBLE_DEVICES unset" if self.visible_devices is None
                   else f"CUDA_VISIBLE_DEVICES={self.visible_devices!r}")
        return (f"torch {self.torch_version} ({build}), {driver}, {visible}, "
                f"{self.device_count} CUDA device(s)")

    def diagnosis(self) -> str:
        """Why CUDA is unusable here, and what to do about it (the first matching cause)."""
        if not self.torch_cuda:
            return (f"torch {self.torch_version} is a CPU-only build. Fix: install a CUDA build "
                    "of torch (the default Linux wheel from PyPI is one)")
        if self.visible_devices is not None and not visible_entries(self.visible_devices):
            return (f"CUDA_VISIBLE_DEVICES={self.visible_devices!r} hides every GPU from this "
                    "process. Fix: do not set it for Ray workers (Ray sets it per trial)")
        if self.driver_version is None:
            return ("no NVIDIA driver is visible (no /proc/driver/nvidia/version, no nvidia-smi): "
                    "the node has no GPU, or its container was started without GPU passthrough. "
                    "Fix: run the container with `--gpus all` (cluster.yaml does), and check "
                    "`nvidia-smi` on the node")
        needed = MIN_DRIVER.get((_numbers(self.torch_cuda) or (0,))[0])
        found = _numbers(self.driver_version)
        if needed and found and found < _numbers(needed):
            return (f"NVIDIA driver {self.driver_version} is too old for torch's CUDA "
                    f"{self.torch_cuda} (needs >= {needed}). Fix: use a newer driver (a current "
                    "AWS Deep Learning AMI), or a torch build for an older CUDA")
        if self.init_error:
            return f"CUDA failed to initialise: {self.init_error}"
        return "torch sees no CUDA device"


def nvidia_driver_version(proc_file: Path = Path("/proc/driver/nvidia/version")) -> str | None:
    """The loaded NVIDIA kernel driver's version, without initialising CUDA."""
    try:
        match = re.search(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+\.\d+(?:\.\d+)?)", proc_file.read_text())
        if match:
            return match.group(1)
    except OSError:
        pass
    smi = shutil.which("nvidia-smi")
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10) if smi else None
    except (OSError, subprocess.SubprocessError):
        out = None
    lines = out.stdout.strip().splitlines() if out and out.returncode == 0 else []
    return lines[0].strip() if lines else None


def _numbers(version: str | None) -> tuple[int, ...]:
    """"580.65.06" -> (580, 65, 6); anything unparsable -> ()."""
    try:
        return tuple(int(p) for p in str(version).split("."))
    except ValueError:
        return ()


def visible_entries(visible: str) -> list[str]:
    """The GPU ids CUDA_VISIBLE_DEVICES lists ("" lists none)."""
    return [v.strip() for v in visible.split(",") if v.strip()]


def cuda_pinned_visible() -> str | None:
    """CUDA_VISIBLE_DEVICES when this process initialised CUDA ('' when unset), or None while
    CUDA is not initialised (it can still be pointed at any GPU)."""
    if _PINNED_VISIBLE is None and torch.version.cuda and torch.cuda.is_initialized():
        return os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return _PINNED_VISIBLE
