"""The project's loop against the study's own pipeline (bench/baseline.py): same inputs, same outputs.

Augmentation: for the same RNG state the project's training crops are the study's crops bit for
bit (Pillow backend) or within one grey level (tensor backend). Evaluation: each split's eval
inputs are the study's, and predictions are identical whatever the eval batch size. The
frozen-backbone path (cut with create_feature_extractor, BatchNorm folded) computes the full
model's features. The benchmark itself (many seeds, real data) is bench/trial_speed.py;
docs/performance.md has its results.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from bench.baseline import ManifestImageFolder, datasets, run_baseline_trial
from tests.conftest import write_image
from trainables.archs import ARCHS
from trainables.cached_features import frozen_extractor
from trainables.data.dataset import (
    ClassificationPresetTrain,
    ImageDataset,
    eval_crops,
    load_trial_data,
    normalize,
    train_loader,
)
from trainables.data.folders import build_manifest
from trainables.data.manifest import DataRoots
from trainables.engine import DeviceInputs, evaluate, seed_everything
from trainables.models import build_model
from trainables.presets import PRESETS

SMOKE = PRESETS["smoke"]
CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pool(make_pool):
    """Two classes of differently sized noisy images (crops must really resample)."""
    root = make_pool({"blue": 12, "red": 12})
    for i in range(6):  # larger, non-square images too
        write_image(root / "red" / f"big_{i}.png", (200, 40, 40), size=(97, 61), seed=100 + i)
        write_image(root / "blue" / f"big_{i}.png", (40, 40, 200), size=(61, 97), seed=200 + i)
    return root, build_manifest(root, split_seed=0)


def _data(pool):
    root, manifest = pool
    return load_trial_data(manifest, DataRoots(str(root)), "all")


def _config(crop: int = 48, **settings):
    return SMOKE.trial("mobilenet_v2", "scratch", train_crop=crop, **settings)


def _study_dataset(pool, split: str, config) -> ManifestImageFolder:
    root, manifest = pool
    return datasets(manifest, DataRoots(str(root)), config)[split]


# ------------------------------------------------------------------------- augmentation
def test_pil_training_crops_are_the_study_crops_bit_for_bit(pool):
    """Same RNG state and order: normalize(project crops) == the study's ToTensor+Normalize."""
    data, config = _data(pool), _config(48)
    study = _study_dataset(pool, "train", config)
    ours_ds = ImageDataset(data.train, ClassificationPresetTrain(crop_size=48, backend="pil"))
    assert [p for p, _ in study.samples][0].endswith(data.train.paths[0])
    order = torch.randperm(len(ours_ds)).tolist()
    torch.manual_seed(11)
    ours = normalize(torch.stack([ours_ds[i][0] for i in order]))
    torch.manual_seed(11)
    theirs = torch.stack([study[i][0] for i in order])
    assert ours.shape == theirs.shape == (len(order), 3, 48, 48)
    assert torch.equal(ours, theirs)
    torch.manual_seed(12)
    assert not torch.equal(normalize(torch.stack([ours_ds[i][0] for i in order])), theirs)


def test_train_loader_covers_the_split_once_per_epoch_reproducibly(pool):
    data = _data(pool)
    config = _config(32)
    seed_everything(5)
    batches = list(train_loader(data.train, config, CPU))
    labels = torch.cat([y for _, y in batches])
    assert [len(y) for _, y in batches[:-1]] == [6] * (len(batches) - 1)
    assert sorted(labels.tolist()) == sorted(data.train.labels.tolist())
    seed_everything(5)
    again = list(train_loader(data.train, config, CPU))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
               for a, b in zip(batches, again, strict=True))


def test_tensor_backend_draws_the_same_crops_within_one_grey_level(pool):
    data = _data(pool)
    pil, tensor = (ImageDataset(data.train, ClassificationPresetTrain(crop_size=40, backend=b))
                   for b in ("pil", "tensor"))
    torch.manual_seed(3)
    a = torch.stack([pil[i][0] for i in range(len(pil))]).float()
    torch.manual_seed(3)
    b = torch.stack([tensor[i][0] for i in range(len(tensor))]).float()
    diff = (a - b).abs()
    assert diff.max() <= 1.0 and diff.mean() < 0.05
    crops = [eval_crops(data.val, "val", _config(40, backend=k)).float() for k in ("pil", "tensor")]
    assert (crops[0] - crops[1]).abs().max() <= 1.0


@pytest.mark.parametrize("split", ["val", "test"])
def test_eval_crops_are_the_study_eval_inputs_per_split(pool, split):
    """Validation at Resize(val_resize)/CenterCrop, test at Resize(test_resize)/CenterCrop."""
    data, config = _data(pool), _config(40)
    assert config.val_resize != config.test_resize
    study = _study_dataset(pool, split, config)
    theirs = torch.stack([study[i][0] for i in range(len(study))])
    assert torch.equal(normalize(eval_crops(data.split(split), split, config)), theirs)


