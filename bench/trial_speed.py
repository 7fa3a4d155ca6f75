"""How much faster is a project trial than the same trial in the study's own style of loop?

    python bench/trial_speed.py                                  # run B of docs/performance.md
    python bench/trial_speed.py --archs mobilenet_v2 --seeds 5 --epochs 2 --interleave trial
    python bench/trial_speed.py --preset paper --epochs 30 --input-size 224 --regimes linear_probe \\
        --interleave trial --seeds 2                             # docs/linear_probe.md

Both loops run in this one process on the same data, architecture, epochs and seed; only ratios
within one run mean anything (docs/performance.md). Baseline: bench/baseline.py, the study's
tutorial-style loop; project: trainables.train.run_trial with the preset's config (and any --set),
once per BatchNorm mode for a regime that reads one. A regime without SGD epochs (the linear
probe) is timed against the study's feature extraction. --interleave epoch (the default) advances
a cell's trials one epoch at a time in ABBA order, so that a shared machine's load hits both loops
alike; --interleave trial alternates whole trials. Architectures whose ImageNet weights are not
installed run with RANDOM WEIGHTS (timing only).
"""

from __future__ import annotations

import argparse
import itertools
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench import harness  # noqa: E402
from bench.baseline import run_baseline_trial  # noqa: E402
from bench.harness import RANDOM, mean_sd, project_trial  # noqa: E402
from trainables.archs import ARCHS, resolve  # noqa: E402
from trainables.data.demo import prepare_data  # noqa: E402
from trainables.device import peak_memory, reset_peak_memory  # noqa: E402
from trainables.errors import UserError  # noqa: E402
from trainables.presets import get_preset, parse_sets  # noqa: E402
from trainables.regimes import FEATURE_EXTRACT, REGIMES, STUDY_REGIMES, get_regime  # noqa: E402


@dataclass
class Run:
    arch: str
    regime: str
    variant: str  # "baseline", "project", "project bn=frozen", ...
    seed: int
    epochs: int
    random_weights: bool
    seconds: float
    train_seconds: float
    val: float
    test: float
    ood: float | None
    peak_mb: float
    growth_mb: float
    step_seconds: list[float]  # setup + epoch 1, epoch 2, ..., test/OOD evaluation

    def projected(self, epochs: int) -> float:
        """Wall time at `epochs` epochs: the fixed part plus that many measured mean epochs (a
        regime without epochs: as measured)."""
        if self.variant != "baseline" and not get_regime(self.regime).uses_epochs:
            return self.seconds
        return self.seconds - self.train_seconds + epochs * self.train_seconds / self.epochs


def cell(args, arch: str, regime: str, seed: int) -> list[tuple[str, Any, bool]]:
    """(variant, config, random weights) of one cell: the baseline, then the project's."""
    def config(r: str, **over: Any):
        return get_preset(args.preset).trial(arch, r, seed, args.train_size, epochs=args.epochs,
                                             train_crop=harness.crop(arch, args.input_size),
                                             **{**args.extra, **over})

    base = config(regime if get_regime(regime).uses_epochs else FEATURE_EXTRACT)
    modes = ["frozen", "train"] if "bn_mode" in get_regime(regime).reads else [None]
    project = [(f"project bn={m}" if m else "project", config(regime, **({"bn_mode": m} if m else {})))
               for m in modes]
    return [(name, c, c.pretrained and not harness.weights_available(arch))
            for name, c in [("baseline", base), *project]]


class Stepper:
    """A trial in a thread, paused after each epoch, so that trials advance one epoch at a time
    in alternation. Only one computes at any moment; each keeps its own global RNG state."""

    def __init__(self, args, manifest, roots, variant: str, config, random_w: bool) -> None:
        self._go, self._paused = threading.Semaphore(0), threading.Semaphore(0)
        self.result, self.error, self.finished, self.peak_mb, self.growth_mb = {}, None, False, 0.0, 0.0
        self.step_seconds: list[float] = []
        rng = (torch.get_rng_state, torch.set_rng_state, random.getstate, random.setstate,
               np.random.get_state, np.random.set_state)

        def pause(*_: Any) -> None:
            saved = [get() for get in rng[::2]]
            self._paused.release()
            self._go.acquire()
            for put, state in zip(rng[1::2], saved, strict=True):
                put(state)

        def body() -> None:
            try:
                if variant == "baseline":
                    r = run_baseline_trial(config, manifest, roots, args.device, on_epoch=pause,
                                           pretrained=False if random_w else None)
                    row = {"best_val_acc": r.best_val_acc, "test_acc": r.test_acc, "ood_acc": r.ood_acc,
                           "train_seconds": r.train_seconds}
                else:
                    row = project_trial(config, manifest, roots, args.out, random_w, on_epoch=pause)
                self.result = {"val": row["best_val_acc"], "test": row["test_acc"],
                               "ood": row["ood_acc"], "train_seconds": row["train_seconds"]}
            except BaseException as exc:  # re-raised in the main thread by step()
                self.error = exc
            finally:
                self.finished = True
                self._paused.release()

        self._thread = threading.Thread(target=body, daemon=True)

    def step(self, device: torch.device) -> None:
        """Run to the trial's next pause (the first step includes its setup, the last its test
        and OOD evaluation), adding its wall time and peak memory (the trials' own reading)."""
        reset_peak_memory(device)
        start_mb = peak_memory(device)["peak_allocated_mb"]
        t0 = time.perf_counter()
        if self.step_seconds:
            self._go.release()
        else:
            self._thread.start()
        self._paused.acquire()
        self.step_seconds.append(time.perf_counter() - t0)
        self.peak_mb = max(self.peak_mb, peak_memory(device)["peak_allocated_mb"])
        self.growth_mb = max(self.growth_mb, self.peak_mb - start_mb)
        if self.error is not None:
            raise self.error


