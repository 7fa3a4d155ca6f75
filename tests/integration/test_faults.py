"""Fault injection with real processes: the sweep CLI, a local Ray, SIGKILL.

Faults come from trainables/faults.py (FEATURE_REUSE_FAULT, forwarded to every trial): "kill"
SIGKILLs a trial's own worker mid-epoch, "oom" raises torch.OutOfMemoryError as CUDA does,
"sleep" holds a trial mid-epoch so the test can kill the driver at a known point.

Kept small for 2 CPU cores: the smoke preset (2 epochs, 64 px), one architecture trained from
scratch (no weights needed), a generated pool of 6 images per class. Each sweep costs ~20-40 s,
mostly Ray's start-up.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import write_image
from tests.integration.fault_helpers import (
    Sweep,
    finished_files,
    hidden_files,
    plant_partial_parquet,
    rows,
    run_sweep,
    wait_until,
)
from trainables.config import trial_id
from trainables.folders import build_manifest
from trainables.presets import PRESETS
from trainables.results import read_table

pytestmark = pytest.mark.slow

EPOCHS = PRESETS["smoke"].overrides["epochs"]
NAME = "faults"


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fault_data") / "pool"
    for ci, cls in enumerate(("a", "b")):
        for i in range(6):
            write_image(root / cls / f"{i}.jpg", (200 * ci + 20, 60, 230 - 200 * ci), seed=i)
    return root


@pytest.fixture
def env(torch_home) -> dict[str, str]:
    return {"TORCH_HOME": str(torch_home)}


def sweep_args(pool: Path, storage: Path, seeds: int, *extra: str) -> list[str]:
    return ["--preset", "smoke", "--archs", "mobilenet_v2", "--regimes", "scratch",
            "--seeds", str(seeds), "--data", str(pool), "--storage", str(storage),
            "--name", NAME, "--keep-models", "none", "--progress-interval", "5", *extra]


def by_trial(table: list[dict]) -> dict[str, dict]:
    out = {r["trial_id"]: r for r in table}
    assert len(out) == len(table), "a trial has more than one row"
    return out


def assert_complete(results_root: Path, n_trials: int) -> None:
    """Exactly one ok row per trial, every epoch once, readers see no temporary files."""
    trials = rows(results_root, "trials")
    assert len(trials) == n_trials and len(by_trial(trials)) == n_trials
    assert {t["status"] for t in trials} == {"ok"}
    epochs = rows(results_root, "epochs")
    keys = [(e["trial_id"], e["epoch"]) for e in epochs]
    assert len(keys) == len(set(keys)) == n_trials * EPOCHS
    assert {tid for tid, _ in keys} == {t["trial_id"] for t in trials}
    assert sorted({e for _, e in keys}) == list(range(1, EPOCHS + 1))
    assert hidden_files(results_root) == [], "temporary files left in the results tables"


# --------------------------------------------------------------- kill -9 a trial's worker
def test_worker_killed_mid_epoch_is_retried_from_its_checkpoint(pool, env, tmp_path):
    marker = tmp_path / "kill-fired"
    fault = f"kill@seed=0,epoch={EPOCHS},where=train,once={marker}"
    storage = tmp_path / "runs"
    sweep = run_sweep(sweep_args(pool, storage, 2), tmp_path / "log",
                      env={**env, "FEATURE_REUSE_FAULT": fault})
    assert sweep.proc.returncode == 0, sweep.output()
    assert marker.exists(), "the injected kill never fired"
    results_root = storage / NAME / "results"
    assert_complete(results_root, 2)
    trials = {t["seed"]: t for t in rows(results_root, "trials")}
    # killed after training epoch 2, before its evaluation: epoch 1 was the last checkpoint
    assert trials[0]["resumed_from_epoch"] == EPOCHS - 1 > 0
    assert trials[1]["resumed_from_epoch"] == 0


# --------------------------------------------------------- one trial raises (CUDA OOM)
def test_oom_trial_is_recorded_failed_others_finish_and_a_rerun_retries_it(pool, env,
                                                                           tmp_path):
    storage = tmp_path / "runs"
    results_root = storage / NAME / "results"
    args = sweep_args(pool, storage, 2, "--max-failures", "1")
    sweep = run_sweep(args, tmp_path / "log1",
                      env={**env, "FEATURE_REUSE_FAULT": "oom@seed=1,epoch=1"})
    assert sweep.proc.returncode == 1, sweep.output()
    trials = {t["seed"]: t for t in rows(results_root, "trials")}
    assert len(trials) == 2 == len(by_trial(rows(results_root, "trials")))
    assert trials[0]["status"] == "ok" and trials[0]["error"] is None
    assert trials[1]["status"] == "failed"
    assert trials[1]["error"].startswith("torch.OutOfMemoryError: CUDA out of memory")
    failed_id = trials[1]["trial_id"]
    # the failed trial left no epochs or predictions; the ok one all of its own
    assert {e["trial_id"] for e in rows(results_root, "epochs")} == {trials[0]["trial_id"]}
    assert {p["trial_id"] for p in rows(results_root, "predictions")} == {trials[0]["trial_id"]}
    summary = sweep.stdout
    assert "1 failed" in summary and "rerun the same command" in summary
    assert any(failed_id in line and "torch.OutOfMemoryError: CUDA out of memory" in line
               for line in summary.splitlines()), "the summary must name the failed trial"

    again = run_sweep(args, tmp_path / "log2", env=env)
    assert again.proc.returncode == 0, again.output()
    assert "1 finished earlier" in again.stdout
    assert_complete(results_root, 2)
    assert by_trial(rows(results_root, "trials"))[failed_id]["error"] is None


# ------------------------------------------------------------------- kill -9 the driver
def test_driver_killed_mid_sweep_rerun_equals_an_uninterrupted_run(pool, env, tmp_path):
    seeds = 3
    reference = run_sweep(sweep_args(pool, tmp_path / "reference", seeds), tmp_path / "log_ref",
                          env=env)
    assert reference.proc.returncode == 0, reference.output()
    ref_root = tmp_path / "reference" / NAME / "results"
    assert_complete(ref_root, seeds)

    storage = tmp_path / "interrupted"
    results_root = storage / NAME / "results"
    held_id = trial_id(PRESETS["smoke"].trial("mobilenet_v2", "scratch", 1), build_manifest(pool).hash)
    held = tmp_path / "held"  # written when seed 1 stalls inside its last epoch
    fault = f"sleep@seed=1,epoch={EPOCHS},where=train,seconds=600,once={held}"
    args = sweep_args(pool, storage, seeds)
    sweep = Sweep(args, {**env, "FEATURE_REUSE_FAULT": fault}).start(tmp_path / "log_cut")
    try:
        pointer = storage / NAME / "resume" / f"{held_id}.json"
        wait_until(lambda: held.exists() and pointer.exists()
                   and len(finished_files(results_root)) >= 1,
                   timeout=300, sweep=sweep,
                   what="one trial finished and seed 1 checkpointed and running")
        sweep.kill_driver()
        left = sweep.leftovers(grace=30)
        assert left == [], f"Ray processes outlived their driver by 30 s: {left}"
    finally:
        sweep.cleanup()
    finished_before = len(finished_files(results_root))  # counted once nothing can write
    assert 1 <= finished_before < seeds
    assert not (results_root / "trials" / f"{held_id}.parquet").exists()

    # What a kill in the middle of a write leaves: a half-written file under a hidden name.
    partials = [plant_partial_parquet(results_root, t) for t in ("trials", "epochs")]
    readable = read_table(str(results_root), "trials")  # readers skip it ...
    assert readable.num_rows == finished_before

    rerun = run_sweep(args, tmp_path / "log_rerun", env=env)
    assert rerun.proc.returncode == 0, rerun.output()
    assert f"{finished_before} finished earlier" in rerun.stdout
    assert not any(p.exists() for p in partials)  # ... and the rerun removes it
    assert_complete(results_root, seeds)

    ref_trials = by_trial(rows(ref_root, "trials"))
    got_trials = by_trial(rows(results_root, "trials"))
    assert set(got_trials) == set(ref_trials)
    resumed = {t["seed"]: t["resumed_from_epoch"] for t in got_trials.values()}
    assert resumed[1] == EPOCHS - 1, "the interrupted trial must continue from its checkpoint"
    assert got_trials[held_id]["seed"] == 1
    for tid, ref in ref_trials.items():
        for column in ("best_epoch", "best_val_acc", "test_acc", "test_confusion_json"):
            assert got_trials[tid][column] == ref[column], (tid, column)
    ref_epochs = {(e["trial_id"], e["epoch"]): e for e in rows(ref_root, "epochs")}
    got_epochs = {(e["trial_id"], e["epoch"]): e for e in rows(results_root, "epochs")}
    assert set(got_epochs) == set(ref_epochs)
    for key, ref in ref_epochs.items():
        for column in ("train_loss", "val_loss", "val_acc", "lr"):
            assert got_epochs[key][column] == pytest.approx(ref[column], rel=1e-6), (key, column)
    assert len(rows(results_root, "predictions")) == len(rows(ref_root, "predictions"))


# --------------------------------------------------------------------- unwritable storage
def _file_in_place_of_folder(tmp_path: Path) -> Path:
    blocker = tmp_path / "storage"
    blocker.write_text("a file where the storage folder should be\n")
    return blocker


def _immutable_folder(tmp_path: Path) -> Path:
    """chattr +i: refuses writes even to root (needs CAP_LINUX_IMMUTABLE and ext4/xfs)."""
    folder = tmp_path / "storage"
    folder.mkdir()
    proc = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"chattr +i unavailable here: {proc.stderr.strip()}")
    probe = folder / "probe"
    try:
        probe.write_text("x")
    except OSError:
        return folder
    probe.unlink()
    pytest.skip("chattr +i did not make the folder read-only here")


def _read_only_folder(tmp_path: Path) -> Path:
    if os.geteuid() == 0:
        pytest.skip("root ignores permission bits; the other cases cover root")
    folder = tmp_path / "storage"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


UNWRITABLE = {"file_in_place_of_folder": _file_in_place_of_folder,
              "immutable_folder": _immutable_folder,
              "read_only_folder": _read_only_folder}


@pytest.mark.parametrize("case", sorted(UNWRITABLE))
def test_unwritable_storage_is_refused_before_training(case, pool, env, tmp_path):
    storage = UNWRITABLE[case](tmp_path)
    try:
        sweep = run_sweep(sweep_args(pool, storage, 1), tmp_path / "log", env=env, timeout=180)
    finally:
        if case == "immutable_folder":
            subprocess.run(["chattr", "-i", str(storage)], check=False)
        if case == "read_only_folder":
            storage.chmod(0o755)
    assert sweep.proc.returncode == 2, sweep.output()
    assert f"error: --storage {storage}" in sweep.stderr
    assert "cannot write to" in sweep.stderr and "Fix:" in sweep.stderr
    assert "Traceback" not in sweep.stderr
    assert "cluster:" not in sweep.stdout, "Ray started although storage was unwritable"
    assert not (storage / NAME / "results").exists()


@pytest.mark.parametrize("case", sorted(UNWRITABLE))
def test_unwritable_out_is_refused_by_the_single_trial_cli(case, pool, tmp_path, capsys):
    from trainables.train import main

    storage = UNWRITABLE[case](tmp_path)
    try:
        code = main(["--arch", "mobilenet_v2", "--regime", "scratch", "--preset", "smoke",
                     "--data", str(pool), "--out", str(storage / "run")])
    finally:
        if case == "immutable_folder":
            subprocess.run(["chattr", "-i", str(storage)], check=False)
        if case == "read_only_folder":
            storage.chmod(0o755)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: cannot write results to '{storage / 'run'}'"), err
    assert "Fix:" in err and not (storage / "run").exists()


# ------------------------------------------------------------------------- a full disk
@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB tmpfs: room for the manifest and a few rows, not for one MobileNetV2 checkpoint."""
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_mid_sweep_keeps_the_driver_alive_and_a_rerun_completes(pool, env, tmp_path,
                                                                          small_disk):
    args = sweep_args(pool, small_disk, 2)
    full = run_sweep(args, tmp_path / "log_full", env=env)
    assert full.proc.returncode == 1, full.output()
    assert "Traceback" not in full.stderr and "Logging error" not in full.stderr, full.stderr[-3000:]
    out = full.stdout
    assert "trials: 0/2 ok, 2 failed" in out, out[-3000:]
    assert f"cause: the disk holding --storage {small_disk}" in out and "Fix: free space" in out
    results_root = small_disk / NAME / "results"
    failed = rows(results_root, "trials")
    assert len(failed) == 2 and {t["status"] for t in failed} == {"failed"}
    assert all("No space left on device" in t["error"] for t in failed), failed
    assert not (small_disk / NAME / "sweep.lock").exists(), "the lock must be released"

    subprocess.run(["mount", "-o", "remount,size=300m", str(small_disk)], check=True)
    again = run_sweep(args, tmp_path / "log_again", env=env)
    assert again.proc.returncode == 0, again.output()
    assert_complete(results_root, 2)


