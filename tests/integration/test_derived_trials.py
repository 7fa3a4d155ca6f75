"""Derived models end to end: one smoke trial each writes its rows; the sweep's dry run prints
the derived settings; a grid mixes the study's, torchvision's and timm's models."""

from __future__ import annotations

import json
import signal

import pytest

from trainables.results import tables as results
from trainables.train import main

SAMPLE = ["efficientnet_b0", "regnet_y_400mf", "timm/resnet18", "timm/convnext_atto",
          "timm/vit_tiny_patch16_224", "timm/efficientnet_b0"]


@pytest.mark.parametrize("arch", SAMPLE)
def test_smoke_trial_of_a_derived_model_writes_its_rows(arch, tiny_pool, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["--arch", arch, "--regime", "scratch", "--preset", "smoke", "--set", "epochs=1",
                 "--data", str(tiny_pool), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    (trial,) = results.read_table(str(out), "trials").to_pylist()
    assert trial["status"] == "ok" and trial["arch"] == arch
    assert trial["source"] == ("timm" if arch.startswith("timm/") else "torchvision")
    config = json.loads(trial["config_json"])
    assert config["interpolation"] in ("bilinear", "bicubic") and len(config["mean"]) == 3
    assert config["weights"], "the weights a transfer regime would load are recorded"
    assert trial["trainable_params"] == trial["total_params"] > 0
    assert results.read_table(str(out), "epochs").num_rows == 1
    assert results.read_table(str(out), "predictions").num_rows > 0


def test_sweep_dry_run_prints_the_derived_settings(torch_home, tmp_path, capsys, monkeypatch):
    from sweep.run import main as sweep_main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code = sweep_main(["--archs", "mobilenet_v2", "timm/convnext_atto", "convnext_tiny",
                           "--preset", "smoke", "--dry-run", "--storage", str(tmp_path / "runs")])
    finally:
        signal.signal(signal.SIGTERM, previous)
    out = capsys.readouterr().out
    assert code == 0
    assert "mobilenet_v2   [study]" in out and "interpolation bilinear" in out
    assert "timm/convnext_atto [timm]" in out and "weights convnext_atto.d2_in1k" in out
    assert "interpolation bicubic" in out and "convnext_tiny  [torchvision]" in out
    assert "derived: head head.fc: timm's get_classifier()" in out
    assert "derived: head classifier.2: the layer producing the 1000 ImageNet logits" in out
    assert "derived: Grad-CAM layer features" in out
    assert "val Resize(67)/CenterCrop(64)" in out, "convnext_tiny's 236/224 resize at a 64 crop"
    assert "warning (a real run stops here)" in out and "convnext_tiny-983f1562.pth" in out
    assert "models--timm--convnext_atto.d2_in1k" in out
    assert not (tmp_path / "runs").exists(), "a dry run writes nothing"
