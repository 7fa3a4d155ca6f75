"""The traced footprint of a trial (bench/footprint.py) against the real CPU allocator, and the
evaluation batch against the training step's activations (both from what PyTorch allocates, on
every CPU: a kernel's own scratch space, which depends on the CPU's instruction set and thread
count, is measured and set apart, not tolerated)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from bench.footprint import trace
from trainables.engine import training_loss
from trainables.models import build_model
from trainables.presets import get_preset
from trainables.regimes import FEATURE_EXTRACT, FINETUNE

SIZE = 64  # small crops: the same code paths, seconds instead of minutes
EVAL_LIVE_ACTIVATIONS = 3
"""Activations a forward-only pass holds at once, at most: a layer's input, its output and one
temporary; everything earlier is freed."""


def _bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def cpu_step_peaks(arch: str, regime: str, size: int = SIZE, batch: int = 6) -> tuple[int, int]:
    """(peak, tensor peak) bytes of a real second training step on this CPU, from the profiler's
    allocation events plus what was already allocated (parameters, buffers, momentum, inputs).
    `peak` counts every allocation. `tensor peak` leaves out the scratch a kernel allocates and
    frees within one operator call (oneDNN's per-thread weight-gradient buffers in a
    convolution's backward: 38 MB per thread for resnet18 at 64 px on an AVX2 CPU, none on an
    AVX-512 one): no operator returns it, so the trace cannot see it."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    config = get_preset("paper").trial(arch, regime, 0, "all")
    torch.manual_seed(0)
    model = build_model(config, 2, pretrained=False)
    x, y = torch.randn(batch, 3, size, size), torch.zeros(batch, dtype=torch.long)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                momentum=config.momentum)
    model.train()

    def step() -> None:
        training_loss(model(x), y, config.aux_loss_weight)[0].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # the first step creates the momentum buffers
    resident = (_bytes(model.parameters()) + _bytes(model.buffers()) + _bytes([x, y])
                + _bytes(v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)))
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events: list[tuple[int, int, int, Any]] = []  # (time, address, bytes, operator call)

    def walk(node: Any, op: Any) -> None:
        if node.tag == _EventType.Allocation:
            events.append((node.start_time_ns, node.extra_fields.ptr, node.extra_fields.alloc_size, op))
        for child in node.children:
            walk(child, (node.name, node.start_time_ns) if node.tag == _EventType.TorchOp else op)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root, None)
    events.sort(key=lambda e: e[0])
    made: dict[int, tuple[int, Any]] = {}
    scratch: set[int] = set()
    for i, (_, ptr, nbytes, op) in enumerate(events):
        if nbytes > 0:
            made[ptr] = (i, op)
        elif ptr in made and op is not None and made[ptr][1] == op:  # freed by the call that made it
            scratch |= {made.pop(ptr)[0], i}
    live = tensors = peak = tensor_peak = 0
    for i, (_, _, nbytes, _) in enumerate(events):
        live += nbytes
        tensors += 0 if i in scratch else nbytes
        peak, tensor_peak = max(peak, live), max(tensor_peak, tensors)
    return resident + peak, resident + tensor_peak


@pytest.mark.parametrize("arch", ["resnet18", "squeezenet1_0"])
def test_traced_training_step_matches_the_real_cpu_allocator(arch):
    peak, tensors = cpu_step_peaks(arch, FINETUNE)
    assert trace(arch, FINETUNE, input_size=SIZE).peak == pytest.approx(tensors, rel=0.01)
    assert peak >= tensors  # the rest is kernel scratch space, which this CPU decides


def test_feature_extraction_trace_misses_only_kernel_scratch_space():
    peak, tensors = cpu_step_peaks("squeezenet1_0", FEATURE_EXTRACT)
    traced = trace("squeezenet1_0", FEATURE_EXTRACT, input_size=SIZE).peak
    assert traced == pytest.approx(tensors, rel=0.01) and traced <= peak


