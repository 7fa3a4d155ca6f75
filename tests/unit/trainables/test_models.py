"""The architecture registry: head replacement and trainable parameters per regime, for every
registered architecture, with weights=None (only mobilenet_v2 has real weights offline)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainables.archs import ARCHS
from trainables.config import TrialConfig
from trainables.models import build_model, count_params, head_modules
from trainables.regimes import REGIMES

ALL_ARCHS = list(ARCHS)
NUM_CLASSES = 3


def _model(arch: str, regime: str) -> nn.Module:
    torch.manual_seed(0)
    return build_model(TrialConfig(arch=arch, regime=regime), NUM_CLASSES, pretrained=False)


def _head_param_names(model: nn.Module, arch: str) -> set[str]:
    names = set()
    for path in ARCHS[arch].heads:
        names |= {f"{path}.{n}" for n, _ in model.get_submodule(path).named_parameters()}
    return names


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_head_output_shape(arch):
    model = _model(arch, "scratch").eval()
    size = 299 if arch == "inception_v3" else 64
    with torch.inference_mode():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, NUM_CLASSES)
    for head in head_modules(model, ARCHS[arch]):
        out_features = head.out_features if isinstance(head, nn.Linear) else head.out_channels
        assert out_features == NUM_CLASSES


def test_squeezenet_head_is_1x1_conv_and_num_classes_updated():
    model = _model("squeezenet1_0", "scratch")
    head = model.classifier[1]
    assert isinstance(head, nn.Conv2d) and head.kernel_size == (1, 1)
    assert model.num_classes == NUM_CLASSES


def test_inception_training_returns_aux_logits():
    model = _model("inception_v3", "scratch").train()
    out = model(torch.randn(2, 3, 299, 299))
    assert out.logits.shape == (2, NUM_CLASSES) and out.aux_logits.shape == (2, NUM_CLASSES)
    assert model.transform_input, "input normalisation must be the same in every regime"


@pytest.mark.parametrize("arch", ALL_ARCHS)
@pytest.mark.parametrize("regime", REGIMES)
def test_exactly_which_parameters_train(arch, regime):
    model = _model(arch, regime)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    everything = {n for n, _ in model.named_parameters()}
    if regime == "feature_extract":
        assert trainable == _head_param_names(model, arch)
        heads = head_modules(model, ARCHS[arch])
        assert count_params(model)[0] == sum(p.numel() for h in heads for p in h.parameters())
    elif regime == "linear_probe":  # the regression on its features is all that fits
        assert trainable == set()
    else:
        assert trainable == everything
    assert count_params(model)[1] == sum(p.numel() for p in model.parameters())


