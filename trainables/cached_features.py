"""Feature extraction with a frozen backbone (bn_mode "frozen"): the backbone runs once per image.

Opt-in, and a different experiment from the study's feature extraction, in which the whole model
stays in train mode so BatchNorm statistics move although no weight trains (bn_mode "train", the
default). Here the backbone is in eval mode, so it is a fixed function of the image:

  - it is cut at the registry entry's `feature_node` with torchvision's
    `create_feature_extractor`, and each BatchNorm that follows a convolution is folded into it
    (the same function in eval mode, fewer passes over memory; DenseNet's BatchNorms come before
    their convolutions and stay);
  - each epoch, every training image's fresh augmentation draw goes through it once, without
    autograd, and only the tail (the block holding the new head) trains on the result;
  - the validation crops' features are computed once per trial.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.utils.data import DataLoader
from torchvision.models.feature_extraction import create_feature_extractor

from trainables.arch_record import Arch
from trainables.config import TrialConfig
from trainables.device import autocast

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]


class TailHead(nn.Module):
    """flatten(tail(features)): the trainable part of the model, on cached features."""

    def __init__(self, tail: nn.Module) -> None:
        super().__init__()
        self.tail = tail

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.tail(features), 1)


def fold_sequential_batchnorm(module: nn.Module) -> int:
    """Fold each BatchNorm that directly follows a convolution inside an nn.Sequential (such as
    torchvision's Conv2dNormActivation, which feature extraction keeps as one leaf node, out of
    torch.fx's reach) into that convolution; returns how many were folded. Eval mode only."""
    folded = 0
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:], strict=False):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq._modules[a] = fuse_conv_bn_eval(conv, bn)
                seq._modules[b] = nn.Identity()
                folded += 1
    return folded


def frozen_extractor(model: nn.Module, arch: Arch, node: str | None = None) -> nn.Module:
    """image -> input of the tail (or the output of fx node `node`: the linear probe's
    penultimate layer), for the eval-mode backbone, BatchNorm folded, on a copy (the model
    itself keeps its modules; what follows the node is left out of the copy)."""
    if node is None and (arch.feature_node is None or arch.tail is None):
        raise ValueError(f"{arch.name} has no cached-feature path (no feature node in the registry)")
    backbone = copy.deepcopy(model).eval().requires_grad_(False)
    extractor = create_feature_extractor(backbone, return_nodes={node or arch.feature_node: "features"})
    fused = fuse(extractor.eval(), inplace=True, no_trace=True)  # conv -> bn nodes of the graph
    fold_sequential_batchnorm(fused)  # and those inside leaf modules
    # channels_last: faster forward-only convolutions on CPU and GPU (summation order only)
    return fused.to(memory_format=torch.channels_last)


class FrozenBackbone:
    """The cached-feature path of one trial: `head` trains on what `features` yields."""

    def __init__(self, model: nn.Module, arch: Arch, images: Callable[[torch.Tensor], torch.Tensor],
                 device: torch.device, config: TrialConfig) -> None:
        self.extractor = frozen_extractor(model, arch).to(device)
        self.head = TailHead(model.get_submodule(arch.tail))
        self.images, self.device, self.bf16 = images, device, config.bf16

    def _features(self, batch: torch.Tensor) -> torch.Tensor:
        x = self.images(batch).contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), autocast(self.device, self.bf16):
            return self.extractor(x)["features"].float()

    def features(self, loader: DataLoader) -> Batches:
        """(features, labels) for each batch of a fresh pass over the loader (new augmentations)."""
        for batch, labels in loader:
            yield self._features(batch), labels

    def cached(self, loader: DataLoader) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Features of a deterministic loader (the eval crops), computed once."""
        return list(self.features(loader))
