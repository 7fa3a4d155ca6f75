"""Resources per trial: a GPU fraction per architecture, sized from its peak memory.

Several small trials share one GPU (the study's models need 1-4 GB at batch 6; a data-center
GPU has 24-141 GB), so `--gpus-per-trial auto` packs `n` trials of an architecture per GPU,
where `n` is how many copies of its peak memory (with headroom and a CUDA context each) fit,
capped at MAX_TRIALS_PER_GPU. This is the one way a share is sized: the peak is the architecture
table's `peak_memory_gb`, or what the memory check measured on the first GPU node
(sweep/memory_check.py); each trial then caps itself to its share
(`trainables.device.set_memory_fraction`). A cluster without GPUs gets CPU-only trials.
Which GPU of a node a fractional trial takes is another question: sweep/gpu_spread.py.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trainables.arch_record import UNMEASURED_PEAK_GB
from trainables.archs import resolve
from trainables.device import CUDA_CONTEXT_GB
from trainables.errors import UserError

HEADROOM = 1.25
"""Multiplier on the measured peak (allocator fragmentation, cuDNN workspaces)."""
MAX_TRIALS_PER_GPU = 8
"""Beyond this, trials on one GPU mostly wait for each other's kernels."""


@dataclass(frozen=True)
class GpuNodeReport:
    """What the one-off CUDA check found on one GPU node (`read_gpu_nodes`)."""

    node_id: str
    address: str
    gpus: float
    facts: dict[str, Any] | None = None
    """trainables.provenance.CudaFacts.to_dict() of a process holding one of the node's GPUs."""
    memory_gb: float | None = None
    code_version: str | None = None
    error: str | None = None
    """The check itself failed or did not answer in time."""


@dataclass(frozen=True)
class ClusterInfo:
    cpus: float
    gpus: float
    gpu_memory_gb: float | None = None
    """Memory of the smallest GPU; None when unknown (no GPU up yet)."""
    source: str = "local"
    gpu_nodes: tuple[GpuNodeReport, ...] = ()

    def describe(self) -> str:
        gpu = (f"{self.gpus:g} GPU" + (f" ({self.gpu_memory_gb:.0f} GB each)" if self.gpu_memory_gb
                                        else "")) if self.gpus else "no GPU"
        return f"{self.cpus:g} CPU, {gpu} [{self.source}]"


def trials_per_gpu(peak_memory_gb: float, gpu_memory_gb: float) -> int:
    """How many trials of this peak memory share one GPU: copies of it with HEADROOM and a CUDA
    context each, at least 1, at most MAX_TRIALS_PER_GPU."""
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
        if not math.isfinite(f) or f <= 0:  # nan passed `f <= 0` and hung the sweep
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
                   cpus_per_trial: float = 1.0, gpu_memory_gb: float | None = None,
                   peak_memory_gb: Mapping[str, float] | None = None) -> ResourcePlan:
    """The resource plan for these architectures on this cluster.

    gpus_per_trial None ("auto"): GPU fraction from each architecture's peak memory when the
    cluster has GPUs (or when `gpu_memory_gb` is given, for autoscaling clusters whose GPU nodes
    are not up yet); CPU only otherwise. A number: that fraction for every trial (0: CPU).
    `peak_memory_gb` (measured per architecture, sweep/memory_check.py) replaces the table's
    (a derived model's: UNMEASURED_PEAK_GB)."""
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
    measured = peak_memory_gb or {}
    peaks = {name: measured[name] if name in measured else resolve(name).peak_memory_gb
             for name in archs}
    per_arch = {name: TrialResources(cpus_per_trial, fraction_for(trials_per_gpu(peak, memory)))
                for name, peak in peaks.items()}
    unmeasured = [a for a in archs if a not in measured and resolve(a).source != "study"]
    if unmeasured:
        notes.append(f"no registry memory figure for {', '.join(unmeasured)}: assumed "
                     f"{UNMEASURED_PEAK_GB:g} GB per trial (conservative); --gpus-per-trial "
                     "overrides")
    return ResourcePlan(per_arch, f"auto: GPU fractions for {memory:.0f} GB GPUs", tuple(notes))


def local_cluster_info() -> ClusterInfo:
    """This machine, without Ray (for --dry-run). A machine with an NVIDIA driver gets a GPU
    node report, so that `preflight.check_gpu_nodes` also says when CUDA is unusable here."""
    from trainables.provenance import CudaFacts, code_version

    cpus = float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    facts = CudaFacts.read()
    if not facts.gpu_present and not facts.usable:
        return ClusterInfo(cpus, 0.0, None, "this machine")
    memory = min(g.total_memory for g in facts.gpus) / 2**30 if facts.gpus else None
    report = GpuNodeReport("local", "this machine", float(facts.device_count), facts.to_dict(),
                           memory, code_version())
    return ClusterInfo(cpus, float(facts.device_count), memory, "this machine", (report,))


def _read_gpu_node() -> dict[str, Any]:
    """Runs as a tiny Ray task holding a sliver of one GPU of a node: imports torch and
    initialises CUDA there, once per node and sweep."""
    from trainables.provenance import CudaFacts, code_version

    facts = CudaFacts.read()
    memory = min(g.total_memory for g in facts.gpus) / 2**30 if facts.gpus else None
    return {"facts": facts.to_dict(), "memory_gb": memory, "code_version": code_version()}


def read_gpu_nodes(timeout_s: float = 120.0) -> list[GpuNodeReport]:
    """The CUDA facts of each alive GPU node of the connected Ray cluster, read in parallel."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("GPU")]
    if not nodes:
        return []
    task = ray.remote(num_cpus=0, num_gpus=0.0001, max_retries=0)(_read_gpu_node)
    refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
                          ).remote() for n in nodes]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    reports = []
    for node, ref in zip(nodes, refs, strict=True):
        base = {"node_id": node["NodeID"], "address": node.get("NodeManagerAddress", "?"),
                "gpus": float(node["Resources"]["GPU"])}
        if ref not in ready:
            ray.cancel(ref, force=True)
            reports.append(GpuNodeReport(**base, error=f"no answer within {timeout_s:.0f} s"))
            continue
        try:
            reports.append(GpuNodeReport(**base, **ray.get(ref)))
        except Exception as exc:  # the task raised on that node (e.g. torch fails to import)
            reports.append(GpuNodeReport(**base, error=f"{type(exc).__name__}: {exc}".strip()))
    return reports


def ray_cluster_info(timeout_s: float = 120.0) -> ClusterInfo:
    """The connected Ray cluster's CPUs and GPUs, and each GPU node's CUDA facts, code version
    and GPU memory (the smallest GPU sizes the fractions)."""
    import ray

    total = ray.cluster_resources()
    gpus = float(total.get("GPU", 0.0))
    reports = tuple(read_gpu_nodes(timeout_s)) if gpus else ()
    memories = [r.memory_gb for r in reports if r.memory_gb]
    return ClusterInfo(float(total.get("CPU", 0.0)), gpus, min(memories) if memories else None,
                       "ray cluster", reports)