def run_cell(args, manifest, roots, arch: str, regime: str, seed: int) -> list[Run]:
    """One cell's trials: advanced by epoch in ABBA order within the cell, or (--interleave
    trial) whole trials in turn, their order reversed on odd seeds."""
    variants = cell(args, arch, regime, seed)
    if seed % 2:
        variants.reverse()
    steppers = [Stepper(args, manifest, roots, *v) for v in variants]
    for rnd in itertools.count():
        pending = [st for st in steppers if not st.finished]
        if not pending:
            break
        for st in pending[::-1] if args.interleave == "epoch" and (rnd + seed) % 2 else pending:
            st.step(args.device)
            while args.interleave == "trial" and not st.finished:
                st.step(args.device)
    return [Run(arch, regime, v, seed, c.epochs, rw, sum(st.step_seconds), peak_mb=st.peak_mb,
                growth_mb=st.growth_mb, step_seconds=[round(x, 3) for x in st.step_seconds], **st.result)
            for (v, c, rw), st in zip(variants, steppers, strict=True)]


def _cells(runs: list[Run]):
    """((arch, regime), baseline runs by seed, {project variant: runs by seed}) in table order."""
    by: dict[tuple[str, str], dict[str, dict[int, Run]]] = {}
    for r in runs:
        by.setdefault((r.arch, r.regime), {}).setdefault(r.variant, {})[r.seed] = r
    for key in sorted(by, key=lambda c: (c[0], list(REGIMES).index(c[1]))):
        variants = by[key]
        yield key, variants.get("baseline", {}), {v: variants[v] for v in sorted(variants) if v != "baseline"}


def table(runs: list[Run], project_to: int = 15) -> list[str]:
    """Per cell and project variant, medians over seeds of the per-seed ratios baseline/project:
    whole trial, epoch loop (train + val), and the trial projected to `project_to` epochs."""
    med = statistics.median
    lines = [f"{'arch':13s} {'regime':16s} {'project variant':18s} {'base s':>7s} {'proj s':>7s} "
             f"{'trial':>6s} {'range':>11s} {'epochs':>6s} {f'@{project_to}ep':>6s} {'+MB b/p':>9s}  weights"]
    for (arch, regime), base, projects in _cells(runs):
        for name, proj in projects.items():
            seeds = sorted(set(base) & set(proj))
            if not seeds:
                continue
            ratio = [base[s].seconds / proj[s].seconds for s in seeds]
            loop = [base[s].train_seconds / max(proj[s].train_seconds, 1e-9) for s in seeds]
            ahead = [base[s].projected(project_to) / proj[s].projected(project_to) for s in seeds]
            label = f"{RANDOM} (timing only)" if proj[seeds[0]].random_weights else (
                "ImageNet" if get_regime(regime).pretrained else "random init")
            mem = "/".join(f"{med(x[s].growth_mb for s in seeds):.0f}" for x in (base, proj))
            lines.append(f"{arch:13s} {regime:16s} {name:18s} {med(base[s].seconds for s in seeds):7.1f} "
                         f"{med(proj[s].seconds for s in seeds):7.1f} {med(ratio):5.2f}x "
                         f"{min(ratio):5.2f}-{max(ratio):<5.2f} {med(loop):5.2f}x {med(ahead):5.2f}x "
                         f"{mem:>9s}  {label}")
    return lines


