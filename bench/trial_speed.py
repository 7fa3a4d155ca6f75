"""How much faster is a project trial than the same trial in the study's own style of loop?

    python bench/trial_speed.py                                  # run B of docs/performance.md
    python bench/trial_speed.py --archs mobilenet_v2 --regimes finetune --seeds 5 --epochs 15
    python bench/trial_speed.py --ray                            # also: Ray's overhead per sweep

Both loops run in this one process, interleaved, on the same embedded demo data, architecture,
epochs and seed. By default the interleaving is per epoch: each trial runs in its own thread,
paused after every epoch, and the trials of a cell advance one epoch at a time in ABBA order
(B P P B B P ...), so that the machine's changing load (this CPU is shared) hits both loops
alike; only one trial computes at any moment, and each keeps its own RNG state across pauses.
--interleave trial alternates whole trials instead.

  baseline      bench/baseline.py: ImageFolder-style dataset decoding with PIL every epoch,
                transforms v1, DataLoader batch 6, the study's train/val loop (feature
                extraction: the whole model in train mode, BatchNorm statistics move)
  project       trainables.train.run_trial with the demo preset's config (and any --set); for
                feature extraction twice: bn_mode "frozen" (cached-feature path) and "train"
                (the study's BatchNorm behaviour, faithful)

It prints each trial's wall time (data loading, model build, training, test and OOD evaluation
included), the speed-up baseline/project per cell, the peak memory per trial, and the accuracy
comparison over seeds (Welch's t-test and Mann-Whitney U per metric). Architectures whose
ImageNet weights are not installed run their transfer regimes with RANDOM WEIGHTS, for timing
only; the output labels them.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.baseline import run_baseline_trial  # noqa: E402
from trainables import train as train_mod  # noqa: E402
from trainables.archs import ARCHS, resolve  # noqa: E402
from trainables.data.demo import prepare_data  # noqa: E402
from trainables.errors import UserError  # noqa: E402
from trainables.models import build_model  # noqa: E402
from trainables.presets import get_preset  # noqa: E402
from trainables.regimes import REGIMES, STUDY_REGIMES  # noqa: E402

LOOPS = ("baseline", "project")


# ----------------------------------------------------------------------------- measurement
class PeakMemory:
    """Peak memory of the block: CUDA allocator peak on GPU; on CPU the process's resident set
    sampled every 10 ms, reported as growth over the block's start (a lower bound when an earlier
    trial left freed memory in the allocator) and as the absolute peak."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.start_mb = self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak_mb = max(self.peak_mb, self.rss_mb())

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_mb = torch.cuda.memory_allocated(self.device) / 2**20
        else:
            self.start_mb = self.peak_mb = self.rss_mb()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._stop.set()
            assert self._thread is not None
            self._thread.join()
            self.peak_mb = max(self.peak_mb, self.rss_mb())

    @property
    def growth_mb(self) -> float:
        return self.peak_mb - self.start_mb


@contextlib.contextmanager
def random_weights_in_run_trial() -> Iterator[None]:
    """run_trial building its model with random weights (for architectures whose ImageNet
    weights are not installed): timing only, every such row is labelled RANDOM WEIGHTS. The
    regimes' fit functions (trainables/engine.py, trainables/linear_probe.py) build the model."""
    from trainables import engine as fitting
    from trainables import linear_probe

    builders = (fitting, linear_probe)
    originals = [m.build_model for m in builders]
    for m in builders:
        m.build_model = functools.partial(build_model, pretrained=False)
    try:
        yield
    finally:
        for m, original in zip(builders, originals, strict=True):
            m.build_model = original


def weights_available(arch: str) -> bool:
    from trainables.weights import is_cached

    return is_cached(resolve(arch))


def _rng_state() -> tuple[Any, ...]:
    import random

    import numpy as np

    return torch.get_rng_state(), random.getstate(), np.random.get_state()


