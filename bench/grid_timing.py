"""Time a whole preset grid on one machine, several trials packed per GPU (bench/gpu_sweep.sh).

    python bench/grid_timing.py --preset paper --random-weights           # 6 x 3 x 5 = 90 trials
    python bench/grid_timing.py --tiny                                    # CPU check, seconds
    python bench/grid_timing.py --preset paper --dry-run                  # the plan only

Worker processes run trials from a shared queue with trainables.train.run_trial, longest first
(the sweep's cost model, sweep/schedule.py), as many at once as the largest architecture's peak
memory allows on this GPU (sweep.resources.trials_per_gpu, the sweep's one sizing rule; at most
8). Pretrained regimes run with RANDOM WEIGHTS under --random-weights (timing only; the output
says so). Data: the embedded demo set, else a labelled stand-in of the same counts and sizes.
Prints the wall time, trials per minute, per-architecture seconds and peak memory; with
--deadline-s it stops handing out trials at the deadline and extrapolates the rest.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench import harness  # noqa: E402
from bench.harness import RANDOM, mean_sd, run_pool  # noqa: E402
from sweep.resources import trials_per_gpu  # noqa: E402
from sweep.schedule import expected_gflop  # noqa: E402
from trainables.archs import resolve  # noqa: E402
from trainables.errors import UserError  # noqa: E402
from trainables.presets import get_preset  # noqa: E402
from trainables.regimes import SCRATCH  # noqa: E402
from trainables.weights import preflight  # noqa: E402

MAX_WORKERS = 8


def default_workers(archs: list[str], cpus: int) -> tuple[int, str]:
    if not torch.cuda.is_available():
        return max(1, min(cpus // 2, MAX_WORKERS)), f"CPU: {cpus} cores / 2 threads per trial"
    memory = torch.cuda.get_device_properties(0).total_memory / 2**30
    largest = max(resolve(a).peak_memory_gb for a in archs)
    n = min(trials_per_gpu(largest, memory), MAX_WORKERS, max(1, cpus))
    return n, (f"GPU {memory:.0f} GB: {n} trials at once (largest peak {largest:g} GB, the sweep's "
               f"sizing rule; at most {MAX_WORKERS})")


def summary(done: list[dict[str, Any]], wall: float, total: int, not_started: int, label: str) -> list[str]:
    ok = [r for r in done if r["ok"]]
    lines = [label, f"trials finished: {len(ok)} ok, {len(done) - len(ok)} failed, {not_started} not "
             f"started (of {total})", f"wall time: {wall:.1f} s ({wall / 60:.2f} min); "
             f"{len(ok) / (wall / 60):.1f} trials/minute"]
    if not_started and ok:
        lines.append(f"extrapolated full grid at this rate: {total / (len(ok) / wall) / 60:.1f} min")
    lines.append(f"{'arch':14s} {'trials':>6s} {'mean s':>7s} {'max s':>7s} {'train s':>8s} {'peak MB':>8s}")
    for arch in sorted({r["arch"] for r in ok}):
        rs = [r for r in ok if r["arch"] == arch]
        mean_s, max_s = statistics.mean(r["seconds"] for r in rs), max(r["seconds"] for r in rs)
        lines.append(f"{arch:14s} {len(rs):6d} {mean_s:7.1f} {max_s:7.1f} "
                     f"{statistics.mean(r['train_seconds'] for r in rs):8.1f} "
                     f"{max(r['peak_allocated_mb'] for r in rs):8.0f}")
    if ok:
        busy = sum(r["seconds"] for r in ok)
        lines.append(f"sum of trial seconds {busy:.0f} s = {busy / wall:.1f} trials running on average")
    return lines + [f"FAILED {r['arch']} {r['regime']} seed {r['seed']}: {r['error']}"
                    for r in done if not r["ok"]]


def bf16_lines(done: list[dict[str, Any]]) -> list[str]:
    """fp32 against bf16 autocast per metric, over seeds (Welch's t-test)."""
    lines = ["bf16 autocast vs fp32 (mean +- sd over seeds; Welch p):"]
    for arch in sorted({r["arch"] for r in done if r["ok"]}):
        cols = []
        for metric in ("best_val_acc", "test_acc", "ood_acc"):
            a, b = ([r[metric] for r in done if r["ok"] and r["arch"] == arch and r["bf16"] == bf16]
                    for bf16 in (False, True))
            if len(a) > 1 and len(b) > 1 and a[0] is not None:
                cols.append(f"{metric} fp32 {mean_sd(a)} bf16 {mean_sd(b)} "
                            f"p={harness.p_values(a, b)[0].strip()}")
        lines.append(f"  {arch}: " + "; ".join(cols))
    return lines


def main(args) -> int:
    if args.require_cuda:
        harness.require_cuda()
    # --tiny: the smoke preset's regimes, 1 epoch, 32 px crops, 2 images per class
    tiny, size = ({"epochs": 1}, 32) if args.tiny else ({}, None)
    if args.tiny:
        args.preset, args.random_weights = "smoke", True
        args.archs, args.seeds = args.archs or ["resnet18", "squeezenet1_0"], args.seeds or 1
    preset = get_preset(args.preset)
    archs = args.archs or list(preset.archs)
    regimes = [SCRATCH] if args.bf16_check else (args.regimes or list(preset.regimes))
    precisions = [False, True] if args.bf16_check else [args.bf16]
    configs = [preset.trial(a, r, s, "2" if args.tiny else "all", bf16=b, **tiny,
                            **({"train_crop": harness.crop(a, size)} if size else {}))
               for a in archs for r in regimes for s in range(args.seeds or preset.seeds) for b in precisions]
    cpus = len(os.sched_getaffinity(0))
    workers, why = (args.workers, "--workers") if args.workers else default_workers(archs, cpus)
    threads = args.threads or max(1, cpus // workers)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (no GPU)"
    weights = (f"{RANDOM} (timing only; accuracies of transfer regimes are meaningless)"
               if args.random_weights else "ImageNet weights from $TORCH_HOME")
    pretrained = sorted({c.arch for c in configs if c.pretrained})
    if pretrained and not args.random_weights:
        if problems := preflight(pretrained):
            raise UserError("; ".join(map(str, problems)) + " (or pass --random-weights)")
    header = [f"grid: preset {preset.name}, {len(archs)} archs x {len(regimes)} regimes x "
              f"{args.seeds or preset.seeds} seeds" + (" x {fp32, bf16}" if args.bf16_check else "")
              + f" = {len(configs)} trials; epochs {configs[0].epochs}, crop "
              f"{size or 'arch default'} (Inception at least 299)",
              f"device: {device}; {workers} workers x {threads} threads ({why})", f"weights: {weights}"]
    print("\n".join(header), flush=True)
    if args.dry_run:
        print("\n".join(f"  {c.arch:14s} {c.regime:16s} seed {c.seed}" + " bf16" * c.bf16 for c in configs))
        return 0
    scratch = Path(tempfile.mkdtemp(prefix="grid-timing-"))
    t_data = time.perf_counter()
    roots, manifest, data_label = harness.load_data(scratch, args.standin)
    print(f"data: {data_label} ({time.perf_counter() - t_data:.1f} s to prepare)", flush=True)
    configs = sorted(configs, key=lambda c: -expected_gflop(c, manifest.counts()))  # longest first
    if args.limit:
        print(f"--limit: the first {args.limit} of the {len(configs)} trials", flush=True)
        configs = configs[:args.limit]

    def progress(res: dict[str, Any], n: int, total: int) -> None:
        state = f"{res['seconds']:.1f}s" if res["ok"] else "FAILED " + res["error"][:200]
        print(f"[{res['finished_s']:6.1f}s {n}/{total}] {res['arch']} {res['regime']} seed {res['seed']}"
              f"{' bf16' if res['bf16'] else ''}: {state}", flush=True)

    done, wall, not_started = run_pool([c.to_dict() for c in configs], workers, threads, manifest, roots,
                                       str(scratch), args.random_weights, args.deadline_s, progress)
    label = (f"RESULT ({f'{RANDOM}, timing only' if args.random_weights else 'ImageNet'}; {device}; "
             f"data: {data_label})")
    lines = summary(done, wall, len(configs), not_started, label)
    lines += bf16_lines(done) if args.bf16_check else []
    print("\n" + "\n".join(lines), flush=True)
    harness.write_json(args.json, {"header": header, "summary": lines, "trials": done, "wall_s": wall})
    shutil.rmtree(scratch, ignore_errors=True)
    return 1 if any(not r["ok"] for r in done) else 0


if __name__ == "__main__":
    p = harness.parser(__file__, __doc__)
    p.add_argument("--preset", default="paper")
    p.add_argument("--archs", nargs="+", help="default: the preset's")
    p.add_argument("--regimes", nargs="+", help="default: the preset's")
    p.add_argument("--seeds", type=int, help="default: the preset's (paper: 5)")
    p.add_argument("--workers", type=int, default=0, help="trials at once (0: automatic)")
    p.add_argument("--threads", type=int, default=0, help="torch threads per trial (0: cpus/workers)")
    p.add_argument("--random-weights", action="store_true", help="pretrained regimes with random weights")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    p.add_argument("--bf16-check", action="store_true",
                   help="instead of the grid: trials from random weights, fp32 and bf16, per seed")
    p.add_argument("--deadline-s", type=float, help="hand out no new trial after this many seconds")
    p.add_argument("--limit", type=int, help="run only the first (longest) N trials of the plan")
    p.add_argument("--tiny", action="store_true",
                   help="a seconds-long CPU check: smoke preset, 2 archs, 1 seed, 1 epoch, 32 px")
    p.add_argument("--standin", action="store_true", help="generated stand-in data, even with the demo set")
    p.add_argument("--require-cuda", action="store_true",
                   help="exit 2, naming the cause, when CUDA is unusable (so as not to time a CPU)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    p.add_argument("--json", help="write the results here")
    sys.exit(harness.run(main, p))
