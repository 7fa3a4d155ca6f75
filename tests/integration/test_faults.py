"""Fault injection with real processes: the sweep CLI, a local Ray, SIGKILL.

Faults come from trainables/faults.py (FEATURE_REUSE_FAULT, forwarded to every trial): "kill"
SIGKILLs a trial's own worker mid-epoch, "oom" raises torch.OutOfMemoryError as CUDA does,
"sleep" holds a trial mid-epoch so the test can kill the driver at a known point.

Kept small for 2 CPU cores: the smoke preset (2 epochs, 64 px), one architecture trained from
scratch (no weights needed), a generated pool of 6 images per class. Each sweep costs ~20-40 s,
mostly Ray's start-up.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

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
from trainables.data.folders import build_manifest
from trainables.presets import PRESETS
from trainables.results.tables import read_table

pytestmark = pytest.mark.slow

EPOCHS = PRESETS["smoke"].overrides["epochs"]
NAME = "faults"


@pytest.fixture
def env(torch_home) -> dict[str, str]:
    return {"TORCH_HOME": str(torch_home)}


def sweep_args(pool: Path, storage: Path, seeds: int, *extra: str) -> list[str]:
    return ["--preset", "smoke", "--archs", "mobilenet_v2", "--regimes", "scratch",
            "--seeds", str(seeds), "--data", str(pool), "--storage", str(storage),
            "--name", NAME, "--keep-models", "none", "--progress-interval", "5",
            "--checkpoint-every", "0", *extra]  # resumes continue from the epoch before the fault


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
    assert code == 2 and err.startswith(f"error: --out: cannot write to {storage / 'run'} "), err
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


# ----------------------------------------------------- corrupt or foreign state files (no Ray)
def _sweep_cli(args: list[str], env: dict[str, str], timeout: float = 240
               ) -> subprocess.CompletedProcess:
    import sys

    from tests.conftest import PROJECT_ROOT

    return subprocess.run([sys.executable, "-m", "sweep.run", *args], cwd=PROJECT_ROOT,
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **env},
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("damage", ["truncated", "binary", "not_a_manifest"])
def test_a_corrupt_manifest_json_is_named_with_the_fix(damage, pool, env, tmp_path):
    storage = tmp_path / "runs"
    (storage / NAME).mkdir(parents=True)
    good = build_manifest(pool).to_json()
    manifest = storage / NAME / "manifest.json"
    manifest.write_bytes({"truncated": good[: len(good) // 2].encode(), "binary": b"\xff\xfe\x00x",
                          "not_a_manifest": b'{"hello": 1}'}[damage])
    proc = _sweep_cli([*sweep_args(pool, storage, 1), "--dry-run"], env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"error: {manifest} is corrupt or truncated" in proc.stderr
    assert "Fix: delete it and run the same command again" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_deleted_manifest_still_guards_against_mixing_splits(pool, env, tmp_path):
    """The rows carry the split hash: without manifest.json, another split is still refused."""
    from tests.synthetic import write_synthetic_trial

    storage = tmp_path / "runs"
    write_synthetic_trial(storage / NAME / "results", "mobilenet_v2", "scratch", 0,
                          manifest_hash="0123456789abcdef")
    proc = _sweep_cli([*sweep_args(pool, storage, 1), "--dry-run"], env)
    assert proc.returncode == 2 and "was run on a different split (manifest 0123456789abcdef" \
        in proc.stderr, proc.stderr


@pytest.mark.parametrize("damage", ["truncated", "foreign_schema"])
def test_an_unreadable_results_file_is_named_by_the_sweep(damage, pool, env, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    storage = tmp_path / "runs"
    trials = storage / NAME / "results" / "trials"
    trials.mkdir(parents=True)
    bad = trials / "0000000000000000.parquet"
    if damage == "truncated":
        pq.write_table(pa.table({"x": list(range(100))}), bad)
        bad.write_bytes(bad.read_bytes()[:-20])
    else:
        pq.write_table(pa.table({"trial": ["a"], "score": [0.5]}), bad)
    proc = _sweep_cli([*sweep_args(pool, storage, 1), "--dry-run"], env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert str(bad) in proc.stderr and "Fix: move each out of the results folder" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_corrupt_resume_pointer_or_checkpoint_starts_the_trial_afresh(tmp_path):
    from ray import tune

    from sweep.checkpoints import load_state, previous_checkpoint, read_pointer
    from sweep.layout import Experiment

    exp = Experiment(str(tmp_path / "exp"))
    pointer = tmp_path / "exp" / "resume" / "abc.json"
    pointer.parent.mkdir(parents=True)
    for text in ('{"path": "/tmp/x"', "", "[1, 2]", '{"path": 7}', "\xff"):
        pointer.write_text(text, encoding="utf-8", errors="surrogateescape")
        assert read_pointer(exp, "abc") is None and previous_checkpoint(exp, "abc") is None
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "fit_state.pt").write_bytes(b"PK\x03\x04 truncated zip")
    assert load_state(tune.Checkpoint(str(folder)), "abc", None) is None


def test_a_full_disk_never_breaks_the_driver_log(tmp_path, capsys):
    """/dev/full answers every write with ENOSPC, as a filled disk does."""
    import logging

    from sweep.logs import _FileHandler

    handler = _FileHandler("/dev/full", encoding="utf-8")
    logger = logging.getLogger("test-full-disk")
    logger.addHandler(handler)
    try:
        for i in range(3):
            logger.warning("record %d", i)
        handler.write_line("header\n")
        handler.flush()
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert handler.failed and "No space left on device" in handler.failed
    assert "Traceback" not in capsys.readouterr().err


# ------------------------------------------------------------------- the report's inputs
@pytest.fixture
def report_results(tmp_path) -> Path:
    from tests.synthetic import write_synthetic_trial

    root = tmp_path / "results"
    for seed in range(2):
        for regime in ("finetune", "scratch"):
            write_synthetic_trial(root, "resnet18", regime, seed)
    return root


def _damage_truncated(root: Path) -> Path:
    path = next((root / "trials").glob("*.parquet"))
    path.write_bytes(path.read_bytes()[: 200])
    return path


def _damage_foreign(root: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = root / "trials" / "export.parquet"
    pq.write_table(pa.table({"model": ["x"], "accuracy": [0.9]}), path)
    return path


def _damage_ok_row_without_metrics(root: Path) -> Path:
    from trainables.results import tables as res

    path = root / "trials" / "hand-edited.parquet"
    res.write_table_atomic(str(root), "trials", "hand-edited", [{
        "trial_id": "hand-edited", "arch": "resnet18", "regime": "scratch", "seed": 9,
        "train_size": "all", "status": "ok"}])
    return path


def _damage_epochs(root: Path) -> Path:
    path = next((root / "epochs").glob("*.parquet"))
    path.write_bytes(b"PAR1 not really")
    return path


REPORT_DAMAGE = {"truncated_trials": _damage_truncated, "foreign_schema": _damage_foreign,
                 "ok_row_without_metrics": _damage_ok_row_without_metrics,
                 "corrupt_epochs": _damage_epochs}


@pytest.mark.parametrize("case", sorted(REPORT_DAMAGE))
def test_the_report_names_a_damaged_or_foreign_parquet_file(case, report_results, tmp_path,
                                                            capsys):
    from analysis.report import main

    bad = REPORT_DAMAGE[case](report_results)
    code = main(["--results", str(report_results), "--out", str(tmp_path / "rep"), "--no-gradcam"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: 1 file(s) in "), err
    assert str(bad) in err and "Fix: move each out of the results folder" in err
    assert not (tmp_path / "rep" / "report.html").exists()


def test_the_report_names_a_corrupt_manifest(report_results, tmp_path, capsys):
    from analysis.report import main

    (report_results / "manifest.json").write_text('{"classes": ["a", "b"], "entr')
    code = main(["--results", str(report_results), "--out", str(tmp_path / "rep"), "--no-gradcam"])
    err = capsys.readouterr().err
    assert code == 2 and f"split manifest {report_results / 'manifest.json'} is corrupt" in err


def test_the_report_notes_duplicates_a_manifest_records(report_results, tmp_path, capsys):
    from analysis.load import load_results

    body = {"classes": ["alpha", "beta"], "entries": [], "layout": "presplit",
            "duplicates": [{"sha256": "ab", "files": [
                {"root": "data", "path": "train/alpha/1.jpg", "label": "alpha", "split": "train"},
                {"root": "data", "path": "test/alpha/1.jpg", "label": "alpha", "split": "test"}]}]}
    (report_results / "manifest.json").write_text(json.dumps(body))
    notes = load_results(str(report_results)).notes
    assert any("1 group(s) of byte-identical images" in n and "--allow-duplicates" in n
               for n in notes), notes


# --------------------------------------------------------------------- the lock, directly
HOLDER = """
import sys, time
from sweep.experiment_lock import ExperimentLock
from sweep.layout import Experiment
lock = ExperimentLock(Experiment(sys.argv[1]))
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_lock_whose_holder_was_killed_is_stale_at_once(tmp_path):
    import signal
    import sys

    from sweep.experiment_lock import ExperimentLock
    from sweep.layout import Experiment
    from tests.conftest import PROJECT_ROOT
    from trainables.errors import UserError

    exp = Experiment(str(tmp_path / "exp"))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, exp.root], cwd=PROJECT_ROOT,
                              env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=rf"another sweep is running on this experiment: pid "
                                            rf"{holder.pid} on host"):
            ExperimentLock(exp).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    lock = ExperimentLock(exp)
    note = lock.acquire()
    assert note and f"pid {holder.pid}" in note and "no longer running" in note
    lock.release()
    assert not (tmp_path / "exp" / "sweep.lock").exists()


