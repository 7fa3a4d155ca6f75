"""Resources per trial: a GPU fraction per architecture, sized from its peak memory, and the
spreading of fractional trials over the GPUs of a node.

Several small trials share one GPU (the study's models need 1-4 GB at batch 6; a data-center
GPU has 24-141 GB), so `--gpus-per-trial auto` packs `n` trials of an architecture per GPU,
where `n` is how many copies of its peak memory (with headroom and a CUDA context each) fit,
capped at MAX_TRIALS_PER_GPU. A cluster without GPUs gets CPU-only trials.

Ray gives a fractional request the *fullest* GPU it still fits on (best fit, see
`NodeResourceInstanceSet::TryAllocate` in Ray's source), so on a 4-GPU node eight 0.25-GPU
trials all land on GPUs 0 and 1 while 2 and 3 idle. `spread_trial_gpu` undoes that: Ray still
decides which node runs a trial and how many share a node, and each trial then takes the least
loaded GPU of its node that has room for its share, from a small locked ledger file that the
trial processes of that node share (docs/gpu.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainables.device import CUDA_CONTEXT_GB, cuda_pinned_visible
from trainables.errors import UserError
from trainables.models import get_arch

HEADROOM = 1.25
"""Multiplier on the measured peak (allocator fragmentation, cuDNN workspaces)."""
MAX_TRIALS_PER_GPU = 8
"""Beyond this, trials on one GPU mostly wait for each other's kernels."""


@dataclass(frozen=True)
class GpuNodeReport:
    """What the one-off CUDA probe found on one GPU node (`probe_gpu_nodes`)."""

    node_id: str
    address: str
    gpus: float
    facts: dict[str, Any] | None = None
    """trainables.device.CudaFacts.to_dict() of a process holding one of the node's GPUs."""
    memory_gb: float | None = None
    code_version: str | None = None
    error: str | None = None
    """The probe itself failed or did not answer in time."""


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
    """This machine, without Ray (for --dry-run). A machine with an NVIDIA driver gets a GPU
    node report, so that `preflight.check_gpu_nodes` also says when CUDA is unusable here."""
    from trainables.device import CudaFacts
    from trainables.provenance import code_version

    cpus = float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    facts = CudaFacts.probe()
    if not facts.gpu_present and not facts.usable:
        return ClusterInfo(cpus, 0.0, None, "this machine")
    memory = min(g.total_memory for g in facts.gpus) / 2**30 if facts.gpus else None
    report = GpuNodeReport("local", "this machine", float(facts.device_count), facts.to_dict(),
                           memory, code_version())
    return ClusterInfo(cpus, float(facts.device_count), memory, "this machine", (report,))


def _probe_gpu_node() -> dict[str, Any]:
    """Runs as a tiny Ray task holding a sliver of one GPU of a node: imports torch and
    initialises CUDA there, once per node and sweep."""
    from trainables.device import CudaFacts
    from trainables.provenance import code_version

    facts = CudaFacts.probe()
    memory = min(g.total_memory for g in facts.gpus) / 2**30 if facts.gpus else None
    return {"facts": facts.to_dict(), "memory_gb": memory, "code_version": code_version()}


