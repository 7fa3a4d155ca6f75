"""How fast does `python -m analysis.report` rebuild everything from a large sweep's results?

    python bench/report_speed.py                      # 100k trials x 30 epochs (the goal: <= 10 s)
    python bench/report_speed.py --trials 20000 --epochs 15 --keep /tmp/big

Generates synthetic results in the real schema (trainables/results.py) and the sweep's layout, one
file per trial per table: 7 architectures x the study's regimes x 5 train sizes x N seeds, with
the study's StepLR(7, 0.1) rates, test and OOD predictions for every trial (the demo set's 46 +
168 images) and ~0.5% failed trials. Then, each in a fresh process: `python -m sweep.compact`
(the sweep's last step); `python -m analysis.report --no-gradcam` on the compacted results (the
goal); the same after rewriting --fresh trials as new per-trial files (a retried failure).
Nothing is asserted: wall times on a shared machine grow with its load, CPU times much less.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from bench.harness import ROOT, parser, run  # noqa: E402
from trainables.regimes import REGIMES, STUDY_REGIMES  # noqa: E402
from trainables.results import tables  # noqa: E402

PARAMS = {  # trainable parameters for 2 classes: every weight, the new head only
    "inception_v3": (25_116_362, 8_196), "densenet161": (26_476_418, 4_418),
    "resnet152": (58_147_906, 4_098), "resnet18": (11_177_538, 1_026),
    "vgg11_bn": (128_781_634, 8_194), "squeezenet1_0": (736_450, 1_026),
    "mobilenet_v2": (2_226_434, 2_562)}
SIZES = {"5": 5.0, "10": 10.0, "20": 20.0, "40": 40.0, "all": 60.0}
DROP = {"5": 0.15, "10": 0.1, "20": 0.05, "40": 0.02, "all": 0.0}
N_TEST, N_OOD, CHUNK = 46, 168, 1000


def level(regime: str) -> float:
    """Accuracy a regime reaches: transfer with everything training, with the head only, scratch."""
    r = REGIMES[regime]
    return 0.65 if not r.pretrained else 0.93 if r.trains == "all" else 0.9


def generate(root: Path, n_trials: int, n_epochs: int, seed: int = 0, ids: slice | None = None) -> None:
    """Write the synthetic trials (or those in `ids`, values drawn from `seed`), one file per
    trial per table, as the sweep writes them."""
    rng = np.random.default_rng(seed)
    combos = [(a, r, s) for a in PARAMS for r in STUDY_REGIMES for s in SIZES]
    points = [(*c, k) for k in range(-(-n_trials // len(combos))) for c in combos][:n_trials]
    first = ids.start or 0 if ids else 0
    points = points[ids] if ids else points
    for table in ("epochs", "trials", "predictions"):
        (root / table).mkdir(parents=True, exist_ok=True)
    paths = np.array([f"{'ants' if i % 2 else 'bees'}/{s}_{i:03d}.jpg"
                      for s, n in (("test", N_TEST), ("ood", N_OOD)) for i in range(n)])
    true = np.array([p.split("/")[0] for p in paths])
    lr = np.array([1e-3 * 0.1 ** ((e - 1) // 7) for e in range(1, n_epochs + 1)])
    for start in range(0, len(points), CHUNK):
        chunk = points[start:start + CHUNK]
        n, m = len(chunk), N_TEST + N_OOD
        tids = [f"{first + start + i:016x}" for i in range(n)]
        arch, regime, size, seeds = (list(col) for col in zip(*chunk, strict=True))
        seeds = np.array(seeds, dtype=np.int64)
        lvl = np.array([level(r) - DROP[s] for r, s in zip(regime, size, strict=True)])
        curve = lvl[:, None] * (1 - 0.5 * np.exp(-np.arange(1, n_epochs + 1) / 3.0))[None, :]
        val = np.clip(curve + rng.normal(0, 0.02, (n, n_epochs)), 0, 1).round(4)
        failed = rng.random(n) < 0.005
        key = {"trial_id": tids, "arch": arch, "regime": regime, "seed": seeds, "train_size": size}
        e = n * n_epochs
        epochs = {**_repeat(key, n_epochs), "epoch": np.tile(np.arange(1, n_epochs + 1), n),
                  "train_loss": rng.random(e), "train_acc": rng.random(e), "val_loss": rng.random(e),
                  "val_acc": val.ravel(), "select_score": val.ravel(), "lr": np.tile(lr, n),
                  "seconds": np.full(e, 1.0)}
        _write(root / "epochs", tids, _table(epochs, tables.EPOCHS_SCHEMA, e).filter(
            pa.array(~np.repeat(failed, n_epochs))), np.where(failed, 0, n_epochs))
        test_acc = np.clip(lvl + rng.normal(0, 0.03, n), 0, 1)
        ood_acc = np.clip(lvl - 0.2 + rng.normal(0, 0.04, n), 0, 1)
        trials = {**key, "preset": ["paper"] * n, "status": np.where(failed, "failed", "ok"),
                  "error": np.where(failed, "RuntimeError: CUDA out of memory", None),
                  "config_json": ["{}"] * n, "epochs": np.full(n, n_epochs),
                  "best_epoch": val.argmax(1) + 1, "best_val_acc": val.max(1),
                  "best_val_loss": rng.random(n), "test_acc": test_acc, "ood_acc": ood_acc,
                  "classes_json": ['["ants", "bees"]'] * n,
                  "train_images": (np.array([SIZES[s] for s in size]) * 2).astype(np.int64),
                  "train_images_per_class": [SIZES[s] for s in size],
                  "trainable_params": np.array([PARAMS[a][REGIMES[r].trains == "heads"]
                                                for a, r in zip(arch, regime, strict=True)]),
                  "total_params": np.array([PARAMS[a][0] for a in arch]), "ood_kind": ["real"] * n,
                  "split_manifest_hash": ["0123456789abcdef"] * n,
                  "schema_version": np.ones(n, dtype=np.int64)}
        _write(root / "trials", tids, _table(trials, tables.TRIALS_SCHEMA, n), np.ones(n, dtype=np.int64))
        correct = np.concatenate([rng.random((n, N_TEST)) < test_acc[:, None],
                                  rng.random((n, N_OOD)) < ood_acc[:, None]], axis=1).ravel()
        pred = np.where(correct.reshape(n, m), true[None, :],
                        np.where(true == "ants", "bees", "ants")[None, :]).ravel()
        preds = {**_repeat(key, m), "split": np.tile(np.array(["test"] * N_TEST + ["ood"] * N_OOD), n),
                 "path": np.tile(paths, n), "true_label": np.tile(true, n), "pred_label": pred,
                 "prob": np.full(n * m, 0.8), "true_prob": np.where(correct, 0.8, 0.2), "correct": correct}
        _write(root / "predictions", tids, _table(preds, tables.PREDICTIONS_SCHEMA, n * m).filter(
            pa.array(np.repeat(~failed, m))), np.where(failed, 0, m))


def _repeat(columns: dict, k: int) -> dict:
    return {name: np.repeat(v, k) for name, v in columns.items()}


def _table(columns: dict, schema: pa.Schema, n: int) -> pa.Table:
    return pa.table({f.name: columns.get(f.name, pa.nulls(n, f.type)) for f in schema}, schema=schema)


def _write(folder: Path, tids: list[str], table: pa.Table, rows_per_trial: np.ndarray) -> None:
    """One file per trial, named by its id, as trainables.results writes them (rows grouped by
    trial, trials in order)."""
    bounds = np.r_[0, np.cumsum(rows_per_trial)]
    for tid, a, b in zip(tids, bounds[:-1], bounds[1:], strict=True):
        if b > a or folder.name == "trials":
            pq.write_table(table.slice(a, b - a), folder / f"{tid}.parquet")


def timed(label: str, cmd: list[str]) -> str:
    """Runs a command in a fresh process; prints its wall and CPU seconds; returns its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall, after = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    breakdown = next((x.strip() for x in proc.stdout.splitlines() if x.startswith("time:")), "")
    print(f"{label}: {wall:.1f} s end to end, {cpu:.1f} s of CPU" + (f" ({breakdown})" if breakdown else ""))
    return proc.stdout