def accuracy_table(runs: list[Run]) -> list[str]:
    """Mean +- sd over seeds per metric, with Welch's t-test and Mann-Whitney U against the
    baseline (two-sided; the loops' seeds are not paired)."""
    lines = [f"{'arch':13s} {'regime':16s} {'variant':18s} {'n':>2s}  {'val mean+-sd':>13s} "
             f"{'test mean+-sd':>13s} {'OOD mean+-sd':>13s}  p(Welch) val/test/OOD   p(MWU) val/test/OOD"]
    for (arch, regime), base, projects in _cells(runs):
        for name, rs in {"baseline": base, **projects}.items():
            cols, ps = [], []
            for metric in ("val", "test", "ood"):
                vals, ref = ([v for r in x.values() if (v := getattr(r, metric)) is not None]
                             for x in (rs, base))
                cols.append(mean_sd(vals))
                ps.append(harness.p_values(ref, vals))
            tests = "" if name == "baseline" else "  " + "   ".join(map("/".join, zip(*ps, strict=True)))
            lines.append(f"{arch:13s} {regime:16s} {name:18s} {len(rs):2d}  {cols[0]:>13s} "
                         f"{cols[1]:>13s} {cols[2]:>13s}{tests}")
    return lines


def main(args) -> int:
    _ = get_preset(args.preset), [resolve(a) for a in args.archs], [get_regime(r) for r in args.regimes]
    if min(args.seeds, args.epochs, args.threads) < 1:
        raise UserError("--seeds, --epochs and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    args.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.out, args.extra = tempfile.mkdtemp(prefix="trial-speed-"), parse_sets(args.set_values)
    roots, manifest = prepare_data()
    cells = [(a, r, s) for a in args.archs for r in args.regimes for s in range(args.seeds)]
    print(f"{len(cells)} cells, interleaved by {args.interleave}; device {args.device}, "
          f"{args.threads} thread(s); demo data ({len(manifest.split_entries('train'))} train "
          f"images), preset {args.preset}, epochs {args.epochs}, crop {args.input_size}", flush=True)
    if not args.no_warmup:  # first-use costs hit neither loop
        run_cell(argparse.Namespace(**{**vars(args), "epochs": 1, "input_size": 32, "train_size": "2"}),
                 manifest, roots, args.archs[0], args.regimes[0], 0)
    runs: list[Run] = []
    t_all = time.perf_counter()
    for arch, regime, seed in cells:
        for r in run_cell(args, manifest, roots, arch, regime, seed):
            runs.append(r)
            print(f"[{time.perf_counter() - t_all:6.0f}s] {r.arch} {r.regime} seed {r.seed} {r.variant}: "
                  f"{r.seconds:.1f}s (epochs {r.train_seconds:.1f}s) val {r.val:.3f} test {r.test:.3f} "
                  f"OOD {r.ood if r.ood is None else round(r.ood, 3)} peak +{r.growth_mb:.0f} MB"
                  + (f" {RANDOM}" if r.random_weights else ""), flush=True)
    speed, acc = table(runs), accuracy_table(runs)
    print("\nspeed-up = baseline / project, median of per-seed ratios (range: min-max): trial = "
          "whole trial; epochs = the epoch loop (train + val); @15ep = the trial projected to the "
          "demo's 15 epochs; +MB = peak memory growth per trial (resident set on the CPU)")
    print("\n".join(speed) + "\n\naccuracy (two-sided p-values against the baseline):\n" + "\n".join(acc))
    harness.write_json(args.json, {
        "argv": sys.argv[1:], "device": str(args.device), "threads": args.threads,
        "runs": [asdict(r) for r in runs], "speed_table": speed, "accuracy_table": acc,
        "total_seconds": round(time.perf_counter() - t_all, 1)})
    shutil.rmtree(args.out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    p = harness.parser(__file__, __doc__)
    p.add_argument("--archs", nargs="+", default=["mobilenet_v2", "resnet18"],
                   help=f"from: {', '.join(ARCHS)} (default mobilenet_v2 resnet18)")
    p.add_argument("--regimes", nargs="+", default=list(STUDY_REGIMES), help="default: the study's")
    p.add_argument("--preset", default="demo", help="the project trials' settings (default demo)")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per cell (default 1)")
    p.add_argument("--epochs", type=int, default=3,
                   help="epochs per trial (default 3: what fits a shared 2-core CPU; @15ep projects)")
    p.add_argument("--input-size", type=int, default=160, help="crop in px (default 160, demo)")
    p.add_argument("--train-size", default="all", help="per class, fraction or 'all' (default all)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as a trial)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", dest="set_values",
                   help="trial settings of the project loop, e.g. --set channels_last=true")
    p.add_argument("--interleave", choices=("epoch", "trial"), default="epoch",
                   help="alternate the loops epoch by epoch (default) or trial by trial")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed tiny trials first")
    p.add_argument("--json", help="write every run and the tables as JSON here")
    sys.exit(harness.run(main, p))