@pytest.mark.parametrize(("age", "held"), [(5, True), (3600, False)])
def test_a_lock_from_another_host_is_stale_once_its_heartbeat_is_old(age, held, tmp_path):
    import time

    from sweep.experiment_lock import ExperimentLock
    from sweep.layout import Experiment
    from trainables.errors import UserError

    exp = Experiment(str(tmp_path / "exp"))
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "sweep.lock").write_text(json.dumps(
        {"host": "gpu-node-7", "pidns": "x", "pid": 1, "token": "t", "since": "earlier",
         "heartbeat": time.time() - age, "command": "python -m sweep.run"}))
    lock = ExperimentLock(exp)
    if held:
        with pytest.raises(UserError, match="pid 1 on host gpu-node-7"):
            lock.acquire()
    else:
        assert "heartbeat is" in lock.acquire()
        lock.release()


def test_disk_full_in_the_single_trial_cli_is_one_error_with_the_fix(pool, env, tmp_path,
                                                                     small_disk, capsys):
    """A kept model (14 MB) does not fit on the 6 MB disk: exit 1, the cause and the fix."""
    from trainables.train import main

    out = small_disk / "one"
    code = main(["--arch", "mobilenet_v2", "--regime", "scratch", "--preset", "smoke",
                 "--set", "epochs=1", "--data", str(pool), "--out", str(out), "--keep-model"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith(f"error: the disk holding {out} is full") and "Fix: free space" in err
    assert "Traceback" not in err
