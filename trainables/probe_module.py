"""The linear probe's kept model as one torch module: the backbone, then a `Linear`.

`trainables.linear_probe` fits scikit-learn's `LogisticRegression` on standardised penultimate
features. For `--keep-model`, predict and export that regression becomes a `Linear` layer on the
raw features, with the standardisation folded in (computed in float64, stored as float32):

    z = (x - mean) / scale                      (StandardScaler; without it mean 0, scale 1)
    logits = z @ coef.T + intercept = x @ (coef / scale).T + (intercept - coef @ (mean / scale))

so `softmax(Linear(x))` is the regression's `predict_proba(x)`. Two classes: scikit-learn's
binary model has one row, p(second class) = sigmoid(d), which is the softmax of logits (0, d).
A class the training split lacked (the regression never saw it) gets probability 0 there, and
here a logit of `ABSENT_LOGIT`.

`ProbeClassifier` = the backbone cut at the architecture's main head (torch.fx, the same node the
probe's features come from; spatially averaged when it is a feature map, as SqueezeNet's) and that
`Linear`. Its state dict is what the model file holds; `trainables.model_file` rebuilds it from
the trial's config like any other kept model. The probe's features were computed with BatchNorm
folded into the convolutions (`trainables.cached_features`); this module keeps BatchNorm as it is
(eval mode), the same function up to float32 rounding (test: the kept module reproduces the
trial's recorded probabilities to 1e-4).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from trainables.arch_record import Arch
from trainables.models import set_submodule

ABSENT_LOGIT = -1e9
"""The logit of a class the regression never saw: softmax gives it 0, as predict_proba does."""


def penultimate(model: nn.Module, arch: Arch) -> nn.Module:
    """image -> {"features": the input of the main head} (eval mode): the heads of `model` are
    swapped for nn.Identity (in place) and fx drops what follows the main one."""
    for path in arch.heads:
        set_submodule(model, path, nn.Identity())
    with warnings.catch_warnings():  # Inception: its train-mode graph has more nodes; eval is used
        warnings.filterwarnings("ignore", message="NOTE: The nodes obtained by tracing")
        return create_feature_extractor(model.eval(), return_nodes={arch.heads[0]: "features"}).eval()


class ProbeClassifier(nn.Module):
    """Normalised image batch -> logits of the linear probe (eval mode only)."""

    def __init__(self, backbone: nn.Module, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.linear = nn.Linear(num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)["features"]
        if features.ndim > 2:  # a feature map (SqueezeNet): global average pooling, as the probe
            features = features.mean(dim=tuple(range(2, features.ndim)))
        return self.linear(features.flatten(1))


def regression_linear(coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray,
                      num_classes: int, mean: np.ndarray | None = None,
                      scale: np.ndarray | None = None) -> nn.Linear:
    """A `Linear` on raw features whose softmax is the regression's predict_proba.

    coef (K', D) and intercept (K',) as scikit-learn holds them (K' = 1 for two classes),
    `classes` the label of each of the regression's classes (`clf.classes_`), mean/scale the
    `StandardScaler`'s (None: features not standardised)."""
    coef = np.asarray(coef, dtype=np.float64)
    intercept = np.asarray(intercept, dtype=np.float64)
    dim = coef.shape[1]
    mean = np.zeros(dim) if mean is None else np.asarray(mean, dtype=np.float64)
    scale = np.ones(dim) if scale is None else np.asarray(scale, dtype=np.float64)
    if len(classes) == 2 and coef.shape[0] == 1:  # binary: logits (0, d)
        coef = np.vstack([np.zeros(dim), coef[0]])
        intercept = np.array([0.0, intercept[0]])
    weight = coef / scale
    bias = intercept - weight @ mean
    full_w = np.zeros((num_classes, dim))
    full_b = np.full(num_classes, ABSENT_LOGIT)
    full_w[np.asarray(classes)] = weight
    full_b[np.asarray(classes)] = bias
    linear = nn.Linear(dim, num_classes)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(full_w))
        linear.bias.copy_(torch.from_numpy(full_b))
    return linear


def probe_classifier(model: nn.Module, arch: Arch, linear: nn.Linear) -> ProbeClassifier:
    """The kept module of a probe trial: `model` (the trial's built model; its heads are
    replaced in place) cut at its penultimate layer, then `linear`."""
    module = ProbeClassifier(penultimate(model, arch), linear.in_features, linear.out_features)
    module.linear = linear
    return module.eval()


def empty_probe(model: nn.Module, arch: Arch, state_dict: dict[str, torch.Tensor]
                ) -> ProbeClassifier:
    """A `ProbeClassifier` shaped to load `state_dict` (its `linear` sized from the file)."""
    out_features, in_features = state_dict["linear.weight"].shape
    return probe_classifier(model, arch, nn.Linear(in_features, out_features))
