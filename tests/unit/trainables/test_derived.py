"""Models outside the registry: entries derived from torchvision and timm (trainables.derived).

A small, varied sample of each library, weights=None / pretrained=False, small inputs where the
model allows. Heavy models (convnext_tiny, vit_b_16) get the head and shape checks only."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torch import nn
from torchvision import models as tvm

from tests.conftest import HYMENOPTERA, PROJECT_ROOT
from trainables.arch_record import IMAGENET_MEAN, IMAGENET_STD
from trainables.archs import ARCHS, resolve, source_of
from trainables.config import TrialConfig
from trainables.derived import timm_heads, torchvision_heads
from trainables.errors import UserError
from trainables.models import build_model, count_params, gradcam_target, head_modules
from trainables.presets import get_preset

TORCHVISION = ["resnet50", "efficientnet_b0", "convnext_tiny", "regnet_y_400mf", "vit_b_16"]
TIMM = ["timm/resnet18", "timm/convnext_atto", "timm/vit_tiny_patch16_224", "timm/efficientnet_b0"]
HEAVY = {"convnext_tiny", "vit_b_16"}
LIGHT = [a for a in TORCHVISION + TIMM if a not in HEAVY]
NUM_CLASSES = 3
SMOKE = get_preset("smoke")


def _model(arch: str, regime: str) -> tuple[nn.Module, TrialConfig]:
    config = SMOKE.trial(arch, regime)
    torch.manual_seed(0)
    return build_model(config, NUM_CLASSES, pretrained=False), config


@pytest.mark.parametrize("arch", TORCHVISION + TIMM)
def test_head_is_replaced_and_the_output_has_the_tasks_classes(arch):
    model, config = _model(arch, "scratch")
    entry = resolve(arch)
    assert entry.source == source_of(arch) != "study"
    size = config.train_crop
    assert size == (224 if arch == "vit_b_16" else 64), "smallest crop the model allows"
    with torch.inference_mode():
        out = model.eval()(torch.randn(1, 3, size, size))
    assert out.shape == (1, NUM_CLASSES)
    heads = head_modules(model, entry)
    assert heads and all((h.out_features if isinstance(h, nn.Linear) else h.out_channels)
                         == NUM_CLASSES for h in heads)


@pytest.mark.parametrize("arch", LIGHT)
@pytest.mark.parametrize("regime", ["finetune", "feature_extract", "scratch"])
def test_exactly_which_parameters_train(arch, regime):
    model, _ = _model(arch, regime)
    entry = resolve(arch)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    heads = {f"{path}.{n}" for path in entry.heads
             for n, _ in model.get_submodule(path).named_parameters()}
    if regime == "feature_extract":
        assert trainable == heads and heads
        assert count_params(model)[0] == sum(p.numel() for h in head_modules(model, entry)
                                             for p in h.parameters())
    else:
        assert trainable == {n for n, _ in model.named_parameters()}


def _library_eval_transform(arch: str):
    """The library's own evaluation preprocessing of the default weights."""
    if arch.startswith("timm/"):
        name = arch.removeprefix("timm/")
        cfg = timm.data.resolve_data_config({}, pretrained_cfg=timm.models.get_pretrained_cfg(name).to_dict())
        return timm.data.create_transform(**cfg)
    return tvm.get_model_weights(arch).DEFAULT.transforms()


@pytest.mark.parametrize("arch", TORCHVISION + TIMM)
def test_validation_transform_is_the_weights_own_preprocessing(arch):
    """At crop_scale 1 the config's validation transform (resize, crop, interpolation, mean/std)
    gives the same tensor as the library's own preset for the weights, and every regime (scratch
    too) uses it."""
    from trainables.data.dataset import ClassificationPresetEval, Normalize

    configs = [TrialConfig(arch=arch, regime=r) for r in ("finetune", "feature_extract", "scratch")]
    c = configs[0]
    assert all((x.mean, x.std, x.interpolation, x.val_resize, x.val_crop, x.weights)
               == (c.mean, c.std, c.interpolation, c.val_resize, c.val_crop, c.weights)
               for x in configs)
    image = Image.open(HYMENOPTERA / "val/ants/1124525276_816a07c17f.jpg").convert("RGB")
    resize, crop = c.eval_transform("val")
    ours = Normalize("cpu", c.mean, c.std)(ClassificationPresetEval(
        resize_size=resize, crop_size=crop, interpolation=c.interpolation)(image).unsqueeze(0))[0]
    theirs = _library_eval_transform(arch)(image)
    assert ours.shape == theirs.shape
    # ours normalises the uint8 crop, the libraries the float one: a rounding step apart
    torch.testing.assert_close(ours, theirs, atol=2.5 / 255 / min(c.std), rtol=0)
    # test and OOD: the study's protocol (Resize(crop)/CenterCrop(crop)) at the weights' crop
    assert c.eval_transform("test") == c.eval_transform("ood") == (crop, crop)