def probe_gpu_nodes(timeout_s: float = 120.0) -> list[GpuNodeReport]:
    """One CUDA probe per alive GPU node of the connected Ray cluster, in parallel."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("GPU")]
    if not nodes:
        return []
    probe = ray.remote(num_cpus=0, num_gpus=0.0001, max_retries=0)(_probe_gpu_node)
    refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
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
        except Exception as exc:  # the probe raised on that node (e.g. torch fails to import)
            reports.append(GpuNodeReport(**base, error=f"{type(exc).__name__}: {exc}".strip()))
    return reports


def ray_cluster_info(probe_timeout_s: float = 120.0) -> ClusterInfo:
    """The connected Ray cluster's CPUs and GPUs, and one CUDA probe per GPU node (its
    facts, code version and GPU memory; the smallest GPU sizes the fractions)."""
    import ray

    total = ray.cluster_resources()
    gpus = float(total.get("GPU", 0.0))
    reports = tuple(probe_gpu_nodes(probe_timeout_s)) if gpus else ()
    memories = [r.memory_gb for r in reports if r.memory_gb]
    return ClusterInfo(float(total.get("CPU", 0.0)), gpus, min(memories) if memories else None,
                       "ray cluster", reports)


# -------------------------------------------------------------------- spreading over GPUs
def choose_gpu(gpus: Sequence[str], claims: Iterable[tuple[str, float]], share: float,
               assigned: dict[str, int] | None = None, fallback: str | None = None) -> str | None:
    """The GPU for a new trial holding `share` of one: among the node's GPUs with room for it
    (the shares already claimed plus this one at most 1), the least loaded; ties go to the GPU
    given out least often so far, then the lowest id. None of them has room (the trials' shares
    fragment the GPUs differently from Ray's packing): `fallback`, Ray's own choice."""
    usage = dict.fromkeys(gpus, 0.0)
    for gpu, claimed in claims:
        if gpu in usage:
            usage[gpu] += claimed
    fits = [g for g in gpus if usage[g] + share <= 1.0 + 1e-9]
    if not fits:
        return fallback
    assigned = assigned or {}
    return min(fits, key=lambda g: (round(usage[g], 6), assigned.get(g, 0), list(gpus).index(g)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class GpuLedger:
    """Which trial process of a node holds how much of which GPU: a JSON file under an
    exclusive lock (fcntl), shared by the trial processes of one node. Claims of processes
    that died are dropped on the next access."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @contextlib.contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                try:
                    state = json.loads(self.path.read_text())
                except (OSError, ValueError):
                    state = {}
                state.setdefault("claims", {})
                state.setdefault("assigned", {})
                state["claims"] = {pid: c for pid, c in state["claims"].items() if _alive(int(pid))}
                yield state
                tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps(state, sort_keys=True))
                os.replace(tmp, self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def claim(self, pid: int, gpus: Sequence[str], share: float, fallback: str,
              pinned: str | None = None) -> str:
        """Record and return the GPU of process `pid` (its earlier claim replaced). `pinned`:
        the GPU this process already initialised CUDA on, the only one it can still use."""
        with self._state() as state:
            claims = state["claims"]
            claims.pop(str(pid), None)
            if pinned is not None:
                gpu = pinned
            else:
                gpu = choose_gpu(gpus, [(c["gpu"], c["share"]) for c in claims.values()], share,
                                 state["assigned"], fallback) or fallback
            claims[str(pid)] = {"gpu": gpu, "share": share}
            state["assigned"][gpu] = state["assigned"].get(gpu, 0) + 1
            return gpu

    def release(self, pid: int) -> None:
        with self._state() as state:
            state["claims"].pop(str(pid), None)

    def claims(self) -> dict[str, dict[str, Any]]:
        with self._state() as state:
            return dict(state["claims"])


def trial_gpu_share() -> float | None:
    """The GPU fraction Ray Tune gave the current trial (None outside a trial or without GPU)."""
    try:
        from ray import tune

        share = tune.get_context().get_trial_resources().required_resources.get("GPU", 0.0)
        return float(share) or None
    except Exception:
        return None


def _node_gpu_count(node_id: str) -> int:
    import ray

    for node in ray.nodes():
        if node.get("NodeID") == node_id:
            return int(node.get("Resources", {}).get("GPU", 0))
    return 0


def ledger_path(node_id: str) -> Path:
    return Path(tempfile.gettempdir()) / f"feature-reuse-gpus-{node_id[:16]}.json"


@contextlib.contextmanager
def spread_trial_gpu(share: float | None) -> Iterator[list[str]]:
    """Inside a Ray trial: the GPU ids the trial uses, spread over its node's GPUs.

    A fractional trial takes the least loaded GPU of its node (`choose_gpu`) and points
    CUDA_VISIBLE_DEVICES at it before CUDA starts; whole-GPU trials and trials without a GPU
    keep Ray's assignment. A reused actor that already initialised CUDA stays on its GPU. The
    claim is released when the block ends (or when the process dies)."""
    import ray

    ray_ids = [str(g) for g in ray.get_gpu_ids()]
    if len(ray_ids) != 1 or not share or share >= 1:
        yield ray_ids
        return
    node_id = ray.get_runtime_context().get_node_id()
    gpus = [str(i) for i in range(_node_gpu_count(node_id))]
    pinned_visible = cuda_pinned_visible()
    pinned = None
    if pinned_visible is not None:
        entries = [v.strip() for v in pinned_visible.split(",") if v.strip()]
        if len(entries) != 1 or entries[0] not in gpus:
            yield ray_ids  # CUDA started with several GPUs (or other ids) visible: keep Ray's
            return
        pinned = entries[0]
    if ray_ids[0] not in gpus:  # ids that are not 0..n-1 (a raylet started on some GPUs only)
        yield ray_ids
        return
    ledger = GpuLedger(ledger_path(node_id))
    pid = os.getpid()
    gpu = ledger.claim(pid, gpus, share, fallback=ray_ids[0], pinned=pinned)
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    try:
        yield [gpu]
    finally:
        ledger.release(pid)
