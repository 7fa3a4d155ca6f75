"""Class-activation maps of one torch model: CAM methods, target layers, the heatmap itself.

Knows nothing about results folders (analysis.gradcam draws the study's Table I with it).

Target layers are named by dotted module paths ("features.11", "layer4", "Mixed_7c"); each
architecture's default is its registry entry's ``gradcam_layer`` (docs/report.md lists them and
the paper's choice).

Feature-extraction models have a frozen backbone (requires_grad False), so no gradient would
reach the target layer: the CAM pass switches gradients on for every parameter and restores the
flags afterwards (`gradients_on`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from trainables.errors import UserError

METHODS = ("gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam")


def cam_class(method: str) -> type:
    import pytorch_grad_cam as pgc

    table = {"gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus, "xgradcam": pgc.XGradCAM,
             "hirescam": pgc.HiResCAM, "layercam": pgc.LayerCAM, "eigencam": pgc.EigenCAM}
    try:
        return table[method]
    except KeyError:
        raise UserError(f"--method {method!r} is unknown; choose from {', '.join(METHODS)}") from None


def resolve_layer(model: nn.Module, path: str) -> nn.Module:
    """A dotted module path, as `nn.Module.get_submodule` takes it: "features.10", "layer4",
    "Mixed_7c" (list the names with `model.named_modules()`)."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        parent, _, _ = path.rpartition(".")
        try:
            children = ", ".join(n for n, _ in model.get_submodule(parent).named_children())
        except AttributeError:
            children = ", ".join(n for n, _ in model.named_children())
        raise UserError(f"--layer {path!r}: no such module in {type(model).__name__} (children "
                        f"of {parent or 'the model'}: {children or 'none'})") from None


def default_layer(model: nn.Module, arch_name: str) -> nn.Module:
    """The architecture's default target layer (its registry entry's ``gradcam_layer`` path; for a
    torchvision or timm model outside the registry, the one `trainables.derived` found)."""
    from trainables.archs import resolve
    from trainables.models import gradcam_target

    return gradcam_target(model, resolve(arch_name))[0]


def reshape_for(arch_name: str, model: nn.Module, path: str | None) -> Any:
    """pytorch-grad-cam's reshape_transform for the architecture's target layer (ViT tokens, NHWC
    maps of timm models), or None for the usual (N, C, H, W) maps."""
    from trainables.archs import resolve
    from trainables.models import gradcam_target

    return gradcam_target(model, resolve(arch_name), path)[1]


def layer_name(model: nn.Module, layer: nn.Module) -> str:
    """The dotted path of `layer` inside `model` ("features.18"), for figure titles."""
    for name, module in model.named_modules():
        if module is layer:
            return name or "(the whole model)"
    return type(layer).__name__


def target_layer(model: nn.Module, arch_name: str, path: str | None) -> tuple[nn.Module, str]:
    """(layer, its dotted name): `path` if given, else the architecture's default."""
    layer = resolve_layer(model, path) if path else default_layer(model, arch_name)
    return layer, layer_name(model, layer)


@contextmanager
def gradients_on(model: nn.Module) -> Iterator[nn.Module]:
    """Every parameter requires grad inside the block (a frozen backbone included); restored after."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(True)
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def heatmap(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: int,
            method: str = "gradcam", reshape: Any = None) -> np.ndarray:
    """Class-activation map (H, W) in [0, 1] for one normalised input x of shape (1, 3, H, W).
    `reshape`: pytorch-grad-cam's reshape_transform (`reshape_for`).

    pytorch-grad-cam scales each map to [0, 1] on its own: colours compare regions within an
    image, not strengths across images or models."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model.eval()
    with gradients_on(model), cam_class(method)(model=model, target_layers=[layer],
                                                 reshape_transform=reshape) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(target))])
    model.zero_grad(set_to_none=True)
    return np.asarray(maps[0], dtype=np.float32)
