"""The sweep on a real local Ray: Parquet rows match the grid, reruns skip finished trials,
retries continue from checkpoints, failures are recorded, Ctrl-C then rerun finishes the rest.

Small for 2 CPU cores: smoke preset (2 epochs, 64 px), a generated pool, --train-sizes 4.
One Ray instance is shared by the in-process sweeps (the CLI reuses an initialized Ray); the
interrupt test runs the CLI as its own process, which starts and stops its own Ray.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.integration.fault_helpers import Sweep, hidden_files, wait_until
from trainables.config import trial_id
from trainables.data.folders import build_manifest
from trainables.presets import PRESETS
from trainables.results import tables as results

pytestmark = pytest.mark.slow
EPOCHS = PRESETS["smoke"].overrides["epochs"]


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=128 * 2**20, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture
def data(make_pool, tmp_path) -> tuple[Path, Path]:
    pool = make_pool({"a": 10, "b": 10})  # split 6/2/2 per class
    ood = make_pool({"a": 3, "b": 3}, root=tmp_path / "ood")
    return pool, ood


def args_for(data, storage: Path, *extra: str) -> list[str]:
    pool, ood = data
    # a checkpoint after every epoch, so that a retry continues from the epoch before its fault
    return ["--preset", "smoke", "--data", str(pool), "--ood", str(ood), "--train-sizes", "4",
            "--storage", str(storage), "--name", "t", "--progress-interval", "1",
            "--checkpoint-every", "0", *extra]


def grid_ids(data, regimes, seeds) -> set[str]:
    manifest = build_manifest(*data)
    return {trial_id(PRESETS["smoke"].trial("mobilenet_v2", r, s, "4"), manifest.hash)
            for r in regimes for s in range(seeds)}


def table(root: Path, name: str) -> list[dict]:
    return results.read_table(str(root), name).to_pylist()


def test_rows_match_the_grid_and_reruns_skip_finished_trials(local_ray, sweep_main, data,
                                                             tmp_path, capsys, monkeypatch):
    """Also: a grid larger than one Tuner takes (sweep.tuner.TRIALS_PER_TUNER, 3 here) runs on
    several, one after another, with one progress view and one summary."""
    monkeypatch.setattr("sweep.tuner.TRIALS_PER_TUNER", 3)
    storage = tmp_path / "runs"
    exp = storage / "t"
    root = exp / "results"
    args = args_for(data, storage, "--regimes", "feature_extract", "scratch", "--seeds", "2")
    assert sweep_main(args) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    ids = grid_ids(data, ("feature_extract", "scratch"), 2)

    trials = table(root, "trials")
    assert sorted(t["trial_id"] for t in trials) == sorted(ids)
    assert {t["status"] for t in trials} == {"ok"}
    manifest_hash = build_manifest(*data).hash
    assert {t["split_manifest_hash"] for t in trials} == {manifest_hash}
    assert (exp / "manifest.json").is_file()
    epochs = table(root, "epochs")
    assert sorted((e["trial_id"], e["epoch"]) for e in epochs) == sorted(
        (tid, e) for tid in ids for e in range(1, EPOCHS + 1))
    predictions = table(root, "predictions")
    per_trial = {"test": 4, "ood": 6}
    assert len(predictions) == len(ids) * sum(per_trial.values())
    for split, n in per_trial.items():
        keys = [(p["trial_id"], p["path"]) for p in predictions if p["split"] == split]
        assert len(keys) == len(set(keys)) == len(ids) * n
    # --keep-models best: one model per (arch, regime, train size), the best-val seed's
    kept = [t for t in trials if t["model_path"]]
    assert sorted(t["regime"] for t in kept) == ["feature_extract", "scratch"]
    for regime in ("feature_extract", "scratch"):
        group = [t for t in trials if t["regime"] == regime]
        best = min(group, key=results.best_trial_key)  # the report's rule, imported
        assert best["model_path"] and (root / best["model_path"]).is_file()
    assert len(list((root / "models").glob("*.pt"))) == 2
    # nothing half-written, no checkpoints or resume pointers left for finished trials
    assert hidden_files(root) == []
    assert list((exp / "resume").glob("*.json")) == []
    ray_trials = [d for d in (exp / "ray").iterdir() if (d / "result.json").is_file()]
    assert len(ray_trials) == 4
    assert not [c for d in ray_trials for c in d.glob("checkpoint_*")]
    assert "4/4 done" in out and "trials: 4/4 ok, 0 failed, 0 not run" in out
    assert f"results: {root}" in out
    assert f"python -m analysis.report --results {root}" in out

    # the same command again: nothing runs, nothing is rewritten
    stamps = {p: p.stat().st_mtime_ns for p in (root / "trials").iterdir()}
    assert sweep_main(args) == 0
    out = capsys.readouterr().out
    assert "4 finished earlier, 0 to run" in out and "cluster:" not in out
    assert {p: p.stat().st_mtime_ns for p in (root / "trials").iterdir()} == stamps

    # a bigger grid: only the new points run
    assert sweep_main([*args[:-1], "3"]) == 0
    out = capsys.readouterr().out
    assert "4 finished earlier, 2 to run" in out
    trials = table(root, "trials")
    assert sorted(t["trial_id"] for t in trials) == sorted(
        grid_ids(data, ("feature_extract", "scratch"), 3))
    assert len(table(root, "epochs")) == 6 * EPOCHS


def test_a_retried_trial_continues_from_its_last_checkpoint(local_ray, sweep_main, data,
                                                            tmp_path, capsys, monkeypatch):
    marker = tmp_path / "fired"
    monkeypatch.setenv("FEATURE_REUSE_FAULT", f"oom@epoch={EPOCHS},where=train,once={marker}")
    storage = tmp_path / "runs"
    assert sweep_main(args_for(data, storage, "--regimes", "scratch")) == 0
    out = capsys.readouterr().out
    assert marker.exists(), "the fault never fired"
    [row] = table(storage / "t" / "results", "trials")
    assert row["status"] == "ok" and row["resumed_from_epoch"] == EPOCHS - 1
    assert "retry   mobilenet_v2 scratch seed 0" in out
    assert f"resumed at epoch {EPOCHS - 1}" in out


def test_checkpoints_by_time_a_retry_before_the_first_one_starts_over(local_ray, sweep_main, data,
                                                                        tmp_path, capsys, monkeypatch):
    """With --checkpoint-every 5 (minutes) a 2-epoch trial writes its only checkpoint after its
    last epoch: a fault in epoch 2 finds none, and the retry trains both epochs again."""
    marker = tmp_path / "fired"
    monkeypatch.setenv("FEATURE_REUSE_FAULT", f"oom@epoch={EPOCHS},where=train,once={marker}")
    storage = tmp_path / "runs"
    assert sweep_main(args_for(data, storage, "--regimes", "scratch", "--checkpoint-every", "5")) == 0
    assert marker.exists(), "the fault never fired"
    [row] = table(storage / "t" / "results", "trials")
    assert row["status"] == "ok" and row["resumed_from_epoch"] == 0
    assert "retry   mobilenet_v2 scratch seed 0" in capsys.readouterr().out
    assert len(table(storage / "t" / "results", "epochs")) == EPOCHS


def test_a_failing_trial_is_recorded_and_the_others_finish(local_ray, sweep_main, data,
                                                           tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FEATURE_REUSE_FAULT", "oom@regime=scratch")
    storage = tmp_path / "runs"
    code = sweep_main(args_for(data, storage, "--regimes", "feature_extract", "scratch",
                               "--max-failures", "0"))
    out = capsys.readouterr().out
    assert code == 1, out
    rows = {t["regime"]: t for t in table(storage / "t" / "results", "trials")}
    assert rows["feature_extract"]["status"] == "ok"
    assert rows["scratch"]["status"] == "failed"
    assert rows["scratch"]["error"].startswith("torch.OutOfMemoryError")
    assert "FAILED  mobilenet_v2 scratch seed 0" in out
    assert "trials: 1/2 ok, 1 failed, 0 not run" in out
    assert "rerun the same command" in out


def test_ctrl_c_then_rerun_finishes_only_the_missing_trials(local_ray, sweep_main, data,
                                                            tmp_path, torch_home, capsys):
    seeds = 3
    storage = tmp_path / "runs"
    root = storage / "t" / "results"
    held = tmp_path / "held"  # seed 1 stalls in its last epoch, after its epoch-1 checkpoint
    fault = f"sleep@seed=1,epoch={EPOCHS},where=train,seconds=600,once={held}"
    args = args_for(data, storage, "--regimes", "scratch", "--seeds", str(seeds))
    held_id = trial_id(PRESETS["smoke"].trial("mobilenet_v2", "scratch", 1, "4"),
                       build_manifest(*data).hash)
    sweep = Sweep(args, {"TORCH_HOME": str(torch_home), "FEATURE_REUSE_FAULT": fault})
    sweep.start(tmp_path / "log")
    try:
        wait_until(lambda: held.exists() and (storage / "t" / "resume" / f"{held_id}.json").exists()
                   and len(list((root / "trials").glob("*.parquet"))) >= 1, timeout=240,
                   sweep=sweep, what="a finished trial and seed 1 held mid-trial")
        sweep.proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        code = sweep.proc.wait(60)
        assert code == 130, sweep.output()
        assert time.monotonic() - start < 60
        assert "interrupted: finished trials are saved" in sweep.stderr
        assert "Traceback" not in sweep.stderr, sweep.output()
    finally:
        sweep.cleanup()
    done_before = {t["trial_id"] for t in table(root, "trials") if t["status"] == "ok"}
    assert held_id not in done_before and 1 <= len(done_before) < seeds

    assert sweep_main(args) == 0
    out = capsys.readouterr().out
    assert f"{len(done_before)} finished earlier, {seeds - len(done_before)} to run" in out
    trials = table(root, "trials")
    assert sorted(t["trial_id"] for t in trials) == sorted(grid_ids(data, ("scratch",), seeds))
    assert {t["status"] for t in trials} == {"ok"}
    assert len(table(root, "epochs")) == seeds * EPOCHS
    held_row = next(t for t in trials if t["trial_id"] == held_id)
    assert held_row["resumed_from_epoch"] == EPOCHS - 1  # continued from the earlier run's checkpoint
    assert hidden_files(root) == []
    # no checkpoint outlives its finished trial, including the interrupted run's
    assert list((storage / "t" / "ray").glob("*/checkpoint_*")) == []
    assert list((storage / "t" / "resume").glob("*.json")) == []