def test_components_follow_the_regime():
    ft = trace("resnet18", FINETUNE, input_size=SIZE, eval_batch=16)
    fe = trace("resnet18", FEATURE_EXTRACT, input_size=SIZE, eval_batch=16)
    n_params = sum(p.numel() for p in build_model(get_preset("paper").trial("resnet18", FINETUNE, 0, "all"),
                                                  2, pretrained=False).parameters())
    assert ft.params == fe.params == 4 * n_params
    assert ft.grads == ft.params  # every weight trains (and has one momentum buffer)
    assert fe.grads == 4 * (512 * 2 + 2)  # the new head only
    assert ft.peak > fe.peak and ft.activations > fe.activations
    assert ft.eval_peak == fe.eval_peak  # the same model evaluated at the same batch
    assert ft.trial_peak == max(ft.peak, ft.eval_peak)
    assert trace("resnet18", FINETUNE, input_size=SIZE, eval_batch=64).eval_peak > ft.eval_peak
    assert ft.forward_gflop_per_image == pytest.approx(3.63 * (SIZE / 224) ** 2, rel=0.02)


# ------------------------------------------------------------------------ evaluation batches
def activation_bytes(model: nn.Module, crop: int) -> tuple[int, int]:
    """(largest, sum) of the float32 outputs of the model's leaf modules for one image of `crop`
    px, from shapes alone: a forward pass on the meta device with the parameters swapped for meta
    tensors (torch.func.functional_call); the model is left as it was."""
    from torch.func import functional_call

    sizes: list[int] = []

    def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
        sizes.extend(o.numel() * 4 for o in (output if isinstance(output, tuple | list) else (output,))
                     if isinstance(o, torch.Tensor))

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


def eval_batch_bound(model: nn.Module, crop: int, train_batch: int, cap: int = 64) -> int:
    """The largest forward-only batch whose live activations (EVAL_LIVE_ACTIVATIONS of the
    largest) stay within what a training step of `train_batch` keeps for its backward (about
    train_batch x the sum of all activations), between 1 and `cap`: evaluation at that batch
    never sets a trial's peak."""
    largest, total = activation_bytes(model, crop)
    return max(1, min(cap, train_batch * total // (EVAL_LIVE_ACTIVATIONS * largest)))


@pytest.mark.parametrize("arch, crop", [("vgg11_bn", 224), ("resnet18", 224), ("squeezenet1_0", 224)])
def test_evaluation_batches_stay_below_the_training_activations(arch, crop):
    from torchvision import models as tvm

    model = getattr(tvm, arch)()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    largest, total = activation_bytes(model, crop)
    batch = eval_batch_bound(model, crop, train_batch=6)
    assert 1 <= batch < 64
    assert EVAL_LIVE_ACTIVATIONS * largest * batch <= 6 * total
    assert EVAL_LIVE_ACTIVATIONS * largest * (batch + 1) > 6 * total, "not needlessly small"
    # the model is left as it was: real weights on the CPU, still in train mode
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).device.type == "cpu"


def test_vgg11_bn_first_activation_is_what_a_batch_of_64_would_multiply():
    from torchvision import models as tvm

    largest, _ = activation_bytes(tvm.vgg11_bn(), 224)
    assert largest == 64 * 224 * 224 * 4  # the first conv's output: 12.25 MiB per image
    assert eval_batch_bound(tvm.vgg11_bn(), 224, train_batch=6) == 14


@pytest.mark.parametrize("arch", ["vgg11_bn", "resnet18", "squeezenet1_0", "mobilenet_v2",
                                  "resnet152", "densenet161", "inception_v3"])
def test_the_default_evaluation_batch_is_within_the_activation_bound(arch):
    """TrialConfig's eval_batch_size default never lets evaluation set a trial's peak (paper
    crops, batch 6): it is at most the activation-bounded batch of every table architecture."""
    from torchvision import models as tvm

    from trainables.archs import ARCHS
    from trainables.config import TrialConfig

    config = TrialConfig(arch=arch, regime=FINETUNE)
    model = tvm.get_model(arch, weights=None, **ARCHS[arch].build_kwargs)
    assert config.eval_batch_size <= eval_batch_bound(model, config.val_crop, config.batch_size)


def test_deep_narrow_models_keep_the_full_evaluation_batch():
    from torchvision import models as tvm

    assert eval_batch_bound(tvm.densenet161(), 224, train_batch=6) == 64