# ------------------------------------------------------------------------- evaluation
def _model(regime="feature_extract"):
    config = SMOKE.trial("mobilenet_v2", regime, bn_mode="frozen")
    torch.manual_seed(0)
    model = build_model(config, 2, pretrained=False)
    for m in model.modules():  # non-trivial running statistics, as a trained model has
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return config, model.eval()


def test_evaluation_equals_the_study_loop_on_identical_inputs(pool):
    """The project's inference_mode evaluation and the study's DataLoader(batch 6) no_grad loop
    give the same predictions and probabilities, whatever the eval batch size."""
    data = _data(pool)
    _, model = _model("finetune")
    study = DataLoader(_study_dataset(pool, "val", _config(64)), batch_size=6)
    with torch.no_grad():
        theirs = torch.cat([torch.softmax(model(x), 1) for x, _ in study])
    for batch in (3, 64):
        config = _config(64, eval_batch_size=batch)
        loader = DataLoader(list(zip(eval_crops(data.val, "val", config), data.val.labels,
                                     strict=True)), batch_size=batch)
        ours = evaluate(model, nn.CrossEntropyLoss(), loader, DeviceInputs(CPU, config), CPU, config)
        assert torch.equal(ours.preds, theirs.argmax(1))
        torch.testing.assert_close(ours.probs, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch_name", ["mobilenet_v2", "resnet18", "squeezenet1_0", "vgg11_bn",
                                       "densenet161"])
def test_frozen_extractor_computes_the_full_models_features(arch_name):
    """create_feature_extractor at the registry's feature node, BatchNorm folded: the tail on its
    output is the full model (ResNet: a Linear after flatten; SqueezeNet: a conv block)."""
    config = SMOKE.trial(arch_name, "feature_extract", bn_mode="frozen")
    torch.manual_seed(0)
    model = build_model(config, 2, pretrained=False).eval()
    arch = ARCHS[arch_name]
    extractor = frozen_extractor(model, arch)
    if arch_name != "densenet161":  # DenseNet normalises before its convolutions
        assert not any(isinstance(m, nn.BatchNorm2d) for m in extractor.modules()), "BN folded"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = extractor(x)["features"]
        via_tail = torch.flatten(model.get_submodule(arch.tail)(feats), 1)
        torch.testing.assert_close(via_tail, model(x), rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------- the baseline
def test_baseline_loop_learns_and_keeps_the_best_epoch(pool):
    root, manifest = pool
    config = _config(48, epochs=2, step_size=7)
    result = run_baseline_trial(config, manifest, DataRoots(str(root)), CPU, pretrained=False)
    accs = [r["val_acc"] for r in result.rows]
    assert len(result.rows) == 2 and result.best_val_acc == max(accs)
    assert result.best_epoch == accs.index(max(accs)) + 1
    assert 0.0 <= result.test_acc <= 1.0 and result.ood_acc is None


@pytest.mark.slow
def test_trial_speed_cli_runs_both_loops(tmp_path, torch_home):
    out = tmp_path / "speed.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "trial_speed.py"), "--archs", "mobilenet_v2",
         "--regimes", "feature_extract", "--epochs", "1", "--input-size", "32",
         "--train-size", "2", "--seeds", "1", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "speed-up" in proc.stdout and "project bn=frozen" in proc.stdout
    import json

    runs = json.loads(out.read_text())["runs"]
    assert sorted(r["variant"] for r in runs) == ["baseline", "project bn=frozen", "project bn=train"]
    assert all(r["seconds"] > 0 and not r["random_weights"] for r in runs)


def test_trial_speed_rejects_bad_options():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "trial_speed.py"), "--regimes",
                           "nope"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")


# ------------------------------------------------------------------------- the GPU script
def test_gpu_sweep_dry_run_plans_the_paper_grid_with_labelled_random_weights():
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_sweep.sh"), "--dry-run"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "6 archs x 3 regimes x 5 seeds = 90 trials" in proc.stdout
    assert "RANDOM WEIGHTS" in proc.stdout and "epochs 30" in proc.stdout
    assert proc.stdout.count(" seed ") == 90


def test_gpu_sweep_rejects_unknown_options():
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_sweep.sh"), "--fast"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown option" in proc.stderr


@pytest.mark.slow
def test_grid_timing_runs_packed_trials_on_standin_data(tmp_path):
    """The GPU script's driver on CPU: two worker processes, generated stand-in data (what a
    GPU machine without the demo set gets), random weights labelled, per-arch timings."""
    out = tmp_path / "grid.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "grid_timing.py"), "--tiny", "--archs",
         "squeezenet1_0", "--regimes", "feature_extract", "scratch", "--workers", "2",
         "--threads", "1", "--standin", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "GENERATED STAND-IN" in proc.stdout and "RANDOM WEIGHTS" in proc.stdout
    assert "trials/minute" in proc.stdout
    import json

    trials = json.loads(out.read_text())["trials"]
    assert sorted(t["regime"] for t in trials) == ["feature_extract", "scratch"]
    assert all(t["ok"] and t["seconds"] > 0 for t in trials)