def _set_rng_state(state: tuple[Any, ...]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(state[0])
    random.setstate(state[1])
    np.random.set_state(state[2])


class Stepper:
    """Runs a trial function in a thread and pauses it after each epoch, so that trials can be
    advanced one epoch at a time in alternation. Only one trial computes at any moment; each
    keeps its own global-RNG state across its pauses."""

    def __init__(self, start: Callable[[Callable[..., None]], Any]) -> None:
        self._go = threading.Semaphore(0)
        self._paused = threading.Semaphore(0)
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished = False
        self.seconds = 0.0
        self.step_seconds: list[float] = []
        self.growth_mb = 0.0

        def hook(*_: Any) -> None:
            saved = _rng_state()
            self._paused.release()
            self._go.acquire()
            _set_rng_state(saved)

        def body() -> None:
            try:
                self.result = start(hook)
            except BaseException as exc:  # re-raised in the main thread by step()
                self.error = exc
            finally:
                self.finished = True
                self._paused.release()

        self._thread = threading.Thread(target=body, daemon=True)
        self._started = False

    def step(self, device: torch.device) -> None:
        """Run until the trial's next epoch ends (the first step includes its setup, the last
        one its test/OOD evaluation); adds the wall time and tracks peak memory growth."""
        with PeakMemory(device) as mem:
            t0 = time.perf_counter()
            if not self._started:
                self._started = True
                self._thread.start()
            else:
                self._go.release()
            self._paused.acquire()
            self.step_seconds.append(time.perf_counter() - t0)
            self.seconds += self.step_seconds[-1]
        self.growth_mb = max(self.growth_mb, mem.growth_mb)
        if self.error is not None:
            raise self.error


# ----------------------------------------------------------------------------- one trial
@dataclass
class Run:
    arch: str
    regime: str
    variant: str  # "baseline", "project", "project bn=frozen", "project bn=train"
    seed: int
    seconds: float
    train_seconds: float
    val: float
    test: float
    ood: float | None
    best_epoch: int
    peak_mb: float
    growth_mb: float
    random_weights: bool
    epochs: int = 0
    step_seconds: list[float] = field(default_factory=list)
    """--interleave epoch: wall seconds of each step (setup + epoch 1, epoch 2, ...,
    test/OOD evaluation and writing)."""

    def projected(self, epochs: int) -> float:
        """This trial's wall time at `epochs` epochs: its fixed part (data, model, test/OOD
        evaluation) plus `epochs` times its measured mean epoch (training and validation)."""
        return self.seconds - self.train_seconds + epochs * self.train_seconds / self.epochs

    @property
    def loop(self) -> str:
        return self.variant.split()[0]


@dataclass
class Options:
    archs: list[str]
    regimes: list[str]
    seeds: int
    epochs: int
    input_size: int
    train_size: str
    bn_modes: list[str]
    threads: int
    workers: int
    device: torch.device
    out: Path
    extra: dict[str, Any] = field(default_factory=dict)


def variants(regime: str, bn_modes: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(variant name, config overrides) of the project loop for a regime."""
    if regime != "feature_extract":
        return [("project", {})]
    return [(f"project bn={m}", {"bn_mode": m}) for m in bn_modes]


def _config(opts: Options, arch: str, regime: str, seed: int, overrides: dict[str, Any]):
    preset = get_preset("demo")
    return preset.trial(arch, regime, seed, opts.train_size, epochs=opts.epochs,
                        train_crop=max(opts.input_size, resolve(arch).min_input_size),
                        **{**opts.extra, **overrides})


def trial_function(opts: Options, manifest, roots, config, variant: str, random_w: bool
                   ) -> Callable[[Callable[..., None] | None], dict[str, Any]]:
    """start(on_epoch) -> the trial's outcome, for the baseline or the project loop."""

    def start(on_epoch: Callable[..., None] | None = None) -> dict[str, Any]:
        if variant == "baseline":
            res = run_baseline_trial(config, manifest, roots, opts.device,
                                     pretrained=False if random_w else None,
                                     num_workers=opts.workers, on_epoch=on_epoch)
            return {"val": res.best_val_acc, "test": res.test_acc, "ood": res.ood_acc,
                    "train_seconds": res.train_seconds, "best_epoch": res.best_epoch}
        out = tempfile.mkdtemp(dir=opts.out, prefix="trial-")
        ctx = random_weights_in_run_trial() if random_w else contextlib.nullcontext()
        with ctx:
            row = train_mod.run_trial(config, manifest, roots, out, on_epoch=on_epoch)
        shutil.rmtree(out, ignore_errors=True)
        return {"val": row["best_val_acc"], "test": row["test_acc"], "ood": row["ood_acc"],
                "train_seconds": row["train_seconds"], "best_epoch": row["best_epoch"]}

    return start


def _run(arch: str, regime: str, variant: str, seed: int, seconds: float, outcome: dict[str, Any],
         peak_mb: float, growth_mb: float, random_w: bool, epochs: int) -> Run:
    return Run(arch, regime, variant, seed, seconds, outcome["train_seconds"], outcome["val"],
               outcome["test"], outcome["ood"], outcome["best_epoch"], peak_mb, growth_mb,
               random_w, epochs)


def run_one(opts: Options, manifest, roots, arch: str, regime: str, seed: int, variant: str,
            overrides: dict[str, Any]) -> Run:
    """One whole trial (the --interleave trial mode)."""
    config = _config(opts, arch, regime, seed, overrides)
    random_w = config.pretrained and not weights_available(arch)
    start = trial_function(opts, manifest, roots, config, variant, random_w)
    with PeakMemory(opts.device) as mem:
        t0 = time.perf_counter()
        outcome = start(None)
        seconds = time.perf_counter() - t0
    return _run(arch, regime, variant, seed, seconds, outcome, mem.peak_mb, mem.growth_mb,
                random_w, config.epochs)


def _isolated(opts: Options, manifest_json: str, roots: tuple[str, str | None], arch: str,
              regime: str, seed: int, variant: str, overrides: dict[str, Any]) -> tuple[Run, float]:
    """run_one in a fresh process; also returns that process's peak resident memory (MB)."""
    import resource

    from trainables.data.manifest import DataRoots, Manifest

    torch.set_num_threads(opts.threads)
    run = run_one(opts, Manifest.from_json(manifest_json), DataRoots(*roots), arch, regime, seed,
                  variant, overrides)
    return run, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_isolated(opts: Options, manifest, roots, arch: str, regime: str, seed: int, variant: str,
                 overrides: dict[str, Any]) -> Run:
    """One trial in its own spawned process (--isolate): its peak_mb is that process's peak
    resident memory (Python, torch and the data included), exact per trial on CPU."""
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(1) as pool:
        run, peak = pool.apply(_isolated, (opts, manifest.to_json(), (roots.data, roots.ood), arch,
                                           regime, seed, variant, overrides))
    if opts.device.type != "cuda":
        run.peak_mb = peak
    return run


def run_cell_by_epoch(opts: Options, manifest, roots, arch: str, regime: str, seed: int,
                      cell: list[tuple[str, dict[str, Any]]]) -> list[Run]:
    """All loops of one (arch, regime, seed) cell, advanced one epoch at a time in ABBA order."""
    steppers, meta = [], []
    for variant, overrides in cell:
        config = _config(opts, arch, regime, seed, overrides)
        random_w = config.pretrained and not weights_available(arch)
        start = trial_function(opts, manifest, roots, config, variant, random_w)
        steppers.append(Stepper(start))
        meta.append((variant, random_w, config.epochs))
    for step in range(opts.epochs + 1):  # epochs, then the test/OOD evaluation
        order = list(range(len(steppers)))
        if (step + seed) % 2:
            order.reverse()
        for i in order:
            if not steppers[i].finished:
                steppers[i].step(opts.device)
    runs = []
    for st, (variant, random_w, epochs) in zip(steppers, meta, strict=True):
        run = _run(arch, regime, variant, seed, st.seconds, st.result, float("nan"), st.growth_mb,
                   random_w, epochs)
        run.step_seconds = [round(x, 3) for x in st.step_seconds]
        runs.append(run)
    return runs


def schedule(opts: Options) -> list[tuple[str, str, int, str, dict[str, Any]]]:
    """All runs, interleaved: per (arch, regime, seed) the baseline and the project variants, in
    ABBA order across seeds (A B B A A B ...), so that drift in the machine's load cancels."""
    plan = []
    for arch in opts.archs:
        for regime in opts.regimes:
            for seed in range(opts.seeds):
                cell = [("baseline", {})] + variants(regime, opts.bn_modes)
                if seed % 2:
                    cell.reverse()
                plan += [(arch, regime, seed, name, over) for name, over in cell]
    return plan


# ----------------------------------------------------------------------------- statistics
def _fmt_p(p: float) -> str:
    return "  n/a" if p is None or math.isnan(p) else f"{p:5.2f}"


def compare(a: list[float], b: list[float]) -> tuple[float, float]:
    """(Welch t-test p, Mann-Whitney U p), two-sided; identical samples -> (1, 1)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return float("nan"), float("nan")
    if statistics.pstdev(a) == 0 and statistics.pstdev(b) == 0:
        return (1.0, 1.0) if a[0] == b[0] else (0.0, 0.0)
    t = stats.ttest_ind(a, b, equal_var=False).pvalue
    u = stats.mannwhitneyu(a, b, alternative="two-sided").pvalue
    return float(t), float(u)


def table(runs: list[Run], project_to: int = 15) -> list[str]:
    """The speed table, per (arch, regime, project variant), medians over seeds of the per-seed
    ratios baseline/project: whole trial, epoch loop only (train + val), and the whole trial
    projected to `project_to` epochs (fixed part + that many measured mean epochs)."""
    lines = [f"{'arch':13s} {'regime':16s} {'project variant':18s} {'base s':>7s} {'proj s':>7s} "
             f"{'trial':>6s} {'range':>11s} {'epochs':>6s} {f'@{project_to}ep':>6s} "
             f"{'+MB b/p':>9s}  weights"]
    cells = sorted({(r.arch, r.regime) for r in runs}, key=lambda c: (c[0], REGIMES.index(c[1])))
    for arch, regime in cells:
        base = {r.seed: r for r in runs if (r.arch, r.regime, r.variant) == (arch, regime, "baseline")}
        for name in sorted({r.variant for r in runs if (r.arch, r.regime) == (arch, regime)} - {"baseline"}):
            proj = {r.seed: r for r in runs if (r.arch, r.regime, r.variant) == (arch, regime, name)}
            seeds = sorted(set(base) & set(proj))
            if not seeds:
                continue
            ratios = [base[s].seconds / proj[s].seconds for s in seeds]
            loop = [base[s].train_seconds / proj[s].train_seconds for s in seeds]
            ahead = [base[s].projected(project_to) / proj[s].projected(project_to) for s in seeds]
            b_s = statistics.median(base[s].seconds for s in seeds)
            p_s = statistics.median(proj[s].seconds for s in seeds)
            label = "RANDOM WEIGHTS (timing only)" if proj[seeds[0]].random_weights else (
                "random init (scratch)" if regime == "scratch" else "ImageNet")
            mem = (f"{statistics.median(base[s].growth_mb for s in seeds):.0f}/"
                   f"{statistics.median(proj[s].growth_mb for s in seeds):.0f}")
            lines.append(f"{arch:13s} {regime:16s} {name:18s} {b_s:7.1f} {p_s:7.1f} "
                         f"{statistics.median(ratios):5.2f}x {min(ratios):5.2f}-{max(ratios):<5.2f} "
                         f"{statistics.median(loop):5.2f}x {statistics.median(ahead):5.2f}x "
                         f"{mem:>9s}  {label}")
    return lines


def accuracy_table(runs: list[Run]) -> list[str]:
    lines = [f"{'arch':13s} {'regime':16s} {'variant':18s} {'n':>2s}  "
             f"{'val mean+-sd':>13s} {'test mean+-sd':>13s} {'OOD mean+-sd':>13s}  "
             "p(Welch) val/test/OOD   p(MWU) val/test/OOD"]
    cells = sorted({(r.arch, r.regime) for r in runs}, key=lambda c: (c[0], REGIMES.index(c[1])))
    for arch, regime in cells:
        names = sorted({r.variant for r in runs if (r.arch, r.regime) == (arch, regime)},
                       key=lambda v: (v != "baseline", v))
        base = [r for r in runs if (r.arch, r.regime, r.variant) == (arch, regime, "baseline")]
        for name in names:
            rs = [r for r in runs if (r.arch, r.regime, r.variant) == (arch, regime, name)]
            cols, welch, mwu = [], [], []
            for metric in ("val", "test", "ood"):
                vals = [getattr(r, metric) for r in rs if getattr(r, metric) is not None]
                ref = [getattr(r, metric) for r in base if getattr(r, metric) is not None]
                sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
                cols.append(f"{statistics.mean(vals):.3f}+-{sd:.3f}" if vals else "n/a")
                if name != "baseline":
                    t, u = compare(ref, vals)
                    welch.append(_fmt_p(t))
                    mwu.append(_fmt_p(u))
            tests = "" if name == "baseline" else f"  {'/'.join(welch)}   {'/'.join(mwu)}"
            lines.append(f"{arch:13s} {regime:16s} {name:18s} {len(rs):2d}  "
                         f"{cols[0]:>13s} {cols[1]:>13s} {cols[2]:>13s}{tests}")
    return lines


# ----------------------------------------------------------------------------- Ray overhead
def ray_overhead(opts: Options, seeds: int, preset: str = "smoke") -> dict[str, Any]:
    """A small `python -m sweep.run` in a subprocess, one trial at a time (each trial takes all
    CPUs): its wall time against the sum of its trials' own total_seconds."""
    if not (ROOT / "sweep" / "run.py").is_file():
        return {"skipped": "sweep/run.py does not exist yet"}
    storage = tempfile.mkdtemp(dir=opts.out, prefix="ray-")
    cpus = len(os.sched_getaffinity(0))
    cmd = [sys.executable, "-m", "sweep.run", "--preset", preset, "--archs", "mobilenet_v2",
           "--seeds", str(seeds), "--storage", storage, "--name", "overhead",
           "--cpus-per-trial", str(cpus), "--keep-models", "none", "--gpus-per-trial", "0"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"command": " ".join(cmd[1:]), "error": (proc.stdout + proc.stderr)[-2000:]}
    from trainables.results.tables import read_table

    trials = read_table(os.path.join(storage, "overhead", "results"), "trials").to_pylist()
    trial_sum = sum(t["total_seconds"] for t in trials)
    shutil.rmtree(storage, ignore_errors=True)
    return {"command": "python " + " ".join(cmd[1:]), "trials": len(trials),
            "trial_total_s": [round(t["total_seconds"], 1) for t in trials],
            "trial_epochs_s": [round(t["train_seconds"], 1) for t in trials],
            "wall_s": round(wall, 1), "sum_trial_s": round(trial_sum, 1),
            "overhead_s": round(wall - trial_sum, 1),
            "overhead_per_trial_s": round((wall - trial_sum) / max(len(trials), 1), 1)}


# ----------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python bench/trial_speed.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=["mobilenet_v2", "resnet18"],
                   help=f"from: {', '.join(ARCHS)} (default mobilenet_v2 resnet18)")
    p.add_argument("--regimes", nargs="+", default=list(STUDY_REGIMES), help="default: the study's three")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per cell (default 1)")
    p.add_argument("--epochs", type=int, default=3,
                   help="epochs per trial (default 3: what fits a shared 2-core CPU; the demo "
                        "preset trains 15, and the @15ep column projects to it)")
    p.add_argument("--input-size", type=int, default=160, help="crop in px (default 160, demo)")
    p.add_argument("--train-size", default="all",
                   help="training images per class, fraction or 'all' (default all: 138 images)")
    p.add_argument("--bn-modes", nargs="+", default=["frozen", "train"],
                   help="project variants for feature_extract (default: frozen train)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads for both loops (default 1, as a sweep trial gets)")
    p.add_argument("--baseline-workers", type=int, default=0,
                   help="DataLoader worker processes of the baseline (default 0: in-process)")
    p.add_argument("--channels-last", action="store_true", help="project trials in channels_last")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", dest="set_values",
                   help="trial settings for the project loop, e.g. --set backend=tensor")
    p.add_argument("--interleave", choices=("epoch", "trial"), default="epoch",
                   help="alternate the loops epoch by epoch (default) or trial by trial")
    p.add_argument("--isolate", action="store_true",
                   help="each trial in its own process, for exact per-trial peak memory "
                        "(timings then include no interleaving within a trial)")
    p.add_argument("--no-warmup", action="store_true",
                   help="skip the untimed tiny trial of each loop that runs first")
    p.add_argument("--ray", action="store_true", help="also measure Ray's overhead (sweep.run)")
    p.add_argument("--ray-only", action="store_true", help="only measure Ray's overhead")
    p.add_argument("--ray-seeds", type=int, default=2, help="seeds of the Ray sweep (smoke preset)")
    p.add_argument("--json", default=None, help="write every run and the tables as JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        for a in args.archs:
            resolve(a)
        bad = [r for r in args.regimes if r not in REGIMES]
        if bad:
            raise UserError(f"--regimes {bad}: choose from {', '.join(REGIMES)}")
        if args.seeds < 1 or args.epochs < 1 or args.threads < 1:
            raise UserError("--seeds, --epochs and --threads must be at least 1")
        torch.set_num_threads(args.threads)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        out = Path(tempfile.mkdtemp(prefix="trial-speed-"))
        from trainables.cli_options import parse_sets

        extra = {**({"channels_last": True} if args.channels_last else {}),
                 **parse_sets(args.set_values)}
        opts = Options(args.archs, args.regimes, args.seeds, args.epochs, args.input_size,
                       args.train_size, args.bn_modes, args.threads, args.baseline_workers,
                       device, out, extra)
        result: dict[str, Any] = {"argv": sys.argv[1:], "device": str(device),
                                  "threads": args.threads, "cpus": os.cpu_count()}
        runs: list[Run] = []
        if not args.ray_only:
            roots, manifest = prepare_data()
            plan = schedule(opts)
            print(f"{len(plan)} trials, interleaved; device {device}, {args.threads} thread(s); "
                  f"demo data ({len(manifest.split_entries('train'))} train images), "
                  f"epochs {args.epochs}, crop {args.input_size}, train size {args.train_size}",
                  flush=True)
            if not args.no_warmup and not args.isolate:  # first-use costs hit neither loop
                tiny = Options(args.archs[:1], ["feature_extract"], 1, 1, 32, "2", ["frozen"],
                               args.threads, 0, device, out)
                for arch, regime, seed, name, over in schedule(tiny):
                    run_one(tiny, manifest, roots, arch, regime, seed, name, over)
            t_all = time.perf_counter()

            def show(run: Run) -> None:
                print(f"[{len(runs)}/{len(plan)} {time.perf_counter() - t_all:6.0f}s] {run.arch} "
                      f"{run.regime} seed {run.seed} {run.variant}: {run.seconds:.1f}s (epochs "
                      f"{run.train_seconds:.1f}s) val {run.val:.3f} test {run.test:.3f} OOD "
                      f"{run.ood:.3f} peak +{run.growth_mb:.0f} MB"
                      + (" RANDOM WEIGHTS" if run.random_weights else ""), flush=True)

            if args.isolate:
                for arch, regime, seed, name, over in plan:
                    runs.append(run_isolated(opts, manifest, roots, arch, regime, seed, name, over))
                    show(runs[-1])
                print("\npeak resident memory of each trial's own process (MB; Python, torch and "
                      "data included):")
                for run in runs:
                    print(f"  {run.arch:13s} {run.regime:16s} {run.variant:18s} seed {run.seed}: "
                          f"{run.peak_mb:.0f}")
            elif args.interleave == "trial":
                for arch, regime, seed, name, over in plan:
                    runs.append(run_one(opts, manifest, roots, arch, regime, seed, name, over))
                    show(runs[-1])
            else:
                cells: dict[tuple[str, str, int], list[tuple[str, dict[str, Any]]]] = {}
                for arch, regime, seed, name, over in plan:
                    cells.setdefault((arch, regime, seed), []).append((name, over))
                for (arch, regime, seed), cell in cells.items():
                    for run in run_cell_by_epoch(opts, manifest, roots, arch, regime, seed, cell):
                        runs.append(run)
                        show(run)
            speed, acc = table(runs), accuracy_table(runs)
            print("\nspeed-up = baseline / project, median of per-seed ratios (range: min-max): "
                  "trial = whole trial; epochs = the epoch loop (train + val); @15ep = the trial "
                  "projected to the demo's 15 epochs; +MB = peak resident-memory growth per trial")
            print("\n".join(speed))
            print("\naccuracy (two-sided p-values against the baseline):")
            print("\n".join(acc))
            result.update(runs=[asdict(r) for r in runs], speed_table=speed, accuracy_table=acc,
                          total_seconds=round(time.perf_counter() - t_all, 1))
        if args.ray or args.ray_only:
            ray = ray_overhead(opts, args.ray_seeds)
            print("\nRay overhead:", json.dumps(ray, indent=1))
            result["ray"] = ray
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
        shutil.rmtree(out, ignore_errors=True)
        return 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
