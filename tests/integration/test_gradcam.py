"""Grad-CAM on every registered architecture (weights=None, small inputs), trainable and with a
frozen feature-extraction backbone, in the style of pytorch-grad-cam's own tests; and the CLI on
a real kept model."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis import gradcam
from tests.conftest import write_image
from trainables.config import TrialConfig
from trainables.errors import UserError
from trainables.models import build_model
from trainables.presets import PRESETS
from trainables.registry import ARCHS

INPUT = {"inception_v3": 128}
"""Small inputs keep CPU time down; Inception v3 needs at least 75 px (128 leaves Mixed_7c 2x2)."""
METHODS = ["gradcam", "gradcam++"]


@functools.cache
def frozen_model(arch: str) -> torch.nn.Module:
    """The feature-extraction model of `arch` without ImageNet weights: only the head trains."""
    torch.manual_seed(0)
    return build_model(TrialConfig(arch=arch, regime="feature_extract"), 2, pretrained=False).eval()


def _input(arch: str) -> torch.Tensor:
    size = INPUT.get(arch, 64)
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))


CASES = ([(arch, True, method) for arch in ARCHS for method in METHODS]
         + [(arch, False, "gradcam") for arch in ARCHS])
"""Every architecture x method with the frozen backbone (the hard case), and every architecture
fully trainable with Grad-CAM."""


@pytest.mark.parametrize(("arch", "frozen", "method"), CASES,
                         ids=[f"{a}-{'frozen' if f else 'trainable'}-{m}" for a, f, m in CASES])
def test_heatmap_every_arch(arch, frozen, method):
    model = frozen_model(arch)
    frozen_flags = [p.requires_grad for p in model.parameters()]
    assert any(frozen_flags) and not all(frozen_flags)
    try:
        if not frozen:
            for p in model.parameters():
                p.requires_grad_(True)
        flags = [p.requires_grad for p in model.parameters()]
        x = _input(arch)
        cam = gradcam.heatmap(model, gradcam.default_layer(model, arch), x, target=1, method=method)
        assert cam.shape == tuple(x.shape[-2:])
        assert np.isfinite(cam).all()
        assert cam.min() >= 0.0 and cam.max() <= 1.0 + 1e-6
        assert [p.requires_grad for p in model.parameters()] == flags, "requires_grad flags not restored"
    finally:  # the cached model stays a feature-extraction model for the next case
        for p, flag in zip(model.parameters(), frozen_flags, strict=True):
            p.requires_grad_(flag)


def test_frozen_backbone_needs_the_gradient_switch():
    """Plain pytorch-grad-cam records no gradient at a frozen layer; heatmap() still works."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = build_model(TrialConfig(arch="resnet18", regime="feature_extract"), 2, pretrained=False).eval()
    layer = model.layer4
    x = _input("resnet18")
    with GradCAM(model=model, target_layers=[layer]) as cam, pytest.raises(AttributeError):
        cam(input_tensor=x, targets=[ClassifierOutputTarget(0)])  # no gradient was recorded
    out = gradcam.heatmap(model, layer, x, target=0)
    assert out.shape == (64, 64) and np.isfinite(out).all() and out.max() > 0
    assert not any(p.requires_grad for p in model.layer4.parameters())
    assert all(p.requires_grad for p in model.fc.parameters())


def test_frozen_and_trainable_heatmaps_agree_for_the_same_weights():
    """Switching gradients on changes nothing but bookkeeping: same weights, same map."""
    model = frozen_model("mobilenet_v2")
    x = _input("mobilenet_v2")
    layer = gradcam.default_layer(model, "mobilenet_v2")
    frozen = gradcam.heatmap(model, layer, x, target=0)
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(True)
    try:
        trainable = gradcam.heatmap(model, layer, x, target=0)
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
    np.testing.assert_allclose(frozen, trainable, atol=1e-5)


