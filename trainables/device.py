"""The device a trial trains on, and every CUDA setting around it, stated rather than assumed.

The training loop calls, in order (docs/gpu.md):

    device = select_device(gpu_ids)           # Ray gave a GPU but CUDA is unusable: DeviceError
    check_precision(device, config.bf16)      # bf16 on a GPU without it: DeviceError
    apply_determinism(config.deterministic, config.tf32, config.cudnn_benchmark)
    set_memory_fraction(device, gpu_share)    # cap this process to its share of the GPU
    reset_peak_memory(device)
    ... train, evaluate ...
    eval_batch_size(model, crop, config.batch_size)   # forward-only batches below the peak
    cpu_copy(optimizer.state_dict())          # checkpoints: optimizer state copied to the CPU
    peak_memory(device)                       # {"peak_allocated_mb", "peak_reserved_mb"}
    release_memory(device)                    # give cached blocks back (reused Ray actors)

Every function that depends on the machine takes the CUDA facts as an argument (`CudaFacts`,
a capability, a memory size), so that each case is unit-tested on a machine without a GPU.

Long because it gathers every CUDA fact and setting a trial depends on in one module, so that the
loop has one place to call and the device check script one place to measure.
"""

from __future__ import annotations

import copy
import gc
import os
import platform
import re
import shutil
import subprocess
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainables.errors import UserError

LOGICAL_GPUS_ENV = "FEATURE_REUSE_LOGICAL_GPUS"
"""Set to 1 where Ray's GPUs are logical only (tests, simulated clusters): a trial given a GPU
that CUDA cannot use then trains on the CPU instead of failing, and its `device` says so. Never
set on real GPU machines."""

CUDA_CONTEXT_GB = 0.5
"""What each trial process pays for its CUDA context and kernels, outside PyTorch's allocator."""

BF16_MIN_CAPABILITY = (8, 0)
"""bf16 tensor cores: Ampere (A100, A10G, L4, RTX 30xx) and later."""

MIN_DRIVER: dict[int, str] = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}
"""Oldest NVIDIA Linux driver per CUDA major version (NVIDIA's minor-version-compatibility
table: 11.x >= 450, 12.x >= 525, 13.x >= 580). torch wheels bring their own CUDA runtime; only
the driver comes from the machine."""

CUBLAS_WORKSPACE = ":4096:8"
"""cuBLAS workspace setting that makes its GEMMs deterministic (CUDA >= 10.2)."""

_PINNED_VISIBLE: str | None = None
"""CUDA_VISIBLE_DEVICES when this process first initialised CUDA: CUDA ignores later changes."""


class DeviceError(UserError):
    """The machine cannot run the trial as configured; the message names the cause and the fix."""


# ---------------------------------------------------------------------------------- facts
@dataclass(frozen=True)
class GpuFacts:
    index: int
    name: str
    capability: tuple[int, int]
    total_memory: int  # bytes


