"""Architecture entries for any torchvision classifier or timm model, derived from the library.

`trainables.archs.resolve(name)` returns the table's hand-written entry for the study's
architectures and, for any other name, the `Arch` that `derive` builds here at first use (cached
per process):

  - torchvision (`convnext_tiny`, any of `torchvision.models.list_models(module=torchvision.models)`):
    input size, resize, mean/std and interpolation from the weights enum's own preset
    (`weights.transforms()`, the DEFAULT weights unless the config names others), the smallest
    input from `weights.meta["min_size"]`; the head is every Linear or 1x1 Conv2d producing the
    weights' 1000 ImageNet logits.
  - timm (`timm/convnext_atto`, `timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k`): the same facts
    from the model's pretrained config (input_size, crop_pct, mean/std, interpolation); the head is
    `get_classifier()`, replaced with `reset_classifier(num_classes)`. Needs the optional extra
    `feature-reuse[timm]`.

The Grad-CAM layer (and its reshape for ViT tokens or NHWC maps), the normalisation note, the
forward GFLOP of the cost model and, for torchvision, the cached-feature path are read from the
model built on the `meta` device (no memory, no weights; `read_structure`, `cached_path`). One
forward pass there with hooks records every module's output shape in execution order:
  - the Grad-CAM layer is the last spatial feature map before the head: an NCHW map, or an NHWC
    one (timm's Swin) with a "channels_last" reshape; for a token model (a ViT: token sequences
    after the patch embedding), the first LayerNorm of the last transformer block with a
    "tokens" reshape, as pytorch-grad-cam documents for ViT;
  - the normalisation note counts BatchNorm against LayerNorm/GroupNorm layers.
torchvision models whose head sits in one top-level module also get the cached-feature path
(`feature_node`, `tail`) from torchvision's fx graph (`cached_path`).

Every derivation says what it chose in `Arch.notes`, which `--dry-run` prints; docs/models.md
explains the rules per family.
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchvision import models as tvm

from trainables.arch_record import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INTERPOLATIONS,
    TIMM_PREFIX,
    UNMEASURED_PEAK_GB,
    Arch,
)
from trainables.errors import UserError

TIMM_INSTALL = "pip install 'feature-reuse[timm]' (or: pip install timm)"
MIN_INPUT = 32
"""The smallest crop any derived model trains at, unless its weights say more."""


def import_timm():
    """timm, or a UserError saying how to install it."""
    try:
        import timm
    except ImportError:
        raise UserError("timm models (timm/...) need the timm package, which is not installed: "
                        f"{TIMM_INSTALL}") from None
    return timm


def torchvision_names() -> list[str]:
    """torchvision's classification models (not detection, segmentation, video, quantized)."""
    return tvm.list_models(module=tvm)


def derive(name: str, weights: str | None = None) -> Arch:
    """The entry of a torchvision classifier or a timm model that the table does not hold
    (`trainables.archs.resolve`, which checks the name first, is the way in).

    `weights` (a config's `weights` field) picks other pretrained weights, whose preprocessing
    then comes from those weights."""
    return _derive(name, weights or None)


@functools.cache
def _derive(name: str, weights: str | None) -> Arch:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constructors' FutureWarnings about init defaults
        if name.startswith(TIMM_PREFIX):
            return _derive_timm(name, weights)
        return _derive_torchvision(name, weights)


