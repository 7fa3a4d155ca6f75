"""What a trial's training step holds in memory, and what it computes, without running it.

A paper-config training step (the trial's own model, regime, batch, crop, loss and SGD with
momentum) is traced twice on fake tensors (``torch._subclasses.FakeTensorMode``: shapes and
dtypes, no data, no device), once under PyTorch's memory tracker
(``torch.distributed._tools.mem_tracker.MemTracker``), which sorts every live tensor into
parameters, buffers, gradients, optimizer state, activations (saved for backward) and
temporaries and records the peak; and its forward pass once under
``torch.utils.flop_counter.FlopCounterMode``.
An eval-mode forward pass at the config's evaluation batch (`eval_batch_size`) is traced the
same way. Tracing needs neither
a GPU nor the memory itself, so the numbers for every architecture come out on a laptop in
minutes (``python bench/footprint.py``).

The tracer counts every tensor PyTorch's operators create and free, not the scratch space a
kernel allocates inside itself. On this CPU a traced step's peak is within 2 % of the real
allocator's for full training and 8-12 % under it for feature extraction, whose peak is 4x
smaller (``tests/unit/test_footprint.py`` checks a real step against the profiler's allocation
events; ``python bench/footprint.py --validate``). On a GPU the process needs more: its CUDA
context, cuDNN workspaces and the caching allocator's fragmentation (sweep/resources.py adds
headroom for them), plus whatever the data pipeline keeps on the device; sweep/probe.py
measures that on the first GPU node.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from trainables.engine import training_loss

GB = 1e9


@dataclass(frozen=True)
class Footprint:
    """Bytes of one traced training step at its peak (and of one eval forward pass)."""

    arch: str
    regime: str
    batch: int
    input_size: int
    params: int
    """All parameters (fp32)."""
    grads: int
    """Gradients of the trainable parameters."""
    optimizer: int
    """SGD momentum buffers (one per trainable parameter)."""
    buffers: int
    """BatchNorm running statistics and other buffers."""
    peak: int
    """Everything live at the step's peak: the above plus activations, temporaries, inputs."""
    activations: int
    """Activations live at the peak (tensors autograd saved for backward)."""
    temporary: int
    """Temporaries live at the peak (e.g. a backward op's output before it is accumulated)."""
    eval_batch: int
    eval_peak: int
    """Peak of an eval-mode forward pass under no_grad at `eval_batch` (parameters included)."""
    forward_gflop_per_image: float
    """FLOPs of one eval forward pass per image, in GFLOP (convolutions and matrix products,
    2 per multiply-add). The backward pass is not counted: FlopCounterMode's formula for a
    grouped convolution's backward ignores the groups (MobileNetV2 would come out at 20x its
    forward); a backward costs about 2 forwards where it reaches."""

    @property
    def trial_peak(self) -> int:
        """What a trial needs at once: the larger of the training step and the eval pass."""
        return max(self.peak, self.eval_peak)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "trial_peak": self.trial_peak}