@dataclass(frozen=True)
class CudaFacts:
    """What decides whether CUDA works in this process. `probe()` reads them; tests build them."""

    torch_version: str
    torch_cuda: str | None
    """torch.version.cuda: the CUDA version torch was built for; None for a CPU-only build."""
    arch_list: tuple[str, ...] = ()
    """GPU architectures this torch build has kernels for (torch.cuda.get_arch_list())."""
    visible_devices: str | None = None
    """CUDA_VISIBLE_DEVICES as this process sees it; None when unset (every GPU visible)."""
    driver_version: str | None = None
    """The NVIDIA kernel driver (/proc/driver/nvidia/version or nvidia-smi); None: none seen."""
    device_count: int = 0
    init_error: str | None = None
    """torch's own message when CUDA failed to initialise."""
    gpus: tuple[GpuFacts, ...] = ()

    @classmethod
    def probe(cls) -> CudaFacts:
        """Read the facts of this process. Initialises CUDA when torch has it (so call it only
        where CUDA is wanted); afterwards CUDA_VISIBLE_DEVICES can no longer change."""
        global _PINNED_VISIBLE
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        arch = tuple(torch.cuda.get_arch_list()) if torch.version.cuda else ()
        count, error, gpus = 0, None, []
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
                props = torch.cuda.get_device_properties(i)
                gpus.append(GpuFacts(i, props.name, (props.major, props.minor), props.total_memory))
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
        d = asdict(self)
        d["usable"] = self.usable
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CudaFacts:
        d = {k: v for k, v in d.items() if k != "usable"}
        d["arch_list"] = tuple(d.get("arch_list", ()))
        d["gpus"] = tuple(GpuFacts(g["index"], g["name"], tuple(g["capability"]), g["total_memory"])
                          for g in d.get("gpus", ()))
        return cls(**d)

    def summary(self) -> str:
        build = (f"torch {self.torch_version} (CUDA {self.torch_cuda})" if self.torch_cuda
                 else f"torch {self.torch_version} (CPU-only build)")
        driver = f"NVIDIA driver {self.driver_version}" if self.driver_version else "no NVIDIA driver"
        visible = ("CUDA_VISIBLE_DEVICES unset" if self.visible_devices is None
                   else f"CUDA_VISIBLE_DEVICES={self.visible_devices!r}")
        return f"{build}, {driver}, {visible}, {self.device_count} CUDA device(s)"

    def diagnosis(self) -> str:
        """Why CUDA is unusable here, and what to do about it (first matching cause)."""
        if not self.torch_cuda:
            return (f"torch {self.torch_version} is a CPU-only build. Fix: install a CUDA build "
                    "of torch (the default Linux wheel from PyPI is one)")
        if self.visible_devices is not None and not _visible_entries(self.visible_devices):
            return (f"CUDA_VISIBLE_DEVICES={self.visible_devices!r} hides every GPU from this "
                    "process. Fix: do not set it for Ray workers (Ray sets it per trial)")
        if self.driver_version is None:
            return ("no NVIDIA driver is visible (no /proc/driver/nvidia/version, no nvidia-smi): "
                    "the node has no GPU, or its container was started without GPU passthrough. "
                    "Fix: run the container with `--gpus all` (cluster.yaml does), and check "
                    "`nvidia-smi` on the node")
        needed = MIN_DRIVER.get(_major(self.torch_cuda))
        found = _version_tuple(self.driver_version)
        if needed and found and found < (_version_tuple(needed) or ()):
            return (f"NVIDIA driver {self.driver_version} is too old for torch's CUDA "
                    f"{self.torch_cuda} (needs >= {needed}). Fix: use a "
                    "newer driver (a current AWS Deep Learning AMI), or a torch build for an "
                    "older CUDA")
        if self.init_error:
            return f"CUDA failed to initialise: {self.init_error}"
        return "torch sees no CUDA device"


def nvidia_driver_version(proc_file: Path = Path("/proc/driver/nvidia/version")) -> str | None:
    """The loaded NVIDIA kernel driver's version, without initialising CUDA."""
    try:
        text = proc_file.read_text()
        match = re.search(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+\.\d+(?:\.\d+)?)", text)
        if match:
            return match.group(1)
    except OSError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10)
            first = out.stdout.strip().splitlines()
            if out.returncode == 0 and first:
                return first[0].strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return None


def _major(version: str | None) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


def _version_tuple(version: str | None) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) for p in str(version).split("."))
    except ValueError:
        return None


def _visible_entries(visible: str) -> list[str]:
    return [v.strip() for v in visible.split(",") if v.strip()]