def forward_gflop(model: nn.Module, size: int) -> float | None:
    """GFLOP of one eval forward pass of a meta-device model per image at `size` px
    (torch.utils.flop_counter: convolutions and matrix products, 2 FLOPs per multiply-add), or
    None where the model cannot run on the meta device (the cost model then assumes the most
    expensive study architecture)."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model.eval()(torch.empty(1, 3, size, size, device="meta"))
    except Exception:  # noqa: BLE001 - a model the meta device cannot run: no number, not a failure
        return None
    return round(counter.get_total_flops() / 1e9, 3)


# ------------------------------------------------------------------------------ model structure
@dataclass(frozen=True)
class Structure:
    layer: str
    reshape: str | None
    prefix_tokens: int
    notes: tuple[str, ...]


def on_meta(build: Callable[[], nn.Module]) -> nn.Module:
    """The model on the meta device: built there (no memory), or on the CPU and moved when its
    constructor computes with tensors (RegNet)."""
    try:
        with torch.device("meta"):
            return build()
    except Exception:
        return build().to("meta")


def read_structure(model: nn.Module, heads: tuple[str, ...], size: int) -> Structure:
    """The Grad-CAM layer (and reshape) and the normalisation note, from one meta forward pass."""
    records: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    head_at: list[int] = []
    head_ids = {id(model.get_submodule(h)) for h in heads}
    hooks = []
    for name, module in model.named_modules():
        if not name:
            continue
        hooks.append(module.register_forward_hook(
            lambda m, i, o, name=name: records.append(
                (name, m, tuple(o.shape) if isinstance(o, torch.Tensor) else ()))))
        if id(module) in head_ids:
            hooks.append(module.register_forward_pre_hook(
                lambda m, i: head_at.append(len(records)) if not head_at else None))
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    before = records[:head_at[0]] if head_at else records
    width = _in_features(model.get_submodule(heads[0]))
    spatial = [(i, n, s) for i, (n, m, s) in enumerate(before)
               if len(s) == 4 and not isinstance(m, nn.Identity) and _layout(s, width)]
    notes = [_norm_note(model), "feature_extract trains the new head(s) only; finetune and "
             "scratch train every parameter"]
    if not spatial:
        return Structure("", None, 0, (*notes, "no spatial feature map found: Grad-CAM needs "
                                       "--layer"))
    index, layer, shape = spatial[-1]
    tokens = [r for r in before[index + 1:] if len(r[2]) == 3]
    if not tokens:
        reshape = "channels_last" if _layout(shape, width) == "nhwc" else None
        how = " (NHWC, permuted for Grad-CAM)" if reshape else ""
        return Structure(layer, reshape, 0, (*notes, f"Grad-CAM layer {layer}: the last spatial "
                                             f"feature map before the head{how}"))
    attention = [n for n, m, _ in before if isinstance(m, nn.MultiheadAttention)
                 or type(m).__name__.endswith("Attention")]
    block = attention[-1].rpartition(".")[0] if attention else ""
    target = block
    if block:
        norms = [n for n, m in model.get_submodule(block).named_children()
                 if isinstance(m, nn.LayerNorm)]
        target = f"{block}.{norms[0]}" if norms else block
    outputs = {n: s for n, _, s in before}
    if not target or len(outputs.get(target, ())) != 3:
        return Structure("", None, 0, (*notes, "token model without a findable last block: "
                                       "Grad-CAM needs --layer"))
    prefix = outputs[target][1] - shape[2] * shape[3]
    return Structure(target, "tokens", max(prefix, 0), (
        *notes, f"Grad-CAM layer {target}: the first norm of the last transformer block; tokens "
        f"after the {prefix} class/register token(s) reshaped to the patch grid (pytorch-grad-cam's "
        "ViT recipe)"))


def _in_features(head: nn.Module) -> int | None:
    if isinstance(head, nn.Linear):
        return head.in_features
    if isinstance(head, nn.Conv2d):
        return head.in_channels
    return None


def _layout(shape: tuple[int, ...], width: int | None) -> str | None:
    """"nchw" or "nhwc" for a 4-D map larger than 1x1, else None."""
    if shape[1] == width or shape[3] != width:
        return "nchw" if shape[2] > 1 and shape[3] > 1 else None
    return "nhwc" if shape[1] > 1 and shape[2] > 1 else None


def _norm_note(model: nn.Module) -> str:
    bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    ln = sum(isinstance(m, (nn.LayerNorm, nn.GroupNorm)) or type(m).__name__.startswith("LayerNorm")
             for m in model.modules())
    if bn:
        return (f"{bn} BatchNorm layers: in feature_extract, bn_mode train (the study's) updates "
                "their running statistics although no weight trains; bn_mode frozen keeps them")
    return (f"no BatchNorm ({ln} LayerNorm/GroupNorm layers): no running statistics for bn_mode "
            "to freeze; bn_mode frozen differs only where a cached-feature path runs the backbone "
            "in eval mode (no dropout or stochastic depth there)")


def cached_path(model: nn.Module, heads: tuple[str, ...]) -> tuple[str | None, str | None]:
    """(fx node feeding the tail, tail): the tail is the top-level module holding every head and
    everything after the node is inside it. (None, None) when the graph is not shaped so."""
    tops = {h.split(".")[0] for h in heads}
    if len(tops) != 1:
        return None, None
    tail = tops.pop()
    try:
        from torchvision.models.feature_extraction import get_graph_node_names

        _, nodes = get_graph_node_names(model)
    except Exception:  # not fx-traceable
        return None, None
    inside = [i for i, n in enumerate(nodes) if n == tail or n.startswith(tail + ".")]
    if not inside or inside[0] == 0 or inside != list(range(inside[0], len(nodes))):
        return None, None
    node = nodes[inside[0] - 1]
    try:
        if isinstance(model.get_submodule(node), nn.Dropout):
            return None, None  # dropout would be skipped on cached features
    except AttributeError:
        pass  # a function node (flatten, getitem)
    return node, tail


# ------------------------------------------------------------------------------ torchvision
def _torchvision_weights(name: str, weights: str | None):
    options = tvm.get_model_weights(name)
    if weights is None:
        return options.DEFAULT
    try:
        chosen = tvm.get_weight(weights)
    except (ValueError, KeyError, AttributeError):
        chosen = None
    if chosen is None or type(chosen) is not options:
        raise UserError(f"weights {weights!r} are not weights of torchvision's {name}; choose from "
                        f"{', '.join(f'{options.__name__}.{m.name}' for m in options)}")
    return chosen


def _derive_torchvision(name: str, weights: str | None) -> Arch:
    w = _torchvision_weights(name, weights)
    preset = w.transforms()
    categories = len(w.meta.get("categories") or ()) or 1000
    probe = on_meta(lambda: tvm.get_model(name, weights=None))
    init_args = inspect.signature(type(probe).__init__).parameters
    build_kwargs: dict[str, Any] = {}
    if hasattr(probe, "transform_input"):
        build_kwargs["transform_input"] = True  # what torchvision sets when pretrained
    if hasattr(probe, "aux_logits"):
        build_kwargs["aux_logits"] = False  # one head (the study's Inception keeps its aux head)
    scratch_kwargs = {"init_weights": True} if "init_weights" in init_args else {}
    model = on_meta(lambda: tvm.get_model(name, weights=None, **build_kwargs)) if build_kwargs else probe
    heads = torchvision_heads(model, categories, name)
    crop = int(preset.crop_size[0])
    min_size = int((w.meta.get("min_size") or (1, 1))[0])
    fixed = "image_size" in init_args or "input_size" in init_args
    structure = read_structure(model, heads, crop)
    feature_node, tail = cached_path(model, heads)
    notes = [f"head {', '.join(heads)}: the layer producing the {categories} ImageNet logits, "
             "replaced by a fresh one for the task's classes", *structure.notes]
    if feature_node:
        notes.append(f"cached-feature path (bn_mode frozen): backbone up to fx node {feature_node!r}, "
                     f"then {tail!r}")
    return Arch(
        name=name, weights=f"{type(w).__name__}.{w.name}", input_size=crop,
        val_resize=int(preset.resize_size[0]), heads=heads, gradcam_layer=structure.layer,
        min_input_size=max(MIN_INPUT, min_size), feature_node=feature_node, tail=tail,
        build_kwargs=build_kwargs, scratch_kwargs=scratch_kwargs, peak_memory_gb=UNMEASURED_PEAK_GB,
        in_study=False, source="torchvision", model_name=name,
        mean=_triple(preset.mean), std=_triple(preset.std),
        interpolation=_interpolation(preset.interpolation.value),
        max_input_size=min_size if fixed else None, gradcam_reshape=structure.reshape,
        prefix_tokens=structure.prefix_tokens, forward_gflop=forward_gflop(model, crop),
        notes=tuple(notes))


def torchvision_heads(model: nn.Module, categories: int, name: str) -> tuple[str, ...]:
    """Every layer producing the `categories` ImageNet logits, or a UserError naming the model."""
    heads = tuple(n for n, m in model.named_modules() if n and _outputs(m) == categories)
    if not heads:
        raise UserError(f"--arch {name}: no layer of torchvision's {type(model).__name__} produces "
                        f"its {categories} ImageNet logits (no Linear or 1x1 Conv2d with that many "
                        "outputs), so its head cannot be replaced")
    return heads


def timm_heads(model: nn.Module, name: str) -> tuple[str, ...]:
    """The paths of timm's `get_classifier()` layer(s), or a UserError naming the model."""
    classifier = model.get_classifier()
    modules = classifier if isinstance(classifier, tuple) else (classifier,)
    heads = tuple(n for m in modules for n, sub in model.named_modules() if n and sub is m
                  and not isinstance(m, nn.Identity))
    if not heads:
        raise UserError(f"--arch {name}: timm's get_classifier() of {type(model).__name__} returns "
                        f"no layer ({type(classifier).__name__}), so its head cannot be replaced")
    return heads


