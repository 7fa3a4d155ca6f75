"""What an architecture entry holds (`Arch`) and the input defaults it is built from.

A leaf (no torch): the table of the study's entries (`trainables.archs`) and the entries derived
from torchvision or timm at run time (`trainables.derived`) are both `Arch` records.

Every path in an entry is a dotted path inside the model (`nn.Module.get_submodule`), and every
node name a torch.fx node (`torchvision.models.feature_extraction.get_graph_node_names`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
INTERPOLATIONS: tuple[str, ...] = ("bilinear", "bicubic", "nearest")
"""Resampling of the resize and random-resized-crop steps (torchvision's InterpolationMode values)."""
SOURCES: tuple[str, ...] = ("study", "torchvision", "timm")
"""Where an architecture's entry comes from: the table (`trainables.archs`), or derived from
torchvision or timm."""
TIMM_PREFIX = "timm/"
"""`timm/<model>[.<pretrained tag>]` names a timm model (`timm/convnext_atto`)."""
UNMEASURED_PEAK_GB = 8.0
"""GPU memory assumed for a trial of an architecture without a registry number (a derived one),
until a memory check on the first GPU node measures it: conservative, so that `auto` fractions never
overcommit a GPU (two or three trials per 24 GB GPU)."""


@dataclass(frozen=True)
class Arch:
    name: str
    """torchvision's model name (`torchvision.models.get_model(name)`) and the registry key."""
    weights: str
    """The ImageNet weights the transfer regimes load, as `torchvision.models.get_weight` names it."""
    input_size: int
    """The crop the study trains and evaluates at (224; Inception v3 299)."""
    val_resize: int
    """The authors' validation resize at `input_size` (Resize(256)/CenterCrop(224); Inception
    Resize(299)/CenterCrop(299)). Their test script resized test and OOD images to the crop itself."""
    heads: tuple[str, ...]
    """The classification layer(s) replaced for the new classes."""
    gradcam_layer: str
    """Default Grad-CAM target layer: the last spatial feature map."""
    min_input_size: int = 32
    """The smallest crop the model trains at (Inception's auxiliary head needs its full 299)."""
    feature_node: str | None = None
    """fx node whose output is the input of `tail`: where the frozen-backbone path stops."""
    tail: str | None = None
    """The final block holding the new head; it trains on cached features when the backbone is
    frozen (bn_mode "frozen"). None: no cached-feature path (Inception, whose auxiliary head
    branches off mid-backbone)."""
    build_kwargs: dict[str, Any] = field(default_factory=dict)
    """Passed in every regime, so that pretrained and scratch models see the same input path."""
    scratch_kwargs: dict[str, Any] = field(default_factory=dict)
    peak_memory_gb: float = 2.0
    """Memory one paper-config trial (batch 6, fp32) needs at once, in GB, sizing GPU fractions:
    ESTIMATED, not measured on a GPU. Derived by `python bench/footprint.py` (a training step and
    an eval pass traced on fake tensors; torch 2.14.1): the larger of the step's and the eval
    pass's peak over the three regimes, rounded up to 0.1 GB. The sweep's memory check on the
    first GPU node replaces it at sweep time (sweep/memory_check.py)."""
    forward_gflop: float | None = None
    """GFLOP of one eval forward pass per image at `input_size` (convolutions and matrix products,
    2 FLOPs per multiply-add), for the sweep's cost model. The table's entries: traced by
    `python bench/footprint.py` (torch.utils.flop_counter; tests/integration/
    test_footprint_registry.py checks them against a fresh trace). Derived entries: counted on
    the meta device when they are derived (`trainables.derived`)."""
    in_study: bool = True
    source: str = "study"
    """"study" (hand-written here), "torchvision" or "timm" (derived, `trainables.derived`)."""
    model_name: str = ""
    """The library's own model name (timm's without the prefix); "" means `name`."""
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    """Mean/std and resampling of the weights' own preprocessing, used in every regime."""
    max_input_size: int | None = None
    """Models built for one input size only (torchvision's ViTs): crops may not exceed it."""
    size_kwarg: str | None = None
    """Constructor argument given the trial's crop (timm ViTs: `img_size`, position embeddings
    resampled by timm when the pretrained weights load)."""
    gradcam_reshape: str | None = None
    """How Grad-CAM turns the target layer's output into (N, C, H, W): None (already is),
    "channels_last" (N, H, W, C), "tokens" ((N, prefix + H*W, C) token sequences of a ViT)."""
    prefix_tokens: int = 0
    """Class/distillation/register tokens before the patch tokens ("tokens" reshape)."""
    notes: tuple[str, ...] = ()
    """How the derivation chose the head, the Grad-CAM layer and normalisation behaviour."""

    @property
    def library_name(self) -> str:
        return self.model_name or self.name
