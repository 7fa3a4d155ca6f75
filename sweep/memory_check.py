"""The memory check: each architecture's peak memory measured on the first GPU node, before any trial.

A GPU share is sized one way (sweep/resources.py): how many copies of an architecture's peak
memory, with headroom and a CUDA context each, fit on the GPU. The peak is the architecture
table's `peak_memory_gb` (traced on fake tensors by bench/footprint.py: what PyTorch's operators
allocate), unless this check measured it where the trials will run. With `--gpus-per-trial auto`
and a GPU node up, it runs three training steps and one evaluation pass of each architecture of
the grid with the sweep's own settings (preset and --set/--config overrides: batch, crops, eval
batch) on random inputs, in one Ray task holding a whole GPU, and reads the peak the way every
trial does (`trainables.device.peak_memory`): the caching allocator's peak reserved bytes, which
also hold the cuDNN workspaces and the fragmentation a trace cannot see. Seconds per
architecture; `--no-memory-check` keeps the table's numbers.

Without CUDA on the node (logical GPUs, as in the tests) the same code measures the CPU process's
peak resident set, and the sweep keeps the table's numbers.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

GB = 1e9
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemoryCheck:
    arch: str
    device: str
    """e.g. "cuda:NVIDIA A10G" or "cpu"."""
    peak_gb: float
    """GPU: the caching allocator's peak reserved bytes; CPU: the process's peak resident set."""
    allocated_gb: float | None = None
    """GPU: peak bytes handed to tensors (what the trace estimates)."""
    seconds_per_step: float | None = None

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")


def measure(arch: str, preset: str = "paper", overrides: dict[str, Any] | None = None) -> MemoryCheck:
    """Three training steps (two warm-up, one timed) of `arch` fine-tuned (every weight trains:
    the largest step) and one eval pass, with the sweep's config, on random inputs, on this
    process's GPU if it has one, else the CPU."""
    import torch

    from trainables.device import peak_memory, release_memory, reset_peak_memory
    from trainables.engine import training_loss
    from trainables.models import build_model
    from trainables.presets import get_preset
    from trainables.regimes import FINETUNE

    config = get_preset(preset).trial(arch, FINETUNE, 0, "all", **(overrides or {}))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    release_memory(device)
    reset_peak_memory(device)
    model = build_model(config, 2, pretrained=False).to(device)
    x = torch.randn(config.batch_size, 3, config.train_crop, config.train_crop, device=device)
    y = torch.zeros(config.batch_size, dtype=torch.long, device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    model.train()
    for _ in range(3):
        sync()
        t0 = time.perf_counter()
        training_loss(model(x), y, config.aux_loss_weight)[0].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
    step = time.perf_counter() - t0
    model.eval()
    with torch.inference_mode():
        model(torch.randn(config.eval_batch_size, 3, config.val_crop, config.val_crop, device=device))
    sync()
    peak = peak_memory(device)
    name = f"cuda:{torch.cuda.get_device_name(device)}" if device.type == "cuda" else "cpu"
    reserved = peak["peak_reserved_mb"]
    check = MemoryCheck(arch, name, (reserved or peak["peak_allocated_mb"]) * 2**20 / GB,
                        peak["peak_allocated_mb"] * 2**20 / GB if reserved else None, step)
    del model, optimizer, x, y
    release_memory(device)
    return check


def _measure_all(archs: list[str], preset: str, overrides: dict[str, Any] | None
                 ) -> list[dict[str, Any]]:
    return [asdict(measure(a, preset, overrides)) for a in archs]


def check_gpu_node(archs: list[str], preset: str, node: str | None = None, timeout_s: float = 600.0,
                   overrides: dict[str, Any] | None = None) -> tuple[list[MemoryCheck], str]:
    """Measure every architecture in one Ray task holding one whole GPU of `node` (default: the
    first alive GPU node), before any trial runs. Returns (checks, the node's id); ([], why) when
    no GPU node is up or the check failed (the sweep then keeps the table's numbers)."""
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
    except Exception as exc:  # a slow or failing check must not stop the sweep
        ray.cancel(ref, force=True)  # a timed-out check must not keep its GPU from the trials
        return [], f"it failed ({type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200]})"
    return [MemoryCheck(**r) for r in rows], node


def gpu_peaks(checks: list[MemoryCheck]) -> dict[str, float]:
    """Peak GB per architecture from the checks that ran on a GPU."""
    return {c.arch: c.peak_gb for c in checks if c.on_gpu}


def run_memory_check(spec, cluster, gpus: float | None, enabled: bool) -> dict[str, float] | None:
    """--gpus-per-trial auto with a GPU node up: each architecture's peak memory measured on the
    first GPU node whose CUDA works (the GPU preflight's facts, sweep.resources); None keeps the
    table's traced numbers. `spec` is the sweep's GridSpec, `cluster` its ClusterInfo."""
    if gpus is not None or not cluster.gpus or not enabled:
        return None
    usable = [r.node_id for r in cluster.gpu_nodes if (r.facts or {}).get("usable")]
    if not usable:
        log.info("memory check skipped: no GPU node with usable CUDA (logical GPUs?); GPU fractions "
            "from the architecture table's traced estimates")
        return None
    t0 = time.time()
    checks, where = check_gpu_node(list(spec.resolved_archs), spec.preset.name, usable[0],
                                   overrides=spec.overrides)  # the trials' batch and crops
    peaks = gpu_peaks(checks)
    if not checks:
        log.info(f"memory check: {where}; GPU fractions from the architecture table's traced estimates")
    elif not peaks:
        log.info(f"memory check ran on {checks[0].device} (no CUDA there); GPU fractions from the "
            "architecture table's traced estimates")
    else:
        log.info(f"memory check on {checks[0].device} ({time.time() - t0:.0f} s): " + ", ".join(
            f"{c.arch} {c.peak_gb:.2f} GB" for c in checks if c.on_gpu))
    return peaks or None


class _DeprecatedProbeFlag(argparse.BooleanOptionalAction):
    """--probe/--no-probe: the memory check's name until this release; accepted, with a warning."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        new = "--no-memory-check" if option_string.startswith("--no-") else "--memory-check"
        log.warning("%s is deprecated and will be removed in the next release: use %s",
                    option_string, new)
        super().__call__(parser, namespace, values, option_string)


def add_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--memory-check/--no-memory-check, and the old --probe/--no-probe for one release."""
    parser.add_argument("--memory-check", action=argparse.BooleanOptionalAction, default=True,
                        help="with --gpus-per-trial auto: measure each architecture's peak GPU "
                             "memory on the first GPU node before the trials start and size the "
                             "fractions from it (default on; --no-memory-check uses the "
                             "architecture table's traced estimates)")
    parser.add_argument("--probe", dest="memory_check", action=_DeprecatedProbeFlag,
                        default=argparse.SUPPRESS,
                        help="deprecated name of --memory-check (removed in the next release)")
