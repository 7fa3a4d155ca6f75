"""Models from architecture entries: build, replace the head(s), set what trains per regime.

`build_model` is the one factory. The entry (`trainables.archs.resolve`: the table's, or one
derived from torchvision or timm) says which library builds the model, which layers are heads and
which constructor arguments every regime gets; one builder and one head replacer per library, no
per-architecture branches:
  - torchvision (the study's entries included): `get_model` with the weights enum (through
    torchvision's cache, `trainables.weights`) unless the regime is scratch; each head swapped for
    a fresh layer shaped like it.
  - timm: `create_model(<model>.<pretrained tag>, pretrained=...)` (weights through timm's Hugging
    Face cache), then `reset_classifier(num_classes)`.
Feature extraction: every parameter frozen except the new head(s).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn
from torchvision import models as tvm

from trainables.arch_record import Arch
from trainables.archs import resolve
from trainables.config import TrialConfig
from trainables.derived import import_timm
from trainables.errors import UserError
from trainables.regimes import get_regime
from trainables.weights import ensure_available


def _new_head(old: nn.Module, num_classes: int) -> nn.Module:
    """A fresh layer shaped like `old` with `num_classes` outputs (Linear, or SqueezeNet's 1x1 conv)."""
    if isinstance(old, nn.Linear):
        return nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    if isinstance(old, nn.Conv2d):
        return nn.Conv2d(old.in_channels, num_classes, kernel_size=1, stride=1,
                         bias=old.bias is not None)
    raise TypeError(f"cannot replace a head of type {type(old).__name__}")


def set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    """Replace the submodule at a dotted path ("classifier.1") with `module`."""
    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, leaf, module)


def _torchvision(arch: Arch, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    weights = tvm.get_weight(arch.weights) if pretrained else None
    return tvm.get_model(arch.library_name, weights=weights, **kwargs)


def _timm(arch: Arch, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    timm = import_timm()
    return timm.create_model(arch.weights if pretrained else arch.library_name,
                             pretrained=pretrained, **kwargs)


def _replace_torchvision(model: nn.Module, arch: Arch, num_classes: int) -> None:
    for path in arch.heads:
        set_submodule(model, path, _new_head(model.get_submodule(path), num_classes))
    if hasattr(model, "num_classes"):
        model.num_classes = num_classes


def _replace_timm(model: nn.Module, arch: Arch, num_classes: int) -> None:
    model.reset_classifier(num_classes)


BUILDERS: dict[str, Callable[[Arch, bool, dict[str, Any]], nn.Module]] = {
    "study": _torchvision, "torchvision": _torchvision, "timm": _timm}
HEAD_REPLACERS: dict[str, Callable[[nn.Module, Arch, int], None]] = {
    "study": _replace_torchvision, "torchvision": _replace_torchvision, "timm": _replace_timm}


def replace_heads(model: nn.Module, arch: Arch, num_classes: int) -> list[nn.Module]:
    """Swap every head for a new one with `num_classes` outputs; returns the new heads."""
    HEAD_REPLACERS[arch.source](model, arch, num_classes)
    return head_modules(model, arch)


def _kwargs(arch: Arch, pretrained: bool, crop: int | None) -> dict[str, Any]:
    kwargs = {**arch.build_kwargs, **({} if pretrained else arch.scratch_kwargs)}
    if arch.size_kwarg and crop:
        kwargs[arch.size_kwarg] = crop
    return kwargs


def imagenet_model(arch: Arch | str, crop: int | None = None) -> nn.Module:
    """The unmodified ImageNet-pretrained model (its own classes): Grad-CAM's reference column.
    `crop`: the input size of models built for one size (timm ViTs)."""
    arch = resolve(arch) if isinstance(arch, str) else arch
    ensure_available(arch)
    return BUILDERS[arch.source](arch, True, _kwargs(arch, True, crop))


def imagenet_categories(arch: Arch) -> list[str]:
    """Names of the pretrained model's output classes (ImageNet's)."""
    if arch.source == "timm":
        from timm.data import ImageNetInfo, infer_imagenet_subset

        timm = import_timm()
        cfg = timm.models.get_pretrained_cfg(arch.weights)
        info = ImageNetInfo(infer_imagenet_subset(cfg.to_dict()) or "imagenet-1k")
        return [info.index_to_description(i) for i in range(info.num_classes())]
    return list(tvm.get_weight(arch.weights).meta["categories"])


def build_model(config: TrialConfig, num_classes: int, pretrained: bool | None = None) -> nn.Module:
    """The trial's model: ImageNet weights if the regime is pretrained, new heads, and
    `requires_grad` as the regime's `trains` says (all; only the new heads; nothing in the model,
    as in the linear probe, where a logistic regression on its features is what trains)."""
    arch = resolve(config.arch, config.weights)
    use_weights = config.pretrained if pretrained is None else pretrained
    if use_weights:
        ensure_available(arch)
    model = BUILDERS[arch.source](arch, use_weights, _kwargs(arch, use_weights, config.train_crop))
    heads = replace_heads(model, arch, num_classes)
    trains = get_regime(config.regime).trains
    if trains != "all":
        model.requires_grad_(False)
    if trains == "heads":
        for head in heads:
            head.requires_grad_(True)
    return model


def head_modules(model: nn.Module, arch: Arch) -> list[nn.Module]:
    return [model.get_submodule(path) for path in arch.heads]


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def _tokens_to_map(prefix: int) -> Callable[[Any], Any]:
    """(N, prefix + H*W, C) ViT tokens -> (N, C, H, W) on a square patch grid."""
    import math

    def reshape(x):
        tokens = x[:, prefix:, :]
        side = math.isqrt(tokens.shape[1])
        return tokens.reshape(x.shape[0], side, side, x.shape[2]).permute(0, 3, 1, 2)

    return reshape


def _channels_last_to_map(x):
    return x.permute(0, 3, 1, 2)


def gradcam_target(model: nn.Module, arch: Arch, layer: str | None = None
                   ) -> tuple[nn.Module, Callable[[Any], Any] | None]:
    """(target layer, pytorch-grad-cam reshape_transform or None): the entry's Grad-CAM layer
    unless `layer` names another (which then gets the same reshape for a token model)."""
    path = layer or arch.gradcam_layer
    if not path:
        raise UserError(f"{arch.name}: no spatial feature map was found for Grad-CAM; name a layer "
                        "with --layer (list them with model.named_modules())")
    if arch.gradcam_reshape == "tokens":
        reshape = _tokens_to_map(arch.prefix_tokens)
    elif arch.gradcam_reshape == "channels_last" and not layer:
        reshape = _channels_last_to_map
    else:
        reshape = None
    return model.get_submodule(path), reshape
