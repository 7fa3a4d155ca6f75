"""The single-trial CLI, as a user runs it: one subprocess, Parquet out, one-line summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT
from trainables.archs import ARCHS, STUDY_ARCHS
from trainables.presets import PRESETS, config_deviations
from trainables.regimes import REGIMES
from trainables.results import tables as results
from trainables.train import main


def _run(args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "trainables.train", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, env=env, timeout=600)


def test_cli_runs_one_trial_on_embedded_data(torch_home, tmp_path):
    out = tmp_path / "one"
    proc = _run(["--arch", "mobilenet_v2", "--regime", "feature_extract", "--seed", "0",
                 "--preset", "smoke", "--train-size", "8", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    assert "best val" in proc.stdout and "OOD" in proc.stdout and "synthetic shift" in proc.stdout
    trials = results.read_table(str(out), "trials").to_pylist()
    assert len(trials) == 1 and trials[0]["status"] == "ok"
    assert trials[0]["train_images"] == 16
    provenance = ("split_manifest_hash", "code_version", "library_versions_json", "device",
                  "config_json")
    assert all(trials[0][k] for k in provenance)
    assert len(results.read_table(str(out), "epochs")) == 2
    predictions = results.read_table(str(out), "predictions").to_pylist()
    assert {p["split"] for p in predictions} == {"test", "ood"}
    assert (out / "manifest.json").is_file()


def test_cli_unknown_arch_lists_choices(tmp_path):
    proc = _run(["--arch", "alexnett", "--regime", "finetune", "--out", str(tmp_path)])
    assert proc.returncode == 2
    assert "resnet18" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_registry_architecture_runs_a_smoke_trial_through_the_cli(arch, tiny_pool, tmp_path,
                                                                        capsys):
    """Each architecture, with the smoke preset's crops scaled to its floor (Inception: 299)."""
    out = tmp_path / "out"
    code = main(["--arch", arch, "--regime", "scratch", "--preset", "smoke", "--set", "epochs=1",
                 "--data", str(tiny_pool), "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    config = json.loads(results.read_table(str(out), "trials").to_pylist()[0]["config_json"])
    assert config["train_crop"] >= ARCHS[arch].min_input_size
    assert "train_crop 224 -> 64" in printed.out or arch == "inception_v3"


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_study_architecture_has_a_valid_config_under_every_preset(preset):
    for arch in STUDY_ARCHS:
        for regime in REGIMES:
            config = PRESETS[preset].trial(arch, regime)
            assert config.train_crop >= ARCHS[arch].min_input_size
            assert config.val_crop == config.test_crop == config.ood_crop == config.train_crop


def test_paper_preset_is_the_authors_protocol_per_split():
    """Val Resize(256)/CenterCrop(224), test and OOD Resize(224)/CenterCrop(224); Inception 299."""
    paper = PRESETS["paper"]
    for arch in STUDY_ARCHS:
        c = paper.trial(arch, "finetune")
        size = 299 if arch == "inception_v3" else 224
        assert (c.train_crop, c.val_crop, c.test_crop, c.ood_crop) == (size,) * 4
        assert c.val_resize == (299 if arch == "inception_v3" else 256)
        assert c.test_resize == c.ood_resize == size
        assert config_deviations(c) == []


def test_set_overrides_show_in_the_message_the_row_and_the_id(tiny_pool, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["--arch", "resnet18", "--regime", "scratch", "--preset", "smoke", "--data",
            str(tiny_pool), "--out", str(out)]
    assert main([*base, "--set", "epochs=1", "--set", "lr=0.01"]) == 0
    printed = capsys.readouterr().out
    assert "overrides: epochs=1, lr=0.01" in printed and "lr 0.001 -> 0.01" in printed
    row = results.read_table(str(out), "trials").to_pylist()[0]
    assert json.loads(row["overrides_json"]) == {"epochs": 1, "lr": 0.01}
    assert json.loads(row["config_json"])["lr"] == 0.01
    assert main([*base, "--set", "epochs=1", "--set", "lr=0.02"]) == 0
    capsys.readouterr()
    assert len(results.read_table(str(out), "trials")) == 2, "another setting is another trial"


def test_config_file_and_dry_run(tiny_pool, tmp_path, capsys):
    cfg = tmp_path / "settings.yaml"
    cfg.write_text("epochs: 4\nbn_mode: frozen\nselect_on: recall:red\n")
    code = main(["--arch", "mobilenet_v2", "--regime", "feature_extract", "--config", str(cfg),
                 "--set", "epochs=5", "--data", str(tiny_pool), "--out", str(tmp_path / "o"),
                 "--dry-run"])
    out = capsys.readouterr()
    assert code == 0
    shown = json.loads(out.out[out.out.index("{"):])
    assert (shown["epochs"], shown["bn_mode"], shown["select_on"]) == (5, "frozen", "recall:red")
    assert not (tmp_path / "o").exists(), "--dry-run writes nothing"


@pytest.mark.parametrize("args, message", [
    (["--set", "epochs"], "use KEY=VALUE"),
    (["--set", "epoch=3"], "'epoch' is not a setting"),
    (["--set", "epochs=two"], "is not a whole number"),
    (["--set", "lr=nan"], "is not a finite number"),
    (["--set", "bf16=maybe"], "is not true or false"),
    (["--set", "arch=resnet18"], "arch is set with --arch"),
    (["--set", "select_on=recall:zebra"], "no class 'zebra'"),
    (["--set", "train_crop=128", "--arch", "inception_v3"], "trains at 299 px or more"),
    (["--set", "crop_scale=1e6"], "crop_scale must be at most 8"),
    (["--set", "test_resize=100000"], "test_resize must be a number of pixels up to 2048"),
    (["--config", "/nonexistent/settings.yaml"], "cannot be read"),
])
def test_bad_overrides_are_named(args, message, tiny_pool, tmp_path, capsys):
    argv = ["--arch", "resnet18", "--regime", "scratch", "--data", str(tiny_pool),
            "--out", str(tmp_path / "o"), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.startswith("error: ")
