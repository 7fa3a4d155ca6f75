"""What a model's structure says, read from the model on the `meta` device (no memory, no weights).

One forward pass there with hooks records every module's output shape in execution order:
  - the Grad-CAM layer is the last spatial feature map before the head: an NCHW map, or an NHWC
    one (timm's Swin) with a "channels_last" reshape; for a token model (a ViT: token sequences
    after the patch embedding), the first LayerNorm of the last transformer block with a
    "tokens" reshape, as pytorch-grad-cam documents for ViT;
  - the normalisation note counts BatchNorm against LayerNorm/GroupNorm layers.
torchvision models whose head sits in one top-level module also get the cached-feature path
(`feature_node`, `tail`) from torchvision's fx graph (`cached_path`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


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