def on_disk(results: Path) -> str:
    return ", ".join(f"{t} {len(fs):,} file(s) {sum(f.stat().st_size for f in fs) / 2**20:.0f} MiB"
                     for t in ("trials", "epochs", "predictions")
                     for fs in [list((results / t).glob("*.parquet"))])


def main(args) -> int:
    base = Path(args.keep or tempfile.mkdtemp(prefix="report-speed-"))
    results, size = base / "results", f"{args.trials:,} trials x {args.epochs} epochs"
    report = [sys.executable, "-m", "analysis.report", "--results", str(results), "--out",
              str(base / "report"), "--no-gradcam"]
    try:
        if not (results / "trials").is_dir():
            t0 = time.perf_counter()
            generate(results, args.trials, args.epochs)
            print(f"generated {size}, one file per trial per table, in {time.perf_counter() - t0:.1f} s")
        print(f"on disk: {on_disk(results)}")
        timed("python -m sweep.compact", [sys.executable, "-m", "sweep.compact", "--results", str(results)])
        print(f"on disk: {on_disk(results)}")
        timed(f"python -m analysis.report (compacted; {size}; goal <= 10 s)", report)
        if args.fresh:
            n = min(args.fresh, args.trials)
            generate(results, args.trials, args.epochs, seed=1, ids=slice(0, n))
            print(f"rewrote {n:,} trials as fresh per-trial files; on disk: {on_disk(results)}")
            timed(f"python -m analysis.report (compacted + {n:,} fresh; {size}; goal <= 10 s)", report)
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    p = parser(__file__, __doc__)
    p.add_argument("--trials", type=int, default=100_000)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--keep", help="generate into this folder and keep it")
    p.add_argument("--fresh", type=int, default=1000,
                   help="trials rewritten as fresh per-trial files after the compaction (0: skip)")
    sys.exit(run(main, p))
