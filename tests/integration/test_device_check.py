"""bench/device_check.py: its --dry mode runs the whole script on the CPU (tiny sizes); without
--dry on this GPU-less machine it, and bench/gpu_sweep.sh, refuse at once with the cause."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow
SCRIPT = PROJECT_ROOT / "bench" / "device_check.py"


def test_dry_run_exercises_every_section(tmp_path):
    out = tmp_path / "dry.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry", "--out", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=PROJECT_ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["dry"] and report["all_checks_passed"]
    assert report["checks"] == {"cuda": True, "trials_ok": True, "concurrent_no_oom": True,
                                "deterministic_repeats_bit_identical": True}
    assert report["device"]["type"] == "cpu" and report["code_version"]
    trials = report["sections"]["trials"]["trials"]
    assert [t["arch"] for t in trials] == ["resnet18"]
    t = trials[0]
    assert len(t["seconds_per_epoch"]) == t["epochs"] == 1 and t["seconds_per_epoch"][0] > 0
    assert t["peak_allocated_mb"] > 0 and t["peak_reserved_mb"] is None
    assert t["table_peak_memory_gb"] > 0 and "auto_plan_a10g_24gb" in t
    assert t["measured_peak_gb"] > 0 and isinstance(t["table_covers_measured"], bool)
    syncs = report["sections"]["syncs"]
    assert syncs["measured"] is False and syncs["train_steps"] >= 1  # CUDA only
    conc = report["sections"]["concurrent"]
    assert conc["no_mps"]["processes"] == 2 and conc["no_mps"]["all_ok"]
    assert conc["no_mps"]["share"] == 0.5 and len(conc["no_mps"]["seconds_per_epoch"]) == 2
    assert conc["mps"] == {"skipped": "no GPU"}
    repeat = report["sections"]["repeat"]
    assert repeat["deterministic"]["bit_identical"] and repeat["defaults"]["bit_identical"]


def test_without_cuda_the_device_check_stops_with_the_cause(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True,
                          text=True, timeout=300, cwd=PROJECT_ROOT)
    assert proc.returncode == 2
    assert "CUDA is unusable here" in proc.stderr and "no NVIDIA driver" in proc.stderr
    report = json.loads(out.read_text())
    assert report["checks"] == {"cuda": False} and report["cuda"]["usable"] is False


def test_gpu_sweep_refuses_to_time_a_cpu(tmp_path):
    proc = subprocess.run(["bash", str(PROJECT_ROOT / "bench" / "gpu_sweep.sh")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert "CUDA is unusable here" in proc.stderr
    assert "gpu_sweep (grid)" not in proc.stdout, "nothing may be timed"