def test_derived_metadata_comes_from_the_weights():
    vit = TrialConfig(arch="timm/vit_tiny_patch16_224", regime="scratch")
    assert (vit.mean, vit.std, vit.interpolation) == ((0.5,) * 3, (0.5,) * 3, "bicubic")
    assert vit.weights == "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
    effnet = TrialConfig(arch="efficientnet_b0", regime="finetune")
    assert effnet.interpolation == "bicubic" and effnet.weights == "EfficientNet_B0_Weights.IMAGENET1K_V1"
    other = TrialConfig(arch="resnet50", regime="finetune", weights="ResNet50_Weights.IMAGENET1K_V1")
    assert (other.val_resize, TrialConfig(arch="resnet50", regime="finetune").val_resize) == (256, 232)


def test_the_studys_entries_keep_imagenet_statistics_and_bilinear():
    for arch in ARCHS:
        c = TrialConfig(arch=arch, regime="finetune")
        assert (c.mean, c.std, c.interpolation, c.weights) == (
            IMAGENET_MEAN, IMAGENET_STD, "bilinear", ARCHS[arch].weights)


@pytest.mark.parametrize("arch", [a for a in LIGHT if a != "resnet50"]
                         + ["timm/deit_tiny_distilled_patch16_224"])
def test_gradcam_layer_gives_a_map_of_the_images_size(arch):
    from analysis.gradcam import heatmap

    model, config = _model(arch, "finetune")
    layer, reshape = gradcam_target(model, resolve(arch))
    x = torch.randn(1, 3, config.train_crop, config.train_crop)
    seen = []
    hook = layer.register_forward_hook(lambda m, i, o: seen.append(o))
    cam = heatmap(model, layer, x, target=1, reshape=reshape)
    hook.remove()
    assert cam.shape == (config.train_crop, config.train_crop) and np.isfinite(cam).all()
    grid = reshape(seen[0]) if reshape else seen[0]
    assert grid.dim() == 4 and grid.shape[2] > 1 and grid.shape[3] > 1, "a spatial map"


def test_transformer_targets_follow_pytorch_grad_cams_recipe():
    assert (resolve("timm/vit_tiny_patch16_224").gradcam_layer,
            resolve("timm/vit_tiny_patch16_224").gradcam_reshape) == ("blocks.11.norm1", "tokens")
    assert resolve("timm/deit_tiny_distilled_patch16_224").prefix_tokens == 2
    vit = resolve("vit_b_16")
    assert (vit.gradcam_layer, vit.prefix_tokens) == ("encoder.layers.encoder_layer_11.ln_1", 1)
    assert vit.max_input_size == 224


@pytest.mark.parametrize("arch", ["efficientnet_b0", "regnet_y_400mf"])
def test_derived_cached_feature_path_computes_the_full_model(arch):
    from trainables.cached_features import frozen_extractor

    model, _ = _model(arch, "feature_extract")
    model.eval()
    entry = resolve(arch)
    assert entry.feature_node and entry.tail
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = frozen_extractor(model, entry)(x)["features"]
        torch.testing.assert_close(torch.flatten(model.get_submodule(entry.tail)(feats), 1), model(x),
                                   rtol=1e-4, atol=1e-4)