# ---------------------------------------------------------------- two sweeps, one experiment
def test_a_second_sweep_on_the_same_experiment_refuses_and_a_killed_holder_is_taken_over(
        pool, env, tmp_path):
    storage = tmp_path / "runs"
    results_root = storage / NAME / "results"
    held = tmp_path / "held"
    fault = f"sleep@seed=0,epoch=1,where=train,seconds=600,once={held}"
    args = sweep_args(pool, storage, 1)
    first = Sweep(args, {**env, "FEATURE_REUSE_FAULT": fault}).start(tmp_path / "log_first")
    try:
        wait_until(held.exists, timeout=300, sweep=first, what="the first sweep's trial to run")
        lock = storage / NAME / "sweep.lock"
        assert lock.exists()
        second = run_sweep(args, tmp_path / "log_second", env=env, timeout=120)
        assert second.proc.returncode == 2, second.output()
        assert "error: another sweep is running on this experiment" in second.stderr
        assert f"pid {first.proc.pid}" in second.stderr and "Traceback" not in second.stderr
        assert "cluster:" not in second.stdout, "the refused sweep must not start Ray"
        assert first.proc.poll() is None, "the refusal must not disturb the running sweep"
        first.kill_driver()
    finally:
        first.cleanup()
    assert lock.exists(), "kill -9 leaves the lock behind"
    third = run_sweep(args, tmp_path / "log_third", env=env)
    assert third.proc.returncode == 0, third.output()
    assert f"took over a stale lock of pid {first.proc.pid}" in third.stdout
    assert "no longer running" in third.stdout
    assert_complete(results_root, 1)
    assert not lock.exists()
