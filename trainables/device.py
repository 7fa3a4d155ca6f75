"""The device a trial trains on, and the CUDA settings around it, stated rather than assumed.

The training loop calls, in order (docs/gpu.md): `select_device` (Ray gave a GPU that CUDA cannot
use: DeviceError naming the cause), `check_precision` (bf16 where the GPU lacks it: DeviceError),
`apply_determinism`, `set_memory_fraction` (cap the process to its share of the GPU),
`reset_peak_memory`; then trains under `autocast`, and ends with `peak_memory` and
`release_memory`. Whatever depends on the machine takes the CUDA facts as an argument
(`trainables.provenance.CudaFacts`, a capability, a memory size), so that each case is tested
without a GPU.
"""

from __future__ import annotations

import copy
import gc
import os
import platform
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch

from trainables.errors import UserError
from trainables.provenance import CudaFacts, visible_entries

LOGICAL_GPUS_ENV = "FEATURE_REUSE_LOGICAL_GPUS"
"""1 where Ray's GPUs are logical only (tests, simulated clusters): a trial given a GPU that CUDA
cannot use trains on the CPU, and its `device` says so. Never set on real GPU machines."""
CUDA_CONTEXT_GB = 0.5
"""What each trial process pays for its CUDA context and kernels, outside PyTorch's allocator."""
BF16_MIN_CAPABILITY = (8, 0)
"""bf16 tensor cores: Ampere (A100, A10G, L4) and later."""
CUBLAS_WORKSPACE = ":4096:8"
"""cuBLAS workspace setting that makes its GEMMs deterministic (CUDA >= 10.2)."""


class DeviceError(UserError):
    """The machine cannot run the trial as configured; the message names the cause and the fix."""


