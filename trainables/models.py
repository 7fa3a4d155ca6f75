"""Architecture registry: one entry per architecture, no if-chains.

Each entry says how to build the torchvision model, which ImageNet weights enum the transfer
regimes load, its input size, which layer(s) are the classification head(s) replaced for the
new classes, and the default Grad-CAM target layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models import WeightsEnum

from trainables.config import TrialConfig


@dataclass(frozen=True)
class Arch:
    name: str
    builder: Callable[..., nn.Module]
    weights: WeightsEnum
    input_size: int
    heads: tuple[str, ...]
    """Dotted paths of the classification layer(s) replaced for the new classes."""
    gradcam_layer: Callable[[nn.Module], nn.Module]
    build_kwargs: dict[str, Any] = field(default_factory=dict)
    """Passed in every regime, so that pretrained and scratch models see the same input path."""
    scratch_kwargs: dict[str, Any] = field(default_factory=dict)
    tail: str | None = None
    """Module whose input the cached-feature path stores: the backbone ends there, and the tail
    (frozen dropout/linear layers plus the new head) runs in train mode on the cached features.
    None: no cached-feature path (Inception, whose auxiliary head branches off mid-backbone)."""
    peak_memory_gb: float = 2.0
    """Peak GPU memory of one paper-config trial (batch 6, fp32), sizes the GPU fraction."""
    in_study: bool = True

    @property
    def resize_size(self) -> int:
        return resize_for(self.input_size)

    @property
    def weights_file(self) -> str:
        return self.weights.url.rsplit("/", 1)[-1]


def resize_for(crop: int) -> int:
    """Eval resize for a crop size, keeping the study's 256/224 ratio (Inception: 342/299)."""
    return int(round(crop * 256 / 224))


ARCHS: dict[str, Arch] = {}


def register(arch: Arch) -> Arch:
    ARCHS[arch.name] = arch
    return arch


register(Arch("inception_v3", tvm.inception_v3, tvm.Inception_V3_Weights.IMAGENET1K_V1, 299,
              heads=("fc", "AuxLogits.fc"), gradcam_layer=lambda m: m.Mixed_7c,
              # transform_input re-normalises ImageNet-normalised input to the [-1, 1] scaling
              # these weights were trained with; torchvision turns it on only when pretrained.
              # Explicit here, so every regime sees the same input normalisation.
              build_kwargs={"transform_input": True, "aux_logits": True},
              scratch_kwargs={"init_weights": True}, peak_memory_gb=3.0))
register(Arch("densenet161", tvm.densenet161, tvm.DenseNet161_Weights.IMAGENET1K_V1, 224,
              heads=("classifier",), gradcam_layer=lambda m: m.features, tail="classifier",
              peak_memory_gb=4.0))
register(Arch("resnet152", tvm.resnet152, tvm.ResNet152_Weights.IMAGENET1K_V1, 224,
              heads=("fc",), gradcam_layer=lambda m: m.layer4, tail="fc", peak_memory_gb=3.5))
register(Arch("resnet18", tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1, 224,
              heads=("fc",), gradcam_layer=lambda m: m.layer4, tail="fc", peak_memory_gb=1.0))
register(Arch("vgg11_bn", tvm.vgg11_bn, tvm.VGG11_BN_Weights.IMAGENET1K_V1, 224,
              heads=("classifier.6",), gradcam_layer=lambda m: m.features, tail="classifier",
              peak_memory_gb=3.0))
register(Arch("squeezenet1_0", tvm.squeezenet1_0, tvm.SqueezeNet1_0_Weights.IMAGENET1K_V1, 224,
              heads=("classifier.1",), gradcam_layer=lambda m: m.features, tail="classifier",
              peak_memory_gb=1.0))
register(Arch("mobilenet_v2", tvm.mobilenet_v2, tvm.MobileNet_V2_Weights.IMAGENET1K_V1, 224,
              heads=("classifier.1",), gradcam_layer=lambda m: m.features[-1],
              tail="classifier", peak_memory_gb=1.0, in_study=False))


def get_arch(name: str) -> Arch:
    from trainables.errors import UserError

    try:
        return ARCHS[name]
    except KeyError:
        raise UserError(f"--arch {name!r} is unknown; choose from {', '.join(ARCHS)}") from None


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


def build_model(config: TrialConfig, num_classes: int, pretrained: bool | None = None) -> nn.Module:
    """The trial's model: ImageNet weights (through torchvision's cache) unless scratch, new
    heads, and `requires_grad` set for the regime."""
    arch = get_arch(config.arch)
    use_weights = config.pretrained if pretrained is None else pretrained
    kwargs = dict(arch.build_kwargs)
    if use_weights:
        from trainables.weights import ensure_available

        ensure_available(arch)
        model = arch.builder(weights=arch.weights, **kwargs)
    else:
        model = arch.builder(weights=None, **kwargs, **arch.scratch_kwargs)
    heads = replace_heads(model, arch, num_classes)
    if config.regime == "feature_extract":
        for param in model.parameters():
            param.requires_grad_(False)
        for head in heads:
            for param in head.parameters():
                param.requires_grad_(True)
    return model


def imagenet_model(arch_name: str) -> nn.Module:
    """The unmodified ImageNet-pretrained model (1000 classes), for Grad-CAM's left column."""
    arch = get_arch(arch_name)
    from trainables.weights import ensure_available

    ensure_available(arch)
    return arch.builder(weights=arch.weights, **arch.build_kwargs)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def head_modules(model: nn.Module, arch: Arch) -> list[nn.Module]:
    return [model.get_submodule(path) for path in arch.heads]


def split_backbone_tail(model: nn.Module, arch: Arch) -> tuple[Callable[[torch.Tensor], torch.Tensor],
                                                                 Callable[[torch.Tensor], torch.Tensor]]:
    """For the cached-feature path: (features, tail) with flatten(tail(features(x))) == model(x).

    `features` runs the model up to the tail and stops there, returning the tail's input (the
    model must be in eval mode): the tail itself, which may be large (VGG's classifier), is not
    computed twice. `tail` is the architecture's final block, which holds the trainable head."""
    if arch.tail is None:
        raise ValueError(f"{arch.name} has no cached-feature path")
    tail = model.get_submodule(arch.tail)

    class _TailReached(Exception):
        def __init__(self, x: torch.Tensor) -> None:
            self.x = x

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        raise _TailReached(inputs[0])

    def features(x: torch.Tensor) -> torch.Tensor:
        handle = tail.register_forward_pre_hook(hook)
        try:
            model(x)
        except _TailReached as reached:
            return reached.x
        finally:
            handle.remove()
        raise RuntimeError(f"{arch.name}: the forward pass never reached {arch.tail!r}")

    def run_tail(feats: torch.Tensor) -> torch.Tensor:
        return torch.flatten(tail(feats), 1)

    return features, run_tail