def registry_peak_gb(peak_bytes: int) -> float:
    """A trial peak as the registry's `peak_memory_gb` holds it: GB, rounded up to 0.1."""
    return math.ceil(peak_bytes / GB * 10) / 10


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def trace(arch: str, regime: str, batch: int | None = None, input_size: int | None = None,
          eval_batch: int | None = None, num_classes: int = 2, preset: str = "paper") -> Footprint:
    """Trace one training step (the second, when momentum buffers exist) and one eval pass of
    `arch` in `regime` with the preset's config (batch, crops, eval batch, loss, optimizer);
    `batch`, `input_size` and `eval_batch` override them."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker
    from torch.utils.flop_counter import FlopCounterMode

    from trainables.models import build_model
    from trainables.presets import get_preset

    config = get_preset(preset).trial(arch, regime, 0, "all")
    batch = batch or config.batch_size
    size = input_size or config.train_crop
    eval_size = input_size or config.val_crop
    eval_batch = eval_batch or config.eval_batch_size
    torch.manual_seed(0)
    # built for real (some initialisers, e.g. Inception's, branch on the values they draw), then
    # every parameter and buffer is swapped for a fake tensor of the same shape
    model = build_model(config, num_classes, pretrained=False)
    fake_mode = FakeTensorMode()
    _to_fake(model, fake_mode)
    with fake_mode:
        params, grads = _bytes(model.parameters()), _bytes(p for p in model.parameters() if p.requires_grad)
        _frozen_params_as_buffers(model)  # MemTracker hooks every parameter's gradient
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(trainable, lr=config.lr, momentum=config.momentum)
        x = torch.empty(batch, 3, size, size)
        y = torch.zeros(batch, dtype=torch.long)

        def step() -> None:
            training_loss(model(x), y, config.aux_loss_weight)[0].backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        model.train()
        tracker = MemTracker()
        tracker.track_external(model, optimizer, x, y)
        with tracker:
            step()  # the first step creates the momentum buffers
            tracker.reset_mod_stats()
            step()
        at_peak = _by_kind(tracker.get_tracker_snapshot("peak"))

        model.eval()
        xe = torch.empty(eval_batch, 3, eval_size, eval_size)
        tracker = MemTracker()
        tracker.track_external(model, xe)
        with tracker, torch.no_grad():
            model(xe)
        eval_peak = _by_kind(tracker.get_tracker_snapshot("peak"))["Total"]
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(xe[:1])
        forward_flops = counter.get_total_flops()
        buffers = _bytes(model.buffers()) - (params - grads)
    return Footprint(
        arch=arch, regime=regime, batch=batch, input_size=size, params=params, grads=grads,
        optimizer=grads, buffers=buffers, peak=at_peak["Total"],
        activations=at_peak.get("Activation", 0), temporary=at_peak.get("Temp", 0),
        eval_batch=eval_batch, eval_peak=eval_peak,
        forward_gflop_per_image=forward_flops / GB)


def _to_fake(model: nn.Module, mode: Any) -> None:
    for module in model.modules():
        for name, param in module._parameters.items():
            if param is not None:
                module._parameters[name] = nn.Parameter(mode.from_tensor(param.detach()),
                                                        requires_grad=param.requires_grad)
        for name, buf in module._buffers.items():
            if buf is not None:
                module._buffers[name] = mode.from_tensor(buf)


def _frozen_params_as_buffers(model: nn.Module) -> None:
    """Re-register parameters that do not train (feature extraction's backbone) as buffers:
    the same tensors in the same computation, but MemTracker, which registers a gradient hook
    on every parameter, accepts them."""
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is not None and not param.requires_grad:
                del module._parameters[name]
                module.register_buffer(name, param.detach())


def _by_kind(snapshot: dict) -> dict[str, int]:
    """MemTracker's {device: {kind: bytes}} for the one device, keyed by the kind's name."""
    out: dict[str, int] = {}
    for per_kind in snapshot.values():
        for kind, n in per_kind.items():
            name = kind if isinstance(kind, str) else kind.value
            out[name] = out.get(name, 0) + n
    return out


def measured_cpu_peak(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float = 1e-3,
                      momentum: float = 0.9, aux_weight: float = 0.4) -> int:
    """The real CPU allocator's peak bytes over a second training step (the first creates the
    momentum buffers), from the profiler's allocation events, plus what was already allocated
    (parameters, buffers, momentum, inputs). For checking `trace` on a small model."""
    from torch.profiler import ProfilerActivity, profile

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=lr, momentum=momentum)
    model.train()

    def step() -> None:
        training_loss(model(x), y, aux_weight)[0].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    resident = (_bytes(model.parameters()) + _bytes(model.buffers()) + _bytes([x, y])
                + _bytes(v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)))
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return resident + peak