def logical_gpus_allowed() -> bool:
    return os.environ.get(LOGICAL_GPUS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def select_device(gpu_ids: Sequence[str | int] | None, facts: CudaFacts | None = None,
                  logical_ok: bool | None = None) -> torch.device:
    """The device of a trial, never a silent CPU fallback. `gpu_ids`: Ray's assignment
    (`ray.get_gpu_ids()`), None outside Ray (the single-trial CLI).
    - Ray assigned no GPU: the CPU. Ray assigned a GPU: that GPU, or a DeviceError naming the
      cause; with logical GPUs allowed (simulated clusters only) the CPU instead.
    - Outside Ray: GPU 0 when CUDA works; the CPU when there is no NVIDIA driver (or
      CUDA_VISIBLE_DEVICES='' chooses it); a DeviceError when a driver is there but CUDA fails."""
    if gpu_ids is not None and len(gpu_ids) == 0:
        return torch.device("cpu")
    facts = facts or CudaFacts.read()
    if gpu_ids is None:
        if facts.usable:
            check_architecture(facts, 0)
            return torch.device("cuda", 0)
        chose_cpu = facts.visible_devices is not None and not visible_entries(facts.visible_devices)
        if facts.gpu_present and facts.torch_cuda and not chose_cpu:
            raise DeviceError(f"this machine has an NVIDIA GPU but CUDA is unusable: "
                              f"{facts.diagnosis()} [{facts.summary()}]. To train on the CPU "
                              "anyway, hide the GPU: CUDA_VISIBLE_DEVICES=''")
        return torch.device("cpu")
    ids = [str(g) for g in gpu_ids]
    if not facts.usable:
        if logical_gpus_allowed() if logical_ok is None else logical_ok:
            return torch.device("cpu")
        raise DeviceError(f"Ray assigned GPU {','.join(ids)} to this trial, but CUDA is unusable "
                          f"here: {facts.diagnosis()} [{facts.summary()}]")
    index = device_index(ids[0], facts.visible_devices)
    if index >= facts.device_count:
        raise DeviceError(f"Ray assigned GPU {ids[0]}, which is CUDA device {index}, but torch sees "
                          f"only {facts.device_count} device(s) [{facts.summary()}]")
    check_architecture(facts, index)
    return torch.device("cuda", index)


def device_index(gpu_id: str, visible: str | None) -> int:
    """The CUDA index of Ray's GPU id in this process (Ray lists its ids in CUDA_VISIBLE_DEVICES)."""
    if visible is None and gpu_id.isdigit():
        return int(gpu_id)
    if visible is not None and gpu_id in visible_entries(visible):
        return visible_entries(visible).index(gpu_id)
    raise DeviceError(f"Ray assigned GPU {gpu_id!r}, but " + (
        "CUDA_VISIBLE_DEVICES is unset and the id is not a device index" if visible is None else
        f"CUDA_VISIBLE_DEVICES={visible!r} does not list it: something changed "
        "CUDA_VISIBLE_DEVICES after Ray set it"))


def arch_supported(capability: tuple[int, int], arch_list: Sequence[str]) -> bool:
    """Whether a torch build with these kernels runs on a GPU of this compute capability: a cubin
    (sm_XY) of the same major version and no newer minor, or PTX (compute_XY) no newer."""
    for arch in arch_list:
        kind, _, digits = arch.partition("_")
        if digits.isdigit():
            built = (int(digits[:-1]), int(digits[-1]))
            if (kind == "sm" and built[0] == capability[0] and built[1] <= capability[1]) or (
                    kind == "compute" and built <= tuple(capability)):
                return True
    return False


def check_architecture(facts: CudaFacts, index: int) -> None:
    if facts.arch_list and index < len(facts.gpus) and not arch_supported(
            facts.gpus[index].capability, facts.arch_list):
        gpu = facts.gpus[index]
        raise DeviceError(f"{gpu.name} (compute capability {gpu.capability[0]}.{gpu.capability[1]}) "
                          f"is not supported by torch {facts.torch_version}, whose kernels are for "
                          f"{', '.join(facts.arch_list)}. Fix: use a newer GPU (e.g. g5/g6 "
                          "instances), or a torch build for an older CUDA with kernels for it")


def check_precision(device: torch.device, bf16: bool, capability: tuple[int, int] | None = None,
                    name: str | None = None) -> None:
    """bf16 autocast only where the hardware has it: a clear error before training otherwise."""
    need = f"{BF16_MIN_CAPABILITY[0]}.{BF16_MIN_CAPABILITY[1]}"
    if bf16 and device.type != "cuda":
        raise DeviceError(f"bf16 needs a CUDA GPU of compute capability >= {need}, but this trial "
                          f"runs on {device.type}. Fix: turn bf16 off (--set bf16=false), or run "
                          "on such a GPU")
    if bf16 and capability is None:
        capability, name = torch.cuda.get_device_capability(device), torch.cuda.get_device_name(device)
    if bf16 and tuple(capability) < BF16_MIN_CAPABILITY:
        raise DeviceError(f"bf16 needs compute capability >= {need} (A100, A10G, L4, H100 and "
                          f"later); {name or 'this GPU'} has {capability[0]}.{capability[1]}. Fix: "
                          "turn bf16 off (--set bf16=false)")


def autocast(device: torch.device, bf16: bool) -> AbstractContextManager:
    """bf16 autocast on the trial's device when the config asks for it (check_precision has
    refused it where the GPU lacks it), else nothing: the one place autocast is chosen."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def apply_determinism(deterministic: bool, tf32: bool, cudnn_benchmark: bool) -> None:
    """Set PyTorch's global numeric switches for one trial, all of them every time (a reused Ray
    actor must not inherit the previous trial's); the config fields themselves are on the row.
    deterministic: deterministic algorithms (warn_only: ops without a deterministic CUDA kernel,
    such as AdaptiveAvgPool2d's backward, warn) and cuDNN deterministic. tf32: TF32 tensor cores
    for float32 matmuls and convolutions. cudnn_benchmark: cuDNN times its algorithms per shape.
    cuBLAS reads its workspace setting once per process, so it is set (unless already set) in
    either mode: a reused actor could not honour a later deterministic trial otherwise."""
    if deterministic and cudnn_benchmark:
        raise UserError("deterministic=true and cudnn_benchmark=true exclude each other: "
                        "benchmarking picks kernels by timing. Turn one off")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = cudnn_benchmark
    precision = "tf32" if tf32 else "ieee"  # only the fp32_precision API: mixing it with the
    torch.backends.cuda.matmul.fp32_precision = precision  # legacy allow_tf32 flags makes torch
    torch.backends.cudnn.conv.fp32_precision = precision  # raise when they are read
    torch.backends.cudnn.rnn.fp32_precision = precision


def memory_fraction_for(gpu_share: float, total_memory: int,
                        context_bytes: float = CUDA_CONTEXT_GB * 2**30) -> float:
    """The fraction for torch.cuda.set_per_process_memory_fraction of a trial holding `gpu_share`
    of a GPU of `total_memory` bytes: its share less the CUDA context it pays outside PyTorch's
    allocator. 1.0 (no cap) for a whole GPU."""
    if gpu_share <= 0:
        raise ValueError(f"gpu_share must be positive, got {gpu_share}")
    if gpu_share >= 1:
        return 1.0
    cap = gpu_share * total_memory - context_bytes
    if cap <= 0:
        raise DeviceError(f"a {gpu_share:g} share of a {total_memory / 2**30:.1f} GB GPU is "
                          f"{gpu_share * total_memory / 2**30:.2f} GB, not even the "
                          f"{context_bytes / 2**30:.1f} GB of a CUDA context. Fix: a larger "
                          "--gpus-per-trial")
    return cap / total_memory


def set_memory_fraction(device: torch.device, gpu_share: float | None) -> float | None:
    """Cap this process's allocator to its share (None or >= 1: the whole GPU), on every trial: a
    reused Ray actor keeps the previous trial's cap otherwise. Returns the fraction."""
    if device.type != "cuda":
        return None
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = memory_fraction_for(gpu_share, total) if gpu_share else 1.0
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return fraction


def reset_peak_memory(device: torch.device) -> None:
    """Start a peak from now. CUDA: the allocator's peak statistics. CPU (Linux): the process's
    peak resident set (VmHWM), through /proc/self/clear_refs (elsewhere: the lifetime peak)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory(device: torch.device) -> dict[str, float | None]:
    """Peak MiB since the last reset. CUDA: allocated (tensors) and reserved (what the caching
    allocator holds: what other processes on the GPU cannot use). CPU: allocated is the process's
    peak resident set, reserved None."""
    if device.type == "cuda":
        return {"peak_allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20,
                "peak_reserved_mb": torch.cuda.max_memory_reserved(device) / 2**20}
    try:
        status = Path("/proc/self/status").read_text()
        peak = int(re.search(r"^VmHWM:\s+(\d+)", status, re.M).group(1)) / 1024
    except (OSError, AttributeError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"peak_allocated_mb": peak, "peak_reserved_mb": None}


def release_memory(device: torch.device) -> None:
    """Drop unreachable tensors and give the allocator's cached blocks back to the GPU, so that a
    reused Ray actor does not hold the previous trial's memory."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def cpu_copy(obj: Any) -> Any:
    """A copy of a state (nested dicts, lists and tuples of tensors and plain values) with every
    tensor on the CPU, for checkpoints: `copy.deepcopy(optimizer.state_dict())` would first copy
    the momentum buffers on the GPU; `load_state_dict` moves them back."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(cpu_copy(v) for v in obj)
    return copy.deepcopy(obj)


def describe_device(device: torch.device, gpu_ids: Sequence[str | int] | None = None) -> str:
    """The row's `device`: "cuda:NVIDIA A10G (8.6, 22.3 GiB)", or the CPU with its threads (and,
    for a Ray logical GPU that trained on the CPU, which one)."""
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return f"cuda:{p.name} ({p.major}.{p.minor}, {p.total_memory / 2**30:.1f} GiB)"
    label = f"cpu:{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"
    ids = [str(g) for g in gpu_ids or ()]
    return label + (f" [Ray logical GPU {','.join(ids)}, no CUDA]" if ids else "")
