"""How fast does `python -m analysis.report` rebuild everything from a large sweep's results?

    python bench/report_speed.py                      # 100k trials x 30 epochs (the goal: <= 10 s)
    python bench/report_speed.py --trials 20000 --epochs 15 --keep /tmp/big

Generates synthetic results in the real schema (trainables/results/tables.py) and in the sweep's own
layout, one file per trial per table: 7 architectures x 3 regimes x 5 train sizes x N seeds,
30 epochs each with the study's StepLR(7, 0.1) rates, test and OOD predictions for every trial
(46 test + 168 OOD images, the demo set's sizes), and ~0.5% failed trials. Then, each in a fresh
process (Python start and imports included):

1. `python -m sweep.compact`, the step a sweep runs after its last trial;
2. `python -m analysis.report --no-gradcam` on the compacted results (the goal);
3. the same after rewriting --fresh trials as new per-trial files (a retried failure, a rerun):
   the report reads compacted parts and fresh files together.

The uncompacted layout's read cost is measured on --per-trial-sample trials (reading the trials
and epochs tables only, before any analysis) and extrapolated. Nothing is asserted: this is a
benchmark, not a test; wall times on a shared machine grow with its load, CPU times much less.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainables.results.tables import EPOCHS_SCHEMA, PREDICTIONS_SCHEMA, TRIALS_SCHEMA  # noqa: E402

ARCHS = {  # name: trainable params (finetune/scratch, feature extraction) for 2 classes
    "inception_v3": (25_116_362, 8_196), "densenet161": (26_476_418, 4_418),
    "resnet152": (58_147_906, 4_098), "resnet18": (11_177_538, 1_026),
    "vgg11_bn": (128_781_634, 8_194), "squeezenet1_0": (736_450, 1_026),
    "mobilenet_v2": (2_226_434, 2_562),
}
REGIMES = ("finetune", "feature_extract", "scratch")
SIZES = {"5": 5.0, "10": 10.0, "20": 20.0, "40": 40.0, "all": 60.0}
N_TEST, N_OOD = 46, 168
CHUNK = 1000


def grid(n_trials: int) -> list[tuple[str, str, str, int]]:
    combos = [(a, r, s) for a in ARCHS for r in REGIMES for s in SIZES]
    seeds = -(-n_trials // len(combos))
    return [(a, r, s, seed) for seed in range(seeds) for a, r, s in combos][:n_trials]


def _per_trial(table: pa.Table, rows_per_trial: np.ndarray) -> list[pa.Table]:
    """Split a chunk (rows grouped by trial, trials in order) into one table per trial."""
    bounds = np.r_[0, np.cumsum(rows_per_trial)]
    return [table.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _write(folder: Path, tids: list[str], table: pa.Table, rows_per_trial: np.ndarray) -> None:
    """One file per trial, named by its id, as trainables.results writes them."""
    for tid, piece in zip(tids, _per_trial(table, rows_per_trial), strict=True):
        if piece.num_rows or folder.name == "trials":
            pq.write_table(piece, folder / f"{tid}.parquet")


def generate(root: Path, n_trials: int, n_epochs: int, seed: int = 0, predictions: bool = True,
             ids: slice | None = None) -> None:
    """Write the synthetic trials (or only those in `ids`, with values drawn from `seed`), one
    file per trial per table as the sweep writes them."""
    rng = np.random.default_rng(seed)
    points = grid(n_trials)
    first = 0
    if ids is not None:
        first = ids.start or 0
        points = points[ids]
    part = CHUNK
    for table in ("epochs", "trials", "predictions"):
        (root / table).mkdir(parents=True, exist_ok=True)
    paths_test = [f"{'ants' if i % 2 else 'bees'}/test_{i:03d}.jpg" for i in range(N_TEST)]
    paths_ood = [f"{'ants' if i % 2 else 'bees'}/ood_{i:03d}.jpg" for i in range(N_OOD)]
    lr = np.array([1e-3 * 0.1 ** ((e - 1) // 7) for e in range(1, n_epochs + 1)])
    for start in range(0, len(points), part):
        chunk = points[start:start + part]
        n = len(chunk)
        tids = [f"{first + start + i:016x}" for i in range(n)]
        arch = [p[0] for p in chunk]
        regime = [p[1] for p in chunk]
        size = [p[2] for p in chunk]
        seeds = np.array([p[3] for p in chunk], dtype=np.int64)
        level = np.array([{"finetune": 0.93, "feature_extract": 0.9, "scratch": 0.65}[r] for r in regime])
        level -= np.array([{"5": 0.15, "10": 0.1, "20": 0.05, "40": 0.02, "all": 0.0}[s] for s in size])
        curve = level[:, None] * (1 - 0.5 * np.exp(-np.arange(1, n_epochs + 1) / 3.0))[None, :]
        val = np.clip(curve + rng.normal(0, 0.02, (n, n_epochs)), 0, 1).round(4)
        failed = rng.random(n) < 0.005
        keys = {"trial_id": np.repeat(tids, n_epochs), "arch": np.repeat(arch, n_epochs),
                "regime": np.repeat(regime, n_epochs), "seed": np.repeat(seeds, n_epochs),
                "train_size": np.repeat(size, n_epochs)}
        ok = ~np.repeat(failed, n_epochs)
        columns = {**keys, "epoch": np.tile(np.arange(1, n_epochs + 1), n),
                   "train_loss": rng.random(n * n_epochs), "train_acc": rng.random(n * n_epochs),
                   "val_loss": rng.random(n * n_epochs), "val_acc": val.ravel(),
                   "select_score": val.ravel(), "lr": np.tile(lr, n), "seconds": np.full(n * n_epochs, 1.0)}
        epochs = pa.table({f.name: columns.get(f.name, pa.nulls(n * n_epochs, f.type))
                           for f in EPOCHS_SCHEMA}, schema=EPOCHS_SCHEMA)
        _write(root / "epochs", tids, epochs.filter(pa.array(ok)), np.where(failed, 0, n_epochs))
        test_acc = np.clip(level + rng.normal(0, 0.03, n), 0, 1)
        ood_acc = np.clip(level - 0.2 + rng.normal(0, 0.04, n), 0, 1)
        params = np.array([ARCHS[a][1] if r == "feature_extract" else ARCHS[a][0]
                           for a, r in zip(arch, regime, strict=True)])
        trials = {"trial_id": tids, "arch": arch, "regime": regime, "seed": seeds, "train_size": size,
                  "preset": ["paper"] * n, "status": np.where(failed, "failed", "ok"),
                  "error": np.where(failed, "RuntimeError: CUDA out of memory", None),
                  "config_json": ["{}"] * n, "epochs": np.full(n, n_epochs),
                  "best_epoch": val.argmax(1) + 1, "best_val_acc": val.max(1),
                  "best_val_loss": rng.random(n), "test_acc": test_acc, "ood_acc": ood_acc,
                  "classes_json": ['["ants", "bees"]'] * n,
                  "train_images": (np.array([SIZES[s] for s in size]) * 2).astype(np.int64),
                  "train_images_per_class": [SIZES[s] for s in size], "trainable_params": params,
                  "total_params": np.array([ARCHS[a][0] for a in arch]),
                  "ood_kind": ["real"] * n, "split_manifest_hash": ["0123456789abcdef"] * n,
                  "schema_version": np.ones(n, dtype=np.int64)}
        rows = pa.table({f.name: trials.get(f.name, pa.nulls(n, f.type)) for f in TRIALS_SCHEMA},
                        schema=TRIALS_SCHEMA)
        _write(root / "trials", tids, rows, np.ones(n, dtype=np.int64))
        if not predictions:
            continue
        m = N_TEST + N_OOD
        keep = np.repeat(~failed, m)
        correct_test = rng.random((n, N_TEST)) < test_acc[:, None]
        correct_ood = rng.random((n, N_OOD)) < ood_acc[:, None]
        correct = np.concatenate([correct_test, correct_ood], axis=1).ravel()
        paths = np.array(paths_test + paths_ood)
        true = np.array([p.split("/")[0] for p in paths])
        other = np.where(true == "ants", "bees", "ants")
        pred = np.where(correct.reshape(n, m), true[None, :], other[None, :]).ravel()
        preds = pa.table({"trial_id": np.repeat(tids, m), "arch": np.repeat(arch, m),
                          "regime": np.repeat(regime, m), "seed": np.repeat(seeds, m),
                          "train_size": np.repeat(size, m),
                          "split": np.tile(np.array(["test"] * N_TEST + ["ood"] * N_OOD), n),
                          "path": np.tile(paths, n), "true_label": np.tile(true, n), "pred_label": pred,
                          "prob": np.full(n * m, 0.8), "true_prob": np.where(correct, 0.8, 0.2),
                          "correct": correct}, schema=PREDICTIONS_SCHEMA)
        _write(root / "predictions", tids, preds.filter(pa.array(keep)), np.where(failed, 0, m))


def per_trial_read_cost(n: int, n_epochs: int) -> float:
    """Seconds per trial to read the trials and epochs tables when each trial has its own files
    (the sweep's layout before compaction), measured on n trials."""
    from trainables.results.tables import read_table

    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), n, n_epochs, predictions=False)
        t0 = time.perf_counter()
        read_table(tmp, "trials")
        read_table(tmp, "epochs", columns=["trial_id", "epoch", "val_acc", "lr"])
        return (time.perf_counter() - t0) / n