# ---------------------------------------------------------------------------------- device
def logical_gpus_allowed() -> bool:
    return os.environ.get(LOGICAL_GPUS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def select_device(gpu_ids: Sequence[str | int] | None, facts: CudaFacts | None = None,
                  logical_ok: bool | None = None) -> torch.device:
    """The device of a trial, never a silent CPU fallback.

    gpu_ids: what Ray assigned (`ray.get_gpu_ids()`), None outside Ray (the single-trial CLI).
    - Ray assigned no GPU: the CPU.
    - Ray assigned a GPU: that GPU, or a DeviceError naming the cause (torch build, driver,
      CUDA_VISIBLE_DEVICES) when CUDA cannot use it. With logical GPUs allowed
      ($FEATURE_REUSE_LOGICAL_GPUS=1, simulated clusters only) the CPU instead.
    - Outside Ray: the first GPU when CUDA works; the CPU when the machine has no NVIDIA driver
      (or CUDA_VISIBLE_DEVICES='' chooses the CPU); a DeviceError when a driver is there but
      CUDA does not work."""
    if gpu_ids is not None and len(gpu_ids) == 0:
        return torch.device("cpu")
    facts = facts or CudaFacts.probe()
    if logical_ok is None:
        logical_ok = logical_gpus_allowed()
    if gpu_ids is None:
        if facts.usable:
            check_architecture(facts, 0)
            return torch.device("cuda", 0)
        chose_cpu = facts.visible_devices is not None and not _visible_entries(facts.visible_devices)
        if facts.gpu_present and facts.torch_cuda and not chose_cpu:
            raise DeviceError(f"this machine has an NVIDIA GPU but CUDA is unusable: "
                              f"{facts.diagnosis()} [{facts.summary()}]. To train on the CPU "
                              "anyway, hide the GPU: CUDA_VISIBLE_DEVICES=''")
        return torch.device("cpu")
    ids = [str(g) for g in gpu_ids]
    if not facts.usable:
        if logical_ok:
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
    """The CUDA device index of Ray's GPU id in this process (Ray lists its ids in
    CUDA_VISIBLE_DEVICES, so normally 0)."""
    if visible is None:
        try:
            return int(gpu_id)
        except ValueError:
            raise DeviceError(f"Ray assigned GPU {gpu_id!r}, but CUDA_VISIBLE_DEVICES is unset and "
                              "the id is not a device index") from None
    entries = _visible_entries(visible)
    if gpu_id in entries:
        return entries.index(gpu_id)
    raise DeviceError(f"Ray assigned GPU {gpu_id}, but CUDA_VISIBLE_DEVICES={visible!r} does not "
                      "list it: something changed CUDA_VISIBLE_DEVICES after Ray set it")


def arch_supported(capability: tuple[int, int], arch_list: Sequence[str]) -> bool:
    """Whether a torch build with these kernels runs on a GPU of this compute capability: a
    cubin (sm_XY) of the same major version and no newer minor, or PTX (compute_XY) no newer."""
    major, minor = capability
    for arch in arch_list:
        kind, _, digits = arch.partition("_")
        if not digits.isdigit():
            continue
        a_major, a_minor = int(digits[:-1]), int(digits[-1])
        if kind == "sm" and a_major == major and a_minor <= minor:
            return True
        if kind == "compute" and (a_major, a_minor) <= (major, minor):
            return True
    return False


def check_architecture(facts: CudaFacts, index: int) -> None:
    if not facts.arch_list or index >= len(facts.gpus):
        return
    gpu = facts.gpus[index]
    if not arch_supported(gpu.capability, facts.arch_list):
        raise DeviceError(f"{gpu.name} (compute capability {gpu.capability[0]}.{gpu.capability[1]}) "
                          f"is not supported by torch {facts.torch_version}, whose kernels are for "
                          f"{', '.join(facts.arch_list)}. Fix: use a newer GPU (e.g. g5/g6 "
                          "instances), or a torch build for an older CUDA that still has "
                          "kernels for this GPU")


def cuda_pinned_visible() -> str | None:
    """CUDA_VISIBLE_DEVICES at the moment this process initialised CUDA ('' when it was
    unset), or None while CUDA is not initialised (it can still be pointed at any GPU)."""
    if _PINNED_VISIBLE is not None:
        return _PINNED_VISIBLE
    if torch.version.cuda and torch.cuda.is_initialized():
        return os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return None


# ------------------------------------------------------------------------------- precision
def check_precision(device: torch.device, bf16: bool, capability: tuple[int, int] | None = None,
                    name: str | None = None) -> None:
    """bf16 autocast only where the hardware has it: a clear error before training otherwise."""
    if not bf16:
        return
    if device.type != "cuda":
        raise DeviceError(f"bf16 needs a CUDA GPU of compute capability >= "
                          f"{BF16_MIN_CAPABILITY[0]}.{BF16_MIN_CAPABILITY[1]}, but this trial runs on "
                          f"{device.type}. Fix: turn bf16 off (--set bf16=false), or run on such a GPU")
    if capability is None:
        capability = torch.cuda.get_device_capability(device)
        name = name or torch.cuda.get_device_name(device)
    if tuple(capability) < BF16_MIN_CAPABILITY:
        raise DeviceError(f"bf16 needs compute capability >= {BF16_MIN_CAPABILITY[0]}."
                          f"{BF16_MIN_CAPABILITY[1]} (A100, A10G, L4, H100 and later); "
                          f"{name or 'this GPU'} has {capability[0]}.{capability[1]}. Fix: turn bf16 "
                          "off (--set bf16=false)")


def apply_determinism(deterministic: bool, tf32: bool, cudnn_benchmark: bool) -> dict[str, Any]:
    """Set PyTorch's global numeric switches for one trial, all of them every time (a reused
    Ray actor must not inherit the previous trial's). Returns what was set, for the row.

    deterministic: deterministic algorithms where PyTorch has them (warn_only: ops with no
    deterministic CUDA kernel, such as AdaptiveAvgPool2d's backward, warn instead of failing)
    and cuDNN deterministic. tf32: TF32 tensor cores for float32 matmuls and convolutions
    (Ampere and later; faster, ~10-bit mantissa). cudnn_benchmark: let cuDNN time its
    algorithms per input shape (faster, run-to-run differences).

    The cuBLAS workspace setting that deterministic GEMMs need is set in either mode, unless
    already set: cuBLAS reads it once, when the process first uses it, so a reused actor could
    not honour deterministic mode after a first trial without it."""
    if deterministic and cudnn_benchmark:
        raise UserError("deterministic=true and cudnn_benchmark=true exclude each other: "
                        "benchmarking picks kernels by timing. Turn one off")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = cudnn_benchmark
    _set_fp32_precision("tf32" if tf32 else "ieee")
    return {"deterministic": deterministic, "tf32": tf32, "cudnn_benchmark": cudnn_benchmark,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}


def _set_fp32_precision(precision: str) -> None:
    """TF32 on ("tf32") or off ("ieee") for CUDA matmuls and cuDNN. Uses only the
    fp32_precision API where torch has it: mixing it with the legacy allow_tf32 flags makes
    torch raise when they are read."""
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        matmul.fp32_precision = precision
        torch.backends.cudnn.conv.fp32_precision = precision
        torch.backends.cudnn.rnn.fp32_precision = precision
    else:  # older torch
        matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"


def numeric_settings() -> dict[str, Any]:
    """The switches as PyTorch has them now (for checks and the device script)."""
    matmul = torch.backends.cuda.matmul
    tf32 = (matmul.fp32_precision == "tf32" if hasattr(matmul, "fp32_precision")
            else bool(matmul.allow_tf32))
    return {"deterministic": torch.are_deterministic_algorithms_enabled(), "tf32": tf32,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_deterministic": torch.backends.cudnn.deterministic}


# ---------------------------------------------------------------------------------- memory
def memory_fraction_for(gpu_share: float, total_memory: int,
                        context_bytes: float = CUDA_CONTEXT_GB * 2**30) -> float:
    """The fraction for torch.cuda.set_per_process_memory_fraction of a trial holding
    `gpu_share` of a GPU of `total_memory` bytes: its share of the memory less the CUDA context
    it pays outside PyTorch's allocator. 1.0 (no cap) for a whole GPU or more."""
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
    """Cap this process's allocator to its share (None or >= 1: the whole GPU). Set on every
    trial: a reused Ray actor keeps the previous trial's cap otherwise. Returns the fraction."""
    if device.type != "cuda":
        return None
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = memory_fraction_for(gpu_share, total) if gpu_share else 1.0
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return fraction


def reset_peak_memory(device: torch.device) -> None:
    """Start a trial's peak from now. CUDA: the allocator's peak statistics. CPU (Linux): the
    process's peak resident set (VmHWM), reset through /proc/self/clear_refs."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux, or not permitted: the CPU peak is then the process's lifetime peak


def peak_memory(device: torch.device, reset: bool = False) -> dict[str, float | None]:
    """Peak memory since the last reset, in MiB. CUDA: allocated (tensors) and reserved (what the
    caching allocator holds from the GPU; what other processes on the GPU cannot use). CPU:
    allocated is the peak resident set of the process, reserved is None."""
    if device.type == "cuda":
        result: dict[str, float | None] = {
            "peak_allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20,
            "peak_reserved_mb": torch.cuda.max_memory_reserved(device) / 2**20}
    else:
        result = {"peak_allocated_mb": _peak_rss_mb(), "peak_reserved_mb": None}
    if reset:
        reset_peak_memory(device)
    return result


def _peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def activation_bytes(model: torch.nn.Module, crop: int) -> tuple[int, int]:
    """(largest, sum) of the outputs of the model's leaf modules for one image of `crop` px,
    float32, from shapes alone: one forward pass on the meta device with the parameters
    swapped for meta tensors (torch.func.functional_call), so nothing is computed or copied and
    the model is left as it was (weights, device, train/eval mode)."""
    from torch.func import functional_call

    sizes: list[int] = []

    def record(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
        for out in output if isinstance(output, tuple | list) else (output,):
            if isinstance(out, torch.Tensor):
                sizes.append(out.numel() * 4)

    state = {k: torch.empty_like(v, device="meta") for k, v in model.state_dict(keep_vars=True).items()}
    hooks = [m.register_forward_hook(record) for m in model.modules() if not list(m.children())]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            functional_call(model, state, (torch.empty(1, 3, crop, crop, device="meta"),))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return max(sizes), sum(sizes)


EVAL_LIVE_ACTIVATIONS = 3
"""Activations a forward-only pass holds at once, at most: a layer's input, its output and one
temporary; everything earlier is freed."""


def eval_batch_size(model: torch.nn.Module, crop: int, train_batch: int, cap: int = 64) -> int:
    """A forward-only (evaluation) batch whose activations stay within what a training step of
    `train_batch` images keeps for its backward pass (about train_batch x the sum of all
    activations), so that evaluation never sets a trial's peak memory: floor(train_batch x sum
    / (3 x largest)), between 1 and `cap`. VGG11-BN at 224 px and batch 6: 14, where a fixed
    64 would hold ~2.3 GB of activations against ~0.5 GB in training; DenseNet161: 64."""
    largest, total = activation_bytes(model, crop)
    return max(1, min(cap, train_batch * total // (EVAL_LIVE_ACTIVATIONS * largest)))


def cpu_copy(obj: Any) -> Any:
    """A copy of a state (an optimizer's or a model's state_dict: nested dicts, lists and
    tuples of tensors and plain values) with every tensor copied to the CPU. For checkpoints:
    `copy.deepcopy(optimizer.state_dict())` would copy the momentum buffers on the GPU, an
    extra model-sized allocation per checkpoint; `load_state_dict` moves them back to the
    parameters' device."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [cpu_copy(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(cpu_copy(v) for v in obj)
    return copy.deepcopy(obj)


def release_memory(device: torch.device) -> None:
    """At a trial's end: drop unreachable tensors and return the allocator's cached blocks to
    the GPU, so that a reused Ray actor does not hold the previous trial's memory."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------ provenance
@dataclass
class DeviceDescription:
    label: str
    """One line for the `device` column, e.g. "cuda:NVIDIA A10G (8.6, 22.3 GiB)"."""
    details: dict[str, Any] = field(default_factory=dict)


def describe_device(device: torch.device, gpu_ids: Sequence[str | int] | None = None,
                    facts: CudaFacts | None = None) -> DeviceDescription:
    """What the trial ran on, for provenance: the label for the row's `device` and the details
    (GPU name, capability, memory, driver, torch's CUDA and cuDNN, Ray's GPU ids)."""
    ids = [str(g) for g in gpu_ids] if gpu_ids is not None else None
    details: dict[str, Any] = {"type": device.type, "ray_gpu_ids": ids,
                               "torch": torch.__version__, "torch_cuda": torch.version.cuda,
                               "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        details.update(name=props.name, capability=f"{props.major}.{props.minor}",
                       total_memory_mb=props.total_memory / 2**20,
                       driver=(facts.driver_version if facts else nvidia_driver_version()),
                       cudnn=torch.backends.cudnn.version())
        label = (f"cuda:{props.name} ({props.major}.{props.minor}, "
                 f"{props.total_memory / 2**30:.1f} GiB)")
    else:
        cpu = platform.processor() or platform.machine()
        details.update(name=cpu, threads=torch.get_num_threads())
        label = f"cpu:{cpu} ({torch.get_num_threads()} threads)"
        if ids:
            details["logical_gpu"] = True
            label += f" [Ray logical GPU {','.join(ids)}, no CUDA]"
    return DeviceDescription(label, details)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import sys

    p = argparse.ArgumentParser(prog="python -m trainables.device",
                                description="What CUDA looks like to this process, and why.")
    p.add_argument("--require-cuda", action="store_true",
                   help="exit 2 with the cause when CUDA is unusable (scripts that time GPUs)")
    p.add_argument("--json", action="store_true", help="print the facts as JSON")
    args = p.parse_args(argv)
    facts = CudaFacts.probe()
    if args.json:
        print(json.dumps(facts.to_dict(), indent=1))
    else:
        print(facts.summary() + ("" if facts.usable else f"; unusable: {facts.diagnosis()}"))
    if args.require_cuda and not facts.usable:
        print(f"error: CUDA is unusable here: {facts.diagnosis()} [{facts.summary()}]",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