def test_resolve_layer_paths():
    model = frozen_model("mobilenet_v2")
    assert gradcam.resolve_layer(model, "features.18") is model.features[18]
    assert gradcam.resolve_layer(model, "features.3.conv") is model.features[3].conv
    with pytest.raises(UserError, match=r"'layer4': no such module .* \(children of the model: "
                                        "features, classifier"):
        gradcam.resolve_layer(model, "layer4")
    with pytest.raises(UserError, match="children of features.3: conv"):
        gradcam.resolve_layer(model, "features.3.nope")


def test_unknown_method_is_a_user_error():
    with pytest.raises(UserError, match="--method"):
        gradcam.cam_class("nope")


# ------------------------------------------------------------------------ the CLI, real model
def small_pool(root: Path, per_class: int = 10, ext: str = ".jpg") -> Path:
    for ci, (cls, color) in enumerate((("a", (200, 40, 40)), ("b", (40, 40, 200)))):
        for i in range(per_class):
            write_image(root / cls / f"img_{i:03d}{ext}", color, seed=100 * ci + i)
    return root


@pytest.fixture(scope="module")
def kept_trial(tmp_path_factory, torch_home):
    """A real smoke trial (mobilenet_v2 feature extraction, ImageNet weights) with its model kept,
    in the sweep's layout: <exp>/manifest.json, <exp>/results/."""
    from trainables.datasource import prepare_data
    from trainables.train import run_trial

    base = tmp_path_factory.mktemp("kept")
    pool = small_pool(base / "pool")
    roots, manifest = prepare_data(pool)
    exp = base / "exp"
    manifest.save(exp / "manifest.json")
    config = PRESETS["smoke"].trial("mobilenet_v2", "feature_extract", 0)
    row = run_trial(config, manifest, roots, str(exp / "results"), keep_model=True)
    return exp, pool, row


def test_gradcam_cli_on_a_kept_feature_extraction_model(kept_trial, tmp_path, capsys):
    exp, pool, row = kept_trial
    out = tmp_path / "cam.png"
    argv = ["--results", str(exp / "results"), "--arch", "mobilenet_v2", "--regime", "feature_extract",
            "--n", "2", "--data", str(pool), "--out", str(out)]
    assert gradcam.main(argv) == 0, capsys.readouterr().err
    assert out.stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert row["trial_id"] in printed and str(out) in printed and "features.18" in printed
    # --trial, a named layer and the default output path (<results>/../report/)
    assert gradcam.main(["--results", str(exp / "results"), "--trial", row["trial_id"], "--n", "1",
                         "--layer", "features.17", "--data", str(pool)]) == 0
    assert list((exp / "report").glob(f"gradcam_mobilenet_v2_feature_extract_{row['trial_id']}.png"))


def test_gradcam_cli_errors(kept_trial, tmp_path, capsys):
    exp, pool, row = kept_trial
    results = str(exp / "results")
    # a user's folder cannot be guessed: --data is required and named
    assert gradcam.main(["--results", results, "--trial", row["trial_id"]]) == 2
    assert "--data" in capsys.readouterr().err
    # a different folder with the same names: the manifest's hashes catch it
    other = small_pool(tmp_path / "other", ext=".png")
    for f in other.rglob("*.png"):
        f.rename(f.with_suffix(".jpg"))
    assert gradcam.main(["--results", results, "--trial", row["trial_id"], "--data", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and ("differs" in err or "not found" in err)
    assert gradcam.main(["--results", results, "--trial", "nope", "--data", str(pool)]) == 2
    assert "no finished trial" in capsys.readouterr().err
    assert gradcam.main(["--results", results, "--arch", "mobilenet_v2", "--regime", "scratch",
                         "--data", str(pool)]) == 2
    assert "no finished mobilenet_v2 scratch trial" in capsys.readouterr().err
    assert gradcam.main(["--results", results, "--trial", row["trial_id"], "--data", str(pool),
                         "--target-class", "zebra"]) == 2
    assert "zebra" in capsys.readouterr().err
    assert not Path(tmp_path / "nothing").exists()