def timed(cmd: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, CPU s, the finished process) of a command in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if run.returncode != 0:
        print(run.stdout, run.stderr, sep="\n")
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return wall, cpu, run


def on_disk(results: Path) -> str:
    parts = []
    for t in ("trials", "epochs", "predictions"):
        files = list((results / t).glob("*.parquet"))
        parts.append(f"{t} {len(files):,} file(s) {sum(f.stat().st_size for f in files) / 2**20:.0f} MiB")
    return ", ".join(parts)


def report(results: Path, out: Path, label: str, n_trials: int, n_epochs: int) -> None:
    wall, cpu, run = timed([sys.executable, "-m", "analysis.report", "--results", str(results),
                            "--out", str(out), "--no-gradcam"])
    breakdown = next((line for line in run.stdout.splitlines() if line.startswith("time:")), "")
    print(f"python -m analysis.report ({label}): {wall:.1f} s end to end, {cpu:.1f} s of CPU "
          f"({breakdown.strip()}) for {n_trials:,} trials x {n_epochs} epochs; goal <= 10 s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=100_000)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--keep", default=None, help="generate into this folder and keep it")
    p.add_argument("--fresh", type=int, default=1000,
                   help="trials rewritten as fresh files after the compaction (0: skip that step)")
    p.add_argument("--per-trial-sample", type=int, default=2000,
                   help="trials read uncompacted to measure that layout's read cost (0: skip)")
    args = p.parse_args(argv)
    tmp = None
    base = Path(args.keep) if args.keep else Path(tmp := tempfile.mkdtemp(prefix="report-speed-"))
    try:
        results = base / "results"
        if not (results / "trials").is_dir():
            t0 = time.perf_counter()
            generate(results, args.trials, args.epochs)
            print(f"generated {args.trials:,} trials x {args.epochs} epochs, one file per trial per "
                  f"table (the sweep's layout), in {time.perf_counter() - t0:.1f} s -> {results}")
        print(f"on disk: {on_disk(results)}")
        wall, cpu, run = timed([sys.executable, "-m", "sweep.compact", "--results", str(results)])
        print(f"python -m sweep.compact: {wall:.1f} s end to end, {cpu:.1f} s of CPU")
        print(f"on disk: {on_disk(results)}")
        report(results, base / "report", "compacted", args.trials, args.epochs)
        if args.fresh:
            n = min(args.fresh, args.trials)
            generate(results, args.trials, args.epochs, seed=1, ids=slice(0, n))
            print(f"rewrote {n:,} trials as fresh per-trial files; on disk: {on_disk(results)}")
            report(results, base / "report", f"compacted + {n:,} fresh", args.trials, args.epochs)
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (wall time "
              "grows with the load; CPU time much less)")
        if args.per_trial_sample:
            cost = per_trial_read_cost(args.per_trial_sample, args.epochs)
            print(f"uncompacted (one file per trial per table): reading trials + epochs costs "
                  f"{1000 * cost:.2f} ms per trial (measured on {args.per_trial_sample:,}), i.e. "
                  f"~{cost * args.trials:.0f} s for {args.trials:,} trials before any analysis")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
