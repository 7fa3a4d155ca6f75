"""One short probe per architecture on the first GPU node: measured peak memory for the fractions.

The registry's `peak_memory_gb` is derived by tracing a paper-config step on fake tensors
(trainables/footprint.py, bench/footprint.py): what PyTorch's operators allocate, not what a
GPU process really holds (cuDNN workspaces, the caching allocator's rounding and fragmentation).
Before the Tuner starts, `--gpus-per-trial auto` runs, on the first GPU node, three training steps
and one evaluation pass of each architecture of the grid with the sweep's settings (the preset
and any --set/--config overrides: batch, crops, eval batch) on random inputs, and sizes the
fractions from the CUDA caching allocator's peak *reserved* bytes instead. The probe takes
seconds per architecture; `--no-probe` skips it.

Without CUDA on the node (logical GPUs, as in the tests), the probe measures the CPU allocator
instead (the profiler's allocation events) and the sweep keeps the registry's numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

GB = 1e9


@dataclass(frozen=True)
class Probe:
    arch: str
    device: str
    """e.g. "cuda:NVIDIA A10G" or "cpu"."""
    peak_gb: float
    """GPU: the caching allocator's peak reserved bytes; CPU: the allocator's peak bytes."""
    allocated_gb: float | None = None
    """GPU: peak bytes handed to tensors (what the trace estimates)."""
    seconds_per_step: float | None = None

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")


def measure(arch: str, preset: str = "paper", overrides: dict[str, Any] | None = None) -> Probe:
    """Three training steps (two warm-up, one measured; fine-tuning: the largest) and one eval
    pass of `arch` with the sweep's config (preset + overrides) on random inputs, on this
    process's GPU if it has one, else the CPU."""
    import time

    import torch

    from trainables.engine import training_loss
    from trainables.footprint import measured_cpu_peak
    from trainables.models import build_model
    from trainables.presets import get_preset
    from trainables.regimes import FINETUNE

    config = get_preset(preset).trial(arch, FINETUNE, 0, "all", **(overrides or {}))
    size = config.train_crop
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = build_model(config, 2, pretrained=False)
    x = torch.randn(config.batch_size, 3, size, size)
    y = torch.zeros(config.batch_size, dtype=torch.long)
    if device.type != "cuda":
        peak = measured_cpu_peak(model, x, y, config.lr, config.momentum, config.aux_loss_weight)
        return Probe(arch, "cpu", peak / GB)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model.to(device)
    x, y = x.to(device), y.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    model.train()
    for i in range(3):
        if i == 2:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        training_loss(model(x), y, config.aux_loss_weight)[0].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    step = time.perf_counter() - t0
    model.eval()
    with torch.inference_mode():
        model(torch.randn(config.eval_batch_size, 3, config.val_crop, config.val_crop, device=device))
    torch.cuda.synchronize()
    probe = Probe(arch, f"cuda:{torch.cuda.get_device_name(device)}", torch.cuda.max_memory_reserved() / GB,
                  torch.cuda.max_memory_allocated() / GB, step)
    del model, optimizer, x, y
    torch.cuda.empty_cache()
    return probe


def _measure_all(archs: list[str], preset: str, overrides: dict[str, Any] | None
                 ) -> list[dict[str, Any]]:
    from dataclasses import asdict

    return [asdict(measure(a, preset, overrides)) for a in archs]


def probe_gpu_node(archs: list[str], preset: str, node: str | None = None,
                   timeout_s: float = 600.0, overrides: dict[str, Any] | None = None
                   ) -> tuple[list[Probe], str]:
    """Measure every architecture in one Ray task holding one whole GPU of `node` (default: the
    first alive GPU node), before any trial runs. Returns (probes, the node's id); ([], why)
    when no GPU node is up or the probe failed (the sweep then keeps the registry's numbers)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if node is None:
        nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("GPU")]
        if not nodes:
            return [], "no GPU node is up yet"
        node = nodes[0]["NodeID"]
    task = ray.remote(num_cpus=1, num_gpus=1, max_retries=0)(_measure_all).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
    ref = task.remote(list(archs), preset, overrides)
    try:
        rows = ray.get(ref, timeout=timeout_s)
    except Exception as exc:  # a slow or failing probe must not stop the sweep
        ray.cancel(ref, force=True)  # a timed-out probe must not keep its GPU from the trials
        return [], f"the probe failed ({type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200]})"
    return [Probe(**r) for r in rows], node


def gpu_peaks(probes: list[Probe]) -> dict[str, float]:
    """Peak GB per architecture from the probes that ran on a GPU."""
    return {p.arch: p.peak_gb for p in probes if p.on_gpu}


def probe_memory(spec, cluster, gpus: float | None, enabled: bool, say: Callable[[str], None]
                 ) -> dict[str, float] | None:
    """--gpus-per-trial auto with a GPU node up: each architecture's peak memory measured by a
    short probe on the first GPU node whose CUDA works (sweep.resources' CUDA probe); None keeps
    the registry's traced estimates. `spec` is the sweep's GridSpec, `cluster` its ClusterInfo."""
    if gpus is not None or not cluster.gpus or not enabled:
        return None
    usable = [r.node_id for r in cluster.gpu_nodes if (r.facts or {}).get("usable")]
    if not usable:
        say("memory probe skipped: no GPU node with usable CUDA (logical GPUs?); GPU fractions "
            "from the registry's traced estimates")
        return None
    import time

    t0 = time.time()
    probes, where = probe_gpu_node(list(spec.resolved_archs), spec.preset.name, usable[0],
                                   overrides=spec.overrides)  # the trials' batch and crops
    peaks = gpu_peaks(probes)
    if not probes:
        say(f"memory probe: {where}; GPU fractions from the registry's traced estimates")
    elif not peaks:
        say(f"memory probe ran on {probes[0].device} (no CUDA there); GPU fractions from the "
            "registry's traced estimates")
    else:
        say(f"memory probe on {probes[0].device} ({time.time() - t0:.0f} s): " + ", ".join(
            f"{p.arch} {p.peak_gb:.2f} GB" for p in probes if p.on_gpu))
    return peaks or None
