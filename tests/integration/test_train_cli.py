"""The single-trial CLI, as a user runs it: one subprocess, Parquet out, one-line summary."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import PROJECT_ROOT
from trainables import results


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
    proc = _run(["--arch", "alexnet", "--regime", "finetune", "--out", str(tmp_path)])
    assert proc.returncode == 2
    assert "resnet18" in proc.stderr and "Traceback" not in proc.stderr
