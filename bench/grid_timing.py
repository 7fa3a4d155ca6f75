"""Time a whole preset grid on one machine, several trials packed per GPU (bench/gpu_sweep.sh).

    python bench/grid_timing.py --preset paper --random-weights           # 6 x 3 x 5 = 90 trials
    python bench/grid_timing.py --tiny                                    # CPU check, seconds
    python bench/grid_timing.py --preset paper --dry-run                  # the plan only

Each worker process runs trials from a shared queue with trainables.train.run_trial (the
project's trainable, all fast paths on), so up to --workers trials share the GPU; the default
packs as many as the largest architecture's measured peak memory allows (sweep.resources'
rule), at most 8. Longest trials start first. Pretrained regimes run with RANDOM WEIGHTS when
--random-weights is given (timing only: the accuracies mean nothing, and the output says so).
Data: the embedded demo set when it is on this machine, else a generated stand-in with the
same image counts and sizes (labelled as such).

Prints the wall time, trials per minute, per-architecture trial seconds and peak GPU memory,
and with --deadline-s stops handing out trials at the deadline and extrapolates the rest.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import os
import queue
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RELATIVE_COST = {"densenet161": 6.0, "resnet152": 5.0, "inception_v3": 4.0, "vgg11_bn": 3.0,
                 "resnet18": 1.5, "squeezenet1_0": 1.0, "mobilenet_v2": 1.5}
"""Rough per-trial cost on a GPU at batch 6 (launch-bound: roughly the number of layers); only
used to start the longest trials first."""
REGIME_COST = {"finetune": 1.0, "scratch": 1.0, "feature_extract": 0.6, "linear_probe": 0.05}
MAX_WORKERS = 8


# ------------------------------------------------------------------------------ data
def standin_data(root: Path) -> tuple[Any, Any]:
    """A generated pool shaped like the embedded demo: 100 + 130 images (split 60/20/20) and 168
    OOD images, JPEGs of the demo's typical 500 x 375 px. For timing when the demo set is absent."""
    import numpy as np
    from PIL import Image

    from trainables.data.folders import build_manifest
    from trainables.data.manifest import DataRoots

    rng = np.random.default_rng(0)
    for folder, counts in (("pool", {"ants": 100, "bees": 130}), ("ood", {"ants": 94, "bees": 74})):
        for ci, (cls, n) in enumerate(counts.items()):
            (root / folder / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                w, h = (500, 375) if i % 3 else (375, 500)
                small = rng.integers(0, 255, size=(h // 25, w // 25, 3), dtype=np.uint8)
                img = Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR)
                arr = np.asarray(img, dtype=np.int16) + rng.integers(-20, 20, size=(h, w, 3))
                arr[..., ci] += 40
                Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(
                    root / folder / cls / f"{i:03d}.jpg", quality=90)
    manifest = build_manifest(root / "pool", root / "ood", split_seed=0)
    return DataRoots(str(root / "pool"), str(root / "ood")), manifest


def load_data(scratch: Path, standin: bool = False) -> tuple[Any, Any, str]:
    from trainables.data.demo import locate
    from trainables.errors import DataError

    try:
        if standin:
            raise DataError("stand-in requested")
        locate(allow_download=False)
    except DataError:
        roots, manifest = standin_data(scratch / "standin")
        return roots, manifest, ("GENERATED STAND-IN (embedded demo data not found here; "
                                 "same counts and sizes)")
    from trainables.data.demo import prepare_data

    roots, manifest = prepare_data()
    return roots, manifest, "embedded demo (ants/bees)"


# ------------------------------------------------------------------------------ workers
def _worker(rank: int, tasks: Any, results: Any, manifest_json: str, roots: tuple[str, str | None],
            out: str, threads: int, random_weights: bool) -> None:
    import torch

    from trainables import engine as fitting
    from trainables import linear_probe
    from trainables import train as train_mod
    from trainables.config import TrialConfig
    from trainables.data.manifest import DataRoots, Manifest
    from trainables.models import build_model

    torch.set_num_threads(threads)
    if random_weights:  # the regimes' fit functions build each trial's model
        fitting.build_model = functools.partial(build_model, pretrained=False)
        linear_probe.build_model = functools.partial(build_model, pretrained=False)
    manifest = Manifest.from_json(manifest_json)
    data_roots = DataRoots(*roots)
    cuda = torch.cuda.is_available()
    while True:
        item = tasks.get()
        if item is None:
            return
        config = TrialConfig(**item)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        try:
            row = train_mod.run_trial(config, manifest, data_roots, out)
            results.put({"ok": True, "arch": config.arch, "regime": config.regime,
                         "seed": config.seed, "bf16": config.bf16, "seconds": time.perf_counter() - t0,
                         "train_seconds": row["train_seconds"], "peak_memory_mb": row["peak_memory_mb"],
                         "val": row["best_val_acc"], "test": row["test_acc"], "ood": row["ood_acc"],
                         "worker": rank})
        except Exception as exc:  # report and go on: one failed trial must not stop the timing
            results.put({"ok": False, "arch": config.arch, "regime": config.regime,
                         "seed": config.seed, "error": "".join(traceback.format_exception_only(
                             type(exc), exc)).strip(), "worker": rank})


def default_workers(archs: list[str], cpus: int) -> tuple[int, str]:
    import torch

    from sweep.resources import trials_per_gpu
    from trainables.archs import resolve

    if not torch.cuda.is_available():
        return max(1, min(cpus // 2, MAX_WORKERS)), f"CPU: {cpus} cores / 2 threads per trial"
    memory = torch.cuda.get_device_properties(0).total_memory / 2**30
    largest = max(resolve(a).peak_memory_gb for a in archs)
    n = min(trials_per_gpu(largest, memory), MAX_WORKERS, max(1, cpus))
    return n, (f"GPU {memory:.0f} GB: {n} trials at once (largest measured peak {largest:g} GB, "
               f"sweep.resources rule; at most {MAX_WORKERS})")


def run_grid(configs: list[dict[str, Any]], workers: int, threads: int, manifest, roots,
             out: str, random_weights: bool, deadline_s: float | None,
             on_result: Any = None) -> tuple[list[dict[str, Any]], float, int]:
    """Run the configs on `workers` processes; returns (results, wall seconds, not started)."""
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, tasks, results, manifest.to_json(),
                                               (roots.data, roots.ood), out, threads, random_weights),
                         daemon=True) for r in range(workers)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    pending = list(configs)
    for _ in range(min(workers, len(pending))):
        tasks.put(pending.pop(0))
    done: list[dict[str, Any]] = []
    while len(done) < len(configs) - len(pending):
        try:
            res = results.get(timeout=5)
        except queue.Empty:
            if not any(p.is_alive() for p in procs):
                break
            continue
        res["finished_s"] = time.perf_counter() - t0
        done.append(res)
        if on_result:
            on_result(res, len(done), len(configs))
        if pending and (deadline_s is None or time.perf_counter() - t0 < deadline_s):
            tasks.put(pending.pop(0))
    wall = time.perf_counter() - t0
    for _ in procs:
        tasks.put(None)
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.terminate()
    return done, wall, len(pending)


# ------------------------------------------------------------------------------ report
def summary(done: list[dict[str, Any]], wall: float, total: int, not_started: int,
            label: str) -> list[str]:
    ok = [r for r in done if r["ok"]]
    lines = [f"{label}", f"trials finished: {len(ok)} ok, {len(done) - len(ok)} failed, "
             f"{not_started} not started (of {total})",
             f"wall time: {wall:.1f} s ({wall / 60:.2f} min); {len(ok) / (wall / 60):.1f} trials/minute"]
    if not_started and ok:
        lines.append(f"extrapolated full grid at this rate: {total / (len(ok) / wall) / 60:.1f} min")
    lines.append(f"{'arch':14s} {'trials':>6s} {'mean s':>7s} {'max s':>7s} {'train s':>8s} "
                 f"{'peak MB':>8s}")
    for arch in sorted({r["arch"] for r in ok}):
        rs = [r for r in ok if r["arch"] == arch]
        lines.append(f"{arch:14s} {len(rs):6d} {statistics.mean(r['seconds'] for r in rs):7.1f} "
                     f"{max(r['seconds'] for r in rs):7.1f} "
                     f"{statistics.mean(r['train_seconds'] for r in rs):8.1f} "
                     f"{max(r['peak_memory_mb'] for r in rs):8.0f}")
    if ok:
        busy = sum(r["seconds"] for r in ok)
        lines.append(f"sum of trial seconds {busy:.0f} s = {busy / wall:.1f} trials running on "
                     "average")
    for r in done:
        if not r["ok"]:
            lines.append(f"FAILED {r['arch']} {r['regime']} seed {r['seed']}: {r['error']}")
    return lines


def bf16_lines(done: list[dict[str, Any]]) -> list[str]:
    """fp32 against bf16 autocast per metric, over seeds (Welch's t-test)."""
    from scipy import stats

    lines = ["bf16 autocast vs fp32 (scratch trials; mean +- sd over seeds; Welch p):"]
    for arch in sorted({r["arch"] for r in done if r["ok"]}):
        cols = []
        for metric in ("val", "test", "ood"):
            a = [r[metric] for r in done if r["ok"] and r["arch"] == arch and not r["bf16"]]
            b = [r[metric] for r in done if r["ok"] and r["arch"] == arch and r["bf16"]]
            if len(a) < 2 or len(b) < 2 or a[0] is None:
                continue
            p = stats.ttest_ind(a, b, equal_var=False).pvalue
            cols.append(f"{metric} fp32 {statistics.mean(a):.3f}+-{statistics.stdev(a):.3f} "
                        f"bf16 {statistics.mean(b):.3f}+-{statistics.stdev(b):.3f} p={p:.2f}")
        lines.append(f"  {arch}: " + "; ".join(cols))
    return lines


# ------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python bench/grid_timing.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="paper")
    p.add_argument("--archs", nargs="+", help="default: the preset's")
    p.add_argument("--regimes", nargs="+", help="default: the preset's (paper: the study's three)")
    p.add_argument("--seeds", type=int, help="default: the preset's (paper: 5)")
    p.add_argument("--epochs", type=int, help="override the preset's epochs")
    p.add_argument("--input-size", type=int, help="override the crop size")
    p.add_argument("--train-size", default="all")
    p.add_argument("--workers", type=int, default=0, help="trials at once (0: automatic)")
    p.add_argument("--threads", type=int, default=0, help="torch threads per trial (0: cpus/workers)")
    p.add_argument("--random-weights", action="store_true",
                   help="pretrained regimes with random weights (timing only; labelled)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    p.add_argument("--bf16-check", action="store_true",
                   help="instead of the grid: scratch trials of --archs, fp32 and bf16, per seed")
    p.add_argument("--deadline-s", type=float, help="hand out no new trial after this many seconds")
    p.add_argument("--tiny", action="store_true",
                   help="a seconds-long CPU check: smoke preset, 2 archs, 1 seed, 1 epoch, 32 px")
    p.add_argument("--standin", action="store_true",
                   help="use the generated stand-in data even when the embedded set is here")
    p.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    p.add_argument("--json", help="write the results here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from trainables.archs import resolve
    from trainables.errors import UserError
    from trainables.presets import get_preset

    try:
        if args.tiny:
            args.preset, args.epochs, args.input_size, args.train_size = "smoke", 1, 32, "2"
            args.archs = args.archs or ["resnet18", "squeezenet1_0"]
            args.seeds = args.seeds or 1
            args.random_weights = True
        preset = get_preset(args.preset)
        archs = args.archs or list(preset.archs)
        regimes = ["scratch"] if args.bf16_check else (args.regimes or list(preset.regimes))
        seeds = args.seeds or preset.seeds
        overrides: dict[str, Any] = {}
        if args.epochs:
            overrides["epochs"] = args.epochs
        precisions = [False, True] if args.bf16_check else [args.bf16]

        def crop(arch: str) -> dict[str, int]:
            size = args.input_size and max(args.input_size, resolve(arch).min_input_size)
            return {"train_crop": size} if size else {}

        configs = [preset.trial(a, r, s, args.train_size, bf16=b, **overrides, **crop(a)).to_dict()
                   for a in archs for r in regimes for s in range(seeds) for b in precisions]
        configs.sort(key=lambda c: -RELATIVE_COST.get(c["arch"], 2.0) * REGIME_COST[c["regime"]])
        cpus = len(os.sched_getaffinity(0))
        workers, why = (args.workers, "--workers") if args.workers else default_workers(archs, cpus)
        threads = args.threads or max(1, cpus // workers)
        import torch

        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (no GPU)"
        weights = ("RANDOM WEIGHTS (timing only; accuracies of transfer regimes are meaningless)"
                   if args.random_weights else "ImageNet weights from $TORCH_HOME")
        if any(c["regime"] != "scratch" for c in configs) and not args.random_weights:
            from trainables.weights import preflight

            problems = preflight(sorted({c["arch"] for c in configs if c["regime"] != "scratch"}))
            if problems:
                raise UserError("; ".join(map(str, problems)) + " (or pass --random-weights)")
        header = [f"grid: preset {preset.name}, {len(archs)} archs x {len(regimes)} regimes x "
                  f"{seeds} seeds" + (" x {fp32, bf16}" if args.bf16_check else "")
                  + f" = {len(configs)} trials; epochs {configs[0]['epochs']}, "
                  f"crop {args.input_size or 'arch default'} (Inception at least 299)",
                  f"device: {device}; {workers} workers x {threads} threads ({why})",
                  f"weights: {weights}"]
        print("\n".join(header), flush=True)
        if args.dry_run:
            for c in configs:
                print(f"  {c['arch']:14s} {c['regime']:16s} seed {c['seed']}"
                      + (" bf16" if c["bf16"] else ""))
            return 0
        scratch = Path(tempfile.mkdtemp(prefix="grid-timing-"))
        t_data = time.perf_counter()
        roots, manifest, data_label = load_data(scratch, args.standin)
        print(f"data: {data_label} ({time.perf_counter() - t_data:.1f} s to prepare)", flush=True)

        def progress(res: dict[str, Any], n: int, total: int) -> None:
            state = f"{res['seconds']:.1f}s" if res["ok"] else "FAILED " + res["error"][:200]
            print(f"[{res['finished_s']:6.1f}s {n}/{total}] {res['arch']} {res['regime']} "
                  f"seed {res['seed']}{' bf16' if res.get('bf16') else ''}: {state}", flush=True)

        done, wall, not_started = run_grid(configs, workers, threads, manifest, roots,
                                           str(scratch / "results"), args.random_weights,
                                           args.deadline_s, progress)
        label = ("RESULT (" + ("RANDOM WEIGHTS, timing only" if args.random_weights else "ImageNet")
                 + f"; {device}; data: {data_label})")
        lines = summary(done, wall, len(configs), not_started, label)
        if args.bf16_check:
            lines += bf16_lines(done)
        print("\n" + "\n".join(lines), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"header": header, "summary": lines,
                                                   "trials": done, "wall_s": wall}, indent=1))
        shutil.rmtree(scratch, ignore_errors=True)
        failed = any(not r["ok"] for r in done)
        return 1 if failed else 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
