"""Each fast path against the study's own pipeline (bench/baseline.py): same inputs, same outputs.

Augmentation: for the same RNG state the project's crops are the study's crops bit for bit
(Pillow backend) or within one grey level (tensor backend). Evaluation: identical predictions
for identical inputs whatever the batch size or BatchNorm folding. Metrics kept on the device
equal metrics read every step. The benchmark itself (many seeds, real data) is
bench/trial_speed.py; docs/performance.md has its results.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.baseline import ManifestImageFolder, datasets, run_baseline_trial
from trainables.config import PRESETS
from trainables.data import DataRoots, build_manifest, load_trial_data
from trainables.engine import (
    FastPaths,
    TrainImages,
    current_fast_paths,
    eval_crops,
    evaluate,
    fast_paths,
    fit,
    frozen_backbone,
    seed_everything,
    train_batches,
)
from trainables.errors import UserError
from trainables.models import ARCHS, build_model, split_backbone_tail
from trainables.transforms import normalize, pil_eval_transform, pil_train_transform

SMOKE = PRESETS["smoke"]
CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pool(make_pool, tmp_path):
    """Two classes of differently sized noisy images (crops must really resample)."""
    root = make_pool({"blue": 12, "red": 12})
    from tests.conftest import write_image

    for i in range(6):  # larger, non-square images too
        write_image(root / "red" / f"big_{i}.png", (200, 40, 40), size=(97, 61), seed=100 + i)
        write_image(root / "blue" / f"big_{i}.png", (40, 40, 200), size=(61, 97), seed=200 + i)
    manifest = build_manifest(root, split_seed=0)
    return root, manifest


def _data(pool, decode_once=True):
    root, manifest = pool
    return load_trial_data(manifest, DataRoots(str(root)), "all", decode_once), manifest


def _study_dataset(pool, split: str, crop: int) -> ManifestImageFolder:
    root, manifest = pool
    config = SMOKE.trial("mobilenet_v2", "scratch", input_size=crop)
    return datasets(manifest, DataRoots(str(root)), config, crop)[split]


# ------------------------------------------------------------------------- augmentation
@pytest.mark.parametrize("decode_once", [True, False])
def test_pil_training_crops_are_the_study_crops_bit_for_bit(pool, decode_once):
    """Same RNG state and order: normalize(project crops) == the study's ToTensor+Normalize."""
    data, _ = _data(pool, decode_once)
    study = _study_dataset(pool, "train", 48)
    images = TrainImages(data.train, 48, CPU, "pil")
    assert study.transform is not None and [p for p, _ in study.samples][0].endswith(data.train.paths[0])
    order = torch.randperm(len(images))
    torch.manual_seed(11)
    ours = normalize(images.draw(order))
    torch.manual_seed(11)
    theirs = torch.stack([study[int(i)][0] for i in order])
    assert ours.shape == theirs.shape == (len(order), 3, 48, 48)
    assert torch.equal(ours, theirs)
    torch.manual_seed(12)
    assert not torch.equal(normalize(images.draw(order)), theirs), "a new draw differs"


def test_train_batches_cover_the_split_once_per_epoch(pool):
    data, _ = _data(pool)
    images = TrainImages(data.train, 32, CPU, "pil")
    seed_everything(5)
    batches = list(train_batches(images, 6))
    labels = torch.cat([y for _, y in batches])
    assert [len(y) for _, y in batches[:-1]] == [6] * (len(batches) - 1)
    assert sorted(labels.tolist()) == sorted(data.train.labels.tolist())
    seed_everything(5)
    again = list(train_batches(images, 6))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))


def test_tensor_backend_draws_the_same_crops_within_one_grey_level(pool):
    data, _ = _data(pool)
    pil, tensor = (TrainImages(data.train, 40, CPU, b) for b in ("pil", "tensor"))
    order = torch.arange(len(pil))
    torch.manual_seed(3)
    a = pil.draw(order).float()
    torch.manual_seed(3)
    b = tensor.draw(order).float()
    diff = (a - b).abs()
    assert diff.max() <= 1.0 and diff.mean() < 0.05
    assert (eval_crops(data.val, 40, "pil").float() - eval_crops(data.val, 40, "tensor").float()
            ).abs().max() <= 1.0


def test_eval_crops_are_the_study_eval_inputs(pool):
    data, _ = _data(pool)
    study = _study_dataset(pool, "val", 40)
    theirs = torch.stack([study[i][0] for i in range(len(study))])
    assert torch.equal(normalize(eval_crops(data.val, 40, "pil")), theirs)
    assert torch.equal(theirs[0], pil_eval_transform(40)(study.loader(study.samples[0][0])))
    assert pil_train_transform(40) is not None


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
    """The project's batched inference_mode evaluation and the study's DataLoader(batch 6)
    no_grad loop give the same predictions and probabilities for the same model."""
    from torch.utils.data import DataLoader

    data, _ = _data(pool)
    config, model = _model("finetune")
    study = DataLoader(_study_dataset(pool, "val", 64), batch_size=6)
    with torch.no_grad():
        theirs = torch.cat([torch.softmax(model(x), 1) for x, _ in study])
    for batch in (3, 64):
        with fast_paths(feature_batch=batch):
            ours = evaluate(model, nn.CrossEntropyLoss(), eval_crops(data.val, 64), data.val.labels,
                            CPU, config)
        assert torch.equal(ours.preds, theirs.argmax(1))
        torch.testing.assert_close(ours.probs, theirs, rtol=1e-4, atol=1e-5)


