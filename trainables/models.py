"""Models from registry entries: build, replace the head(s), set what trains per regime.

`build_model` is the one factory: torchvision's `get_model` with the entry's weights enum (through
torchvision's own cache, `trainables.weights`) unless the regime is scratch, new heads for the
task's classes, and `requires_grad` for the regime. No per-architecture branches: the registry
entry says which layers are heads.
"""

from __future__ import annotations

from torch import nn
from torchvision import models as tvm

from trainables.config import TrialConfig
from trainables.registry import Arch, get_arch
from trainables.weights import ensure_available, weights_enum


def _new_head(old: nn.Module, num_classes: int) -> nn.Module:
    """A fresh layer shaped like `old` with `num_classes` outputs (Linear, or SqueezeNet's 1x1 conv)."""
    if isinstance(old, nn.Linear):
        return nn.Linear(old.in_features, num_classes)
    if isinstance(old, nn.Conv2d):
        return nn.Conv2d(old.in_channels, num_classes, kernel_size=1, stride=1)
    raise TypeError(f"cannot replace a head of type {type(old).__name__}")


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, leaf, module)


def replace_heads(model: nn.Module, arch: Arch, num_classes: int) -> list[nn.Module]:
    """Swap every head for a new one with `num_classes` outputs; returns the new heads."""
    new_heads = []
    for path in arch.heads:
        head = _new_head(model.get_submodule(path), num_classes)
        _set_submodule(model, path, head)
        new_heads.append(head)
    if hasattr(model, "num_classes"):
        model.num_classes = num_classes
    return new_heads


def imagenet_model(arch: Arch | str) -> nn.Module:
    """The unmodified ImageNet-pretrained model (1000 classes): Grad-CAM's reference column."""
    arch = get_arch(arch) if isinstance(arch, str) else arch
    ensure_available(arch)
    return tvm.get_model(arch.name, weights=weights_enum(arch), **arch.build_kwargs)


def build_model(config: TrialConfig, num_classes: int, pretrained: bool | None = None) -> nn.Module:
    """The trial's model: ImageNet weights unless scratch, new heads, `requires_grad` per regime
    (feature extraction: only the new heads train; linear probe: nothing in the model)."""
    arch = get_arch(config.arch)
    use_weights = config.pretrained if pretrained is None else pretrained
    if use_weights:
        model = imagenet_model(arch)
    else:
        model = tvm.get_model(arch.name, weights=None, **arch.build_kwargs, **arch.scratch_kwargs)
    heads = replace_heads(model, arch, num_classes)
    if config.regime == "feature_extract":
        model.requires_grad_(False)
        for head in heads:
            head.requires_grad_(True)
    elif config.regime == "linear_probe":  # a logistic regression on its features is what trains
        model.requires_grad_(False)
    return model


def head_modules(model: nn.Module, arch: Arch) -> list[nn.Module]:
    return [model.get_submodule(path) for path in arch.heads]


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
