"""Grad-CAM on every registered architecture (weights=None, small inputs), trainable and with a
frozen feature-extraction backbone, in the style of pytorch-grad-cam's own tests (analysis.cam);
and Table I (analysis.gradcam) on real kept models: the default model, the columns, target- and
other-class rows, the colour bar, the target layer, and the CLI."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis import cam, gradcam, table_one
from tests.conftest import write_image
from trainables.archs import ARCHS
from trainables.config import TrialConfig
from trainables.errors import UserError
from trainables.models import build_model
from trainables.presets import PRESETS
from trainables.regimes import regime_label

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
        out = cam.heatmap(model, cam.default_layer(model, arch), x, target=1, method=method)
        assert out.shape == tuple(x.shape[-2:])
        assert np.isfinite(out).all()
        assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-6
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
    with GradCAM(model=model, target_layers=[layer]) as plain, pytest.raises(AttributeError):
        plain(input_tensor=x, targets=[ClassifierOutputTarget(0)])  # no gradient was recorded
    out = cam.heatmap(model, layer, x, target=0)
    assert out.shape == (64, 64) and np.isfinite(out).all() and out.max() > 0
    assert not any(p.requires_grad for p in model.layer4.parameters())
    assert all(p.requires_grad for p in model.fc.parameters())


def test_frozen_and_trainable_heatmaps_agree_for_the_same_weights():
    """Switching gradients on changes nothing but bookkeeping: same weights, same map."""
    model = frozen_model("mobilenet_v2")
    x = _input("mobilenet_v2")
    layer = cam.default_layer(model, "mobilenet_v2")
    frozen = cam.heatmap(model, layer, x, target=0)
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(True)
    try:
        trainable = cam.heatmap(model, layer, x, target=0)
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
    np.testing.assert_allclose(frozen, trainable, atol=1e-5)


def test_resolve_layer_paths():
    model = frozen_model("mobilenet_v2")
    assert cam.resolve_layer(model, "features.18") is model.features[18]
    assert cam.resolve_layer(model, "features.3.conv") is model.features[3].conv
    with pytest.raises(UserError, match=r"'layer4': no such module .* \(children of the model: "
                                        "features, classifier"):
        cam.resolve_layer(model, "layer4")
    with pytest.raises(UserError, match="children of features.3: conv"):
        cam.resolve_layer(model, "features.3.nope")


def test_unknown_method_is_a_user_error():
    with pytest.raises(UserError, match="--method"):
        cam.cam_class("nope")


# ------------------------------------------------------------------------ the CLI, real model
def small_pool(root: Path, per_class: int = 10, ext: str = ".jpg") -> Path:
    for ci, (cls, color) in enumerate((("a", (200, 40, 40)), ("b", (40, 40, 200)))):
        for i in range(per_class):
            write_image(root / cls / f"img_{i:03d}{ext}", color, seed=100 * ci + i)
    return root


@pytest.fixture(scope="module")
def kept_trial(tmp_path_factory, torch_home):
    """Real smoke trials (mobilenet_v2, ImageNet weights) with their models kept, in the sweep's
    layout without data_roots.json (<exp>/manifest.json, <exp>/results/): feature extraction seed
    0 (returned), fine-tune seeds 0 and 1, scratch seed 0."""
    from trainables.data.demo import prepare_data
    from trainables.train import run_trial

    base = tmp_path_factory.mktemp("kept")
    pool = small_pool(base / "pool")
    roots, manifest = prepare_data(pool)
    exp = base / "exp"
    manifest.save(exp / "manifest.json")
    config = PRESETS["smoke"].trial("mobilenet_v2", "feature_extract", 0)
    row = run_trial(config, manifest, roots, str(exp / "results"), keep_model=True)
    for regime, seed in (("finetune", 0), ("finetune", 1), ("scratch", 0)):
        run_trial(PRESETS["smoke"].trial("mobilenet_v2", regime, seed), manifest, roots,
                  str(exp / "results"), keep_model=True)
    return exp, pool, row


def test_table_one_defaults_to_the_best_fine_tuned_model(kept_trial):
    from analysis.aggregate import rank
    from analysis.load import load_results

    exp, _, _ = kept_trial
    res = load_results(str(exp / "results"))
    chosen = gradcam.pick_trial(res)
    ft = res.trials[res.trials["regime"] == "finetune"]
    assert chosen["regime"] == "finetune" and chosen["trial_id"] == rank(ft).iloc[0]["trial_id"]
    (model, why), = gradcam.report_models(res)
    assert model["trial_id"] == chosen["trial_id"] and "fine-tuned" in why
    scratch = gradcam.matching_scratch(res, chosen)
    assert scratch is not None and scratch["regime"] == "scratch"


def test_table_one_columns_rows_and_colour_bar(kept_trial):
    """Image | ImageNet model | the transfer regime's model (its label) | scratch model; target-
    and other-class rows; the transfer map is the map of the true class; one colour bar; the layer
    is named."""
    from analysis.image_roots import find_roots, prepare
    from analysis.load import load_results

    exp, pool, _ = kept_trial
    res = load_results(str(exp / "results"))
    row = gradcam.pick_trial(res)
    roots = find_roots(res, str(pool))
    table = gradcam.compute(res, row, roots, n=3, scratch=gradcam.matching_scratch(res, row))
    assert [c.split("\n")[0] for c in table.columns] == [
        "Image", "ImageNet model", f"{regime_label(row['regime'])} model", "From-scratch model"]
    assert [r.image.label for r in table.rows] == ["a", "a", "b"]  # ceil(n/2) of the target class
    assert table.info["layer"] == "features.18" and table.info["layer_default"]
    first = table.rows[0]
    assert len(first.cams) == 3 and all(c.shape == (64, 64) for c in first.cams)
    model, _, classes = gradcam.load_kept_model(res.root, row["model_path"])
    config = PRESETS["smoke"].trial("mobilenet_v2", "finetune", int(row["seed"]))
    assert (table.info["resize"], table.info["crop"]) == config.eval_transform("test")  # as tested
    _, x = prepare(first.image.path, table.info["resize"], table.info["crop"])
    again = cam.heatmap(model, cam.default_layer(model, "mobilenet_v2"), x, classes.index("a"))
    np.testing.assert_allclose(first.cams[1], again, atol=1e-5)
    assert "top-1:" in first.notes[0] and "p(a)=" in first.notes[1]
    fig = table_one.figure(table)
    assert len(fig.axes) == 3 * 4 + 1  # the panels and one colour bar
    assert "scaled to [0, 1]" in fig.axes[-1].get_ylabel()
    assert "layer features.18 (default)" in fig._suptitle.get_text()
    chosen = gradcam.compute(res, row, roots, n=1, layer="features.14")
    assert chosen.info["layer"] == "features.14" and not chosen.info["layer_default"]
    assert "layer features.14 (chosen)" in table_one.figure(chosen)._suptitle.get_text()
    import matplotlib.pyplot as plt

    plt.close("all")


def test_gradcam_cli_default_model_with_scratch_column(kept_trial, tmp_path, capsys):
    exp, pool, _ = kept_trial
    out = tmp_path / "t1.png"
    assert gradcam.main(["--results", str(exp / "results"), "--scratch", "--n", "2", "--data", str(pool),
                         "--out", str(out)]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "mobilenet_v2 finetune" in printed and "images from --data" in printed
    assert out.stat().st_size > 10_000


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


def test_a_model_from_another_code_version_is_refused_with_a_reason(kept_trial, tmp_path):
    exp, _, row = kept_trial
    ckpt = torch.load(exp / "results" / row["model_path"], map_location="cpu", weights_only=True)
    ckpt["config"]["input_size"] = 160  # a setting an older version recorded
    torch.save(ckpt, tmp_path / "old.pt")
    with pytest.raises(UserError, match=r"settings this code does not know \(input_size\)\. Fix: rerun"):
        gradcam.load_kept_model(str(exp / "results"), str(tmp_path / "old.pt"))


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
    assert gradcam.main(["--results", results, "--arch", "resnet18", "--data", str(pool)]) == 2
    assert "no finished resnet18 finetune trial" in capsys.readouterr().err
    assert gradcam.main(["--results", results, "--trial", row["trial_id"], "--data", str(pool),
                         "--target-class", "zebra"]) == 2
    assert "zebra" in capsys.readouterr().err
    assert not Path(tmp_path / "nothing").exists()
