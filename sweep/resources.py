"""Resources per trial: a GPU fraction per architecture, sized from its measured peak memory.

Several small trials share one GPU (the study's models need 1-4 GB at batch 6; a data-center
GPU has 24-141 GB), so `--gpus-per-trial auto` packs `n` trials of an architecture per GPU,
where `n` is how many copies of its peak memory (with headroom and a CUDA context each) fit,
capped at MAX_TRIALS_PER_GPU. A cluster without GPUs gets CPU-only trials.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from trainables.errors import UserError
from trainables.registry import get_arch

HEADROOM = 1.25
"""Multiplier on the measured peak (allocator fragmentation, cuDNN workspaces)."""
CUDA_CONTEXT_GB = 0.5
"""What each trial process pays for its CUDA context, outside PyTorch's allocator."""
MAX_TRIALS_PER_GPU = 8
"""Beyond this, trials on one GPU mostly wait for each other's kernels."""


@dataclass(frozen=True)
class ClusterInfo:
    cpus: float
    gpus: float
    gpu_memory_gb: float | None = None
    """Memory of the smallest GPU; None when unknown (no GPU up yet)."""
    source: str = "local"

    def describe(self) -> str:
        gpu = (f"{self.gpus:g} GPU" + (f" ({self.gpu_memory_gb:.0f} GB each)" if self.gpu_memory_gb
                                        else "")) if self.gpus else "no GPU"
        return f"{self.cpus:g} CPU, {gpu} [{self.source}]"


def trials_per_gpu(peak_memory_gb: float, gpu_memory_gb: float) -> int:
    need = peak_memory_gb * HEADROOM + CUDA_CONTEXT_GB
    return max(1, min(MAX_TRIALS_PER_GPU, int(gpu_memory_gb // need)))


def fraction_for(n: int) -> float:
    """1/n rounded down to Ray's resource precision (1e-4), so that n trials always fit."""
    return math.floor(10_000 / n) / 10_000


def parse_gpus_per_trial(value: str) -> float | None:
    """"auto" -> None; otherwise a fraction in [0, 1] (0: CPU only)."""
    if str(value).strip().lower() == "auto":
        return None
    try:
        f = float(value)
        if not 0.0 <= f <= 1.0:
            raise ValueError
        return f
    except ValueError:
        raise UserError(f"--gpus-per-trial {value!r}: use 'auto' or a fraction of one GPU between "
                        "0 and 1 (e.g. 0.25 packs four trials per GPU; 0 runs on CPU)") from None


def parse_cpus_per_trial(value: str) -> float:
    try:
        f = float(value)
        if f <= 0:
            raise ValueError
        return f
    except ValueError:
        raise UserError(f"--cpus-per-trial {value!r}: use a positive number of CPUs "
                        "(e.g. 1; fractions such as 0.5 are allowed)") from None


@dataclass(frozen=True)
class TrialResources:
    cpu: float
    gpu: float = 0.0

    def bundle(self) -> dict[str, float]:
        return {"CPU": self.cpu, **({"GPU": self.gpu} if self.gpu else {})}

    def describe(self) -> str:
        return f"{self.cpu:g} CPU" + (f" + {self.gpu:g} GPU" if self.gpu else "")


@dataclass(frozen=True)
class ResourcePlan:
    """Resources per architecture; callable on a trial's Tune config (tune.with_resources)."""

    per_arch: dict[str, TrialResources]
    mode: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def for_arch(self, arch: str) -> TrialResources:
        return self.per_arch[arch]

    def __call__(self, config: dict[str, Any]):
        from ray.tune import PlacementGroupFactory

        return PlacementGroupFactory([self.for_arch(config["point"]["trial"]["arch"]).bundle()])

    def describe(self) -> list[str]:
        lines = [f"resources ({self.mode}):"]
        for arch, res in self.per_arch.items():
            per_gpu = f", {round(1 / res.gpu)} trials per GPU" if res.gpu else ""
            lines.append(f"  {arch:14s} {res.describe()}{per_gpu}")
        return lines + [f"  note: {n}" for n in self.notes]


def plan_resources(archs: Iterable[str], cluster: ClusterInfo, gpus_per_trial: float | None,
                   cpus_per_trial: float = 1.0, gpu_memory_gb: float | None = None) -> ResourcePlan:
    """The resource plan for these architectures on this cluster.

    gpus_per_trial None ("auto"): GPU fraction from each architecture's peak memory when the
    cluster has GPUs (or when `gpu_memory_gb` is given, for autoscaling clusters whose GPU nodes
    are not up yet); CPU only otherwise. A number: that fraction for every trial (0: CPU)."""
    archs = list(dict.fromkeys(archs))
    notes: list[str] = []
    if gpus_per_trial is not None:
        res = TrialResources(cpus_per_trial, gpus_per_trial)
        mode = f"--gpus-per-trial {gpus_per_trial:g}" if gpus_per_trial else "CPU only"
        return ResourcePlan({a: res for a in archs}, mode)
    memory = gpu_memory_gb or cluster.gpu_memory_gb
    if not cluster.gpus and not gpu_memory_gb:
        return ResourcePlan({a: TrialResources(cpus_per_trial) for a in archs},
                            "auto: no GPU in the cluster, CPU only")
    if memory is None:
        memory = 16.0
        notes.append("GPU memory unknown, assumed 16 GB; pass --gpu-memory-gb to size fractions")
    per_arch = {}
    for name in archs:
        n = trials_per_gpu(get_arch(name).peak_memory_gb, memory)
        per_arch[name] = TrialResources(cpus_per_trial, fraction_for(n))
    return ResourcePlan(per_arch, f"auto: GPU fractions for {memory:.0f} GB GPUs", tuple(notes))


def local_cluster_info() -> ClusterInfo:
    """This machine, without Ray (for --dry-run)."""
    import torch

    cpus = float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        memory = min(torch.cuda.get_device_properties(i).total_memory for i in range(count)) / 2**30
        return ClusterInfo(cpus, float(count), memory, "this machine")
    return ClusterInfo(cpus, 0.0, None, "this machine")


def _gpu_memory_gb() -> float:
    import torch

    return torch.cuda.get_device_properties(0).total_memory / 2**30


def ray_cluster_info(probe_timeout_s: float = 120.0) -> ClusterInfo:
    """The connected Ray cluster's CPUs and GPUs; GPU memory measured by one tiny task on each
    GPU node (the smallest wins)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    total = ray.cluster_resources()
    gpus = float(total.get("GPU", 0.0))
    memory = None
    if gpus:
        probe = ray.remote(num_cpus=0, num_gpus=0.0001)(_gpu_memory_gb)
        refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
                              ).remote()
                for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("GPU")]
        try:
            memory = min(ray.get(refs, timeout=probe_timeout_s))
        except Exception:  # a logical GPU without CUDA (tests), or a probe that timed out
            memory = None
    return ClusterInfo(float(total.get("CPU", 0.0)), gpus, memory, "ray cluster")