def test_a_model_without_a_findable_head_gets_an_error_naming_it():
    model = tvm.resnet18(weights=None)
    model.fc = nn.Identity()
    with pytest.raises(UserError, match="no layer of torchvision's ResNet produces its 1000"):
        torchvision_heads(model, 1000, "resnet18")
    headless = timm.create_model("resnet18", pretrained=False, num_classes=0)
    with pytest.raises(UserError, match="timm/resnet18: timm's get_classifier.. of ResNet returns no"):
        timm_heads(headless, "timm/resnet18")


@pytest.mark.parametrize(("changes", "needle"), [
    ({"arch": "convnext_tinyy"}, "not a torchvision classifier"),
    ({"arch": "timm/convnext_attoo"}, "timm has no model 'convnext_attoo'"),
    ({"arch": "timm/convnext_atto.no_such_tag"}, "no such pretrained tag"),
    ({"arch": "vit_b_16", "train_crop": 160}, "vit_b_16 trains at 224 px or more"),
    ({"arch": "vit_b_16", "val_crop": 256}, "built for 224 px inputs only"),
    ({"arch": "timm/vit_tiny_patch16_224", "val_crop": 160},
     "val_crop 160: timm/vit_tiny_patch16_224 is built for one input size, its img_size = "
     "train_crop 224"),
    ({"arch": "timm/vit_tiny_patch16_224", "train_crop": 160, "ood_crop": 224},
     "ood_crop 224: timm/vit_tiny_patch16_224 is built for one input size"),
    ({"arch": "resnet50", "weights": "ResNet18_Weights.IMAGENET1K_V1"},
     "not weights of torchvision's resnet50"),
    ({"arch": "resnet18", "weights": "ResNet18_Weights.DEFAULT"}, "one of the study's entries"),
    ({"arch": "resnet50", "mean": (0.5, 0.5)}, "mean must be three finite numbers"),
    ({"arch": "resnet50", "interpolation": "lanczos"}, "interpolation 'lanczos' is unknown"),
])
def test_bad_derived_settings_are_refused(changes, needle):
    with pytest.raises(UserError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        TrialConfig(**{"regime": "finetune", **changes})


def test_config_round_trips_through_json_with_the_same_trial_id():
    import json

    from trainables.config import trial_id

    for arch in ("mobilenet_v2", "timm/convnext_atto", "efficientnet_b0"):
        config = SMOKE.trial(arch, "scratch")
        again = TrialConfig(**json.loads(config.to_json()))
        assert again == config and trial_id(again, "m") == trial_id(config, "m")


def test_missing_timm_says_how_to_install_it():
    code = ("import sys; sys.modules['timm'] = None\n"
            "from trainables.config import TrialConfig\n"
            "TrialConfig(arch='timm/resnet18', regime='scratch')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0
    assert "pip install 'feature-reuse[timm]'" in proc.stderr.splitlines()[-1]


def test_study_names_never_import_a_model_library():
    code = ("import sys\nfrom trainables.presets import get_preset\n"
            "c = get_preset('paper').trial('resnet18', 'finetune')\n"
            "import json; from trainables.config import TrialConfig; TrialConfig(**json.loads(c.to_json()))\n"
            "print('torch' in sys.modules, 'timm' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.stdout.strip() == "False False", proc.stderr[-2000:]


def test_gpu_fraction_of_a_model_without_a_registry_number_is_conservative():
    from sweep.resources import ClusterInfo, fraction_for, plan_resources, trials_per_gpu
    from trainables.arch_record import UNMEASURED_PEAK_GB

    cluster = ClusterInfo(cpus=16, gpus=1, gpu_memory_gb=24.0)
    plan = plan_resources(["mobilenet_v2", "timm/convnext_atto"], cluster, None)
    assert plan.for_arch("timm/convnext_atto").gpu == fraction_for(trials_per_gpu(UNMEASURED_PEAK_GB, 24.0))
    assert plan.for_arch("timm/convnext_atto").gpu > plan.for_arch("mobilenet_v2").gpu
    assert any("no registry memory figure for timm/convnext_atto" in n for n in plan.notes)
    fixed = plan_resources(["timm/convnext_atto"], cluster, 0.25)
    assert fixed.for_arch("timm/convnext_atto").gpu == 0.25, "--gpus-per-trial overrides"