def _outputs(module: nn.Module) -> int | None:
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1):
        return module.out_channels
    return None


# ------------------------------------------------------------------------------ timm
def _derive_timm(name: str, weights: str | None) -> Arch:
    timm = import_timm()
    spec = name[len(TIMM_PREFIX):]
    base, _, tag = spec.partition(".")
    if weights and weights.partition(".")[0] != base:
        raise UserError(f"weights {weights!r} are not weights of timm's {base}; choose from "
                        f"{', '.join(timm.list_pretrained(base + '.*')) or 'none (no pretrained tags)'}")
    wanted = weights or (f"{base}.{tag}" if tag else base)
    tags = timm.list_pretrained(base + ".*")
    if wanted != base and wanted not in tags:
        raise UserError(f"{TIMM_PREFIX}{wanted}: timm has no such pretrained tag; choose from "
                        f"{', '.join(tags) or 'none'}")
    cfg = timm.models.get_pretrained_cfg(wanted) if tags else None
    cfg_dict = cfg.to_dict() if cfg is not None else {}
    tag_name = f"{base}.{cfg.tag}" if cfg is not None and cfg.tag else base
    size = int((cfg_dict.get("input_size") or (3, 224, 224))[-1])
    crop_pct = float(cfg_dict.get("crop_pct") or 0.875)
    model = on_meta(lambda: timm.create_model(base, pretrained=False))
    heads = timm_heads(model, name)
    fixed = bool(cfg_dict.get("fixed_input_size"))
    init_args = {a for cls in type(model).__mro__ if "__init__" in vars(cls)
                 for a in inspect.signature(cls.__init__).parameters}
    min_size = cfg_dict.get("min_input_size")
    structure = read_structure(model, heads, size)
    notes = [f"head {', '.join(heads)}: timm's get_classifier(), replaced by "
             "reset_classifier(num_classes)", *structure.notes,
             "no cached-feature path: feature_extract with bn_mode frozen runs the whole model"]
    if fixed and "img_size" in init_args:
        notes.append("fixed input size: built with img_size = the trial's crop (timm resamples "
                     "the pretrained position embeddings)")
    return Arch(
        name=name, weights=tag_name if cfg is not None else "", input_size=size,
        val_resize=math.floor(size / crop_pct), heads=heads, gradcam_layer=structure.layer,
        min_input_size=max(MIN_INPUT, int(min_size[-1]) if min_size else 0),
        peak_memory_gb=UNMEASURED_PEAK_GB, in_study=False, source="timm", model_name=base,
        mean=_triple(cfg_dict.get("mean") or IMAGENET_MEAN),
        std=_triple(cfg_dict.get("std") or IMAGENET_STD),
        interpolation=_interpolation(cfg_dict.get("interpolation") or "bilinear"),
        max_input_size=size if fixed and "img_size" not in init_args else None,
        size_kwarg="img_size" if fixed and "img_size" in init_args else None,
        gradcam_reshape=structure.reshape, prefix_tokens=structure.prefix_tokens,
        forward_gflop=forward_gflop(model, size), notes=tuple(notes))


def _triple(values: Any) -> tuple[float, float, float]:
    out = tuple(float(v) for v in values)
    if len(out) != 3:
        raise UserError(f"expected 3 channel values, got {values!r}")
    return out  # type: ignore[return-value]


def _interpolation(value: str) -> str:
    return value if value in INTERPOLATIONS else "bilinear"