def test_fused_frozen_backbone_computes_the_same_features(pool):
    data, _ = _data(pool)
    arch = ARCHS["mobilenet_v2"]
    _, model = _model()
    x = normalize(eval_crops(data.val, 64))
    hooked, tail = split_backbone_tail(model, arch)
    fused = frozen_backbone(model, arch, fuse=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules()), "BN folded away"
    with torch.no_grad():
        a, b = hooked(x), fused(x)
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
        assert torch.equal(tail(a).argmax(1), tail(b).argmax(1))
        assert torch.equal(tail(a).argmax(1), model(x).argmax(1))
    assert frozen_backbone(model, arch, fuse=False) is not None


@pytest.mark.parametrize("arch_name", ["resnet18", "squeezenet1_0"])
def test_fused_backbone_other_tails(arch_name):
    """ResNet's tail is a Linear after flatten; SqueezeNet's a conv block before flatten."""
    config = SMOKE.trial(arch_name, "feature_extract", bn_mode="frozen")
    model = build_model(config, 2, pretrained=False).eval()
    arch = ARCHS[arch_name]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a = split_backbone_tail(model, arch)[0](x)
        b = frozen_backbone(model, arch, fuse=True)(x)
    assert a.shape == b.shape
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def _fit(pool, config, **fast):
    data, _ = _data(pool)
    seed_everything(config.seed)
    model = build_model(config, 2, pretrained=False)
    with fast_paths(**fast):
        state = fit(model, ARCHS[config.arch], config, data.train, data.val, CPU)
    return [{k: v for k, v in r.items() if k != "seconds"} for r in state.rows]


def test_device_metrics_equal_per_step_metrics(pool):
    config = SMOKE.trial("mobilenet_v2", "scratch", epochs=1)
    assert _fit(pool, config, device_metrics=True) == _fit(pool, config, device_metrics=False)


def test_cached_path_with_and_without_folding_trains_the_same(pool):
    config = SMOKE.trial("mobilenet_v2", "feature_extract", epochs=2, bn_mode="frozen")
    fused, plain = _fit(pool, config, fuse_frozen=True), _fit(pool, config, fuse_frozen=False)
    assert [r["val_acc"] for r in fused] == [r["val_acc"] for r in plain]
    for a, b in zip(fused, plain, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)


def test_cache_eval_and_decode_once_do_not_change_a_trial(pool):
    """Switched off, each fast path gives the same epochs (bit for bit on CPU)."""
    config = SMOKE.trial("mobilenet_v2", "scratch", epochs=1)
    fast = _fit(pool, config)
    data, manifest = _data(pool, decode_once=False)
    seed_everything(config.seed)
    model = build_model(config, 2, pretrained=False)
    slow_config = config.replace(cache_eval=False, decode_once=False)
    state = fit(model, ARCHS["mobilenet_v2"], slow_config, data.train, data.val, CPU)
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in state.rows] == fast


# ------------------------------------------------------------------------- switches
def test_fast_paths_parse_and_override(monkeypatch):
    assert FastPaths.parse("") == FastPaths()
    parsed = FastPaths.parse("augment=tensor, fuse_frozen=0,feature_batch=16,device_metrics=off")
    assert parsed == FastPaths("tensor", False, 16, False)
    assert parsed.backend(CPU) == "tensor" and FastPaths().backend(CPU) == "pil"
    assert FastPaths().backend(torch.device("cuda")) == "tensor"
    for bad in ("augment=gpu", "fuse=1", "feature_batch=x", "device_metrics=maybe", "noequals"):
        with pytest.raises(UserError, match="FEATURE_REUSE_FASTPATHS"):
            FastPaths.parse(bad)
    monkeypatch.setenv("FEATURE_REUSE_FASTPATHS", "augment=tensor")
    assert current_fast_paths().augment == "tensor"
    with fast_paths(augment="pil") as fp:
        assert fp.augment == "pil" and current_fast_paths().augment == "pil"
    assert current_fast_paths().augment == "tensor"


# ------------------------------------------------------------------------- the baseline
def test_baseline_loop_learns_and_keeps_the_best_epoch(pool):
    root, manifest = pool
    config = SMOKE.trial("mobilenet_v2", "scratch", epochs=2, step_size=7)
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
