"""What the benchmarks share: the command line, data, random weights, timed trials, statistics.

Every benchmark that trains times `trainables.train.run_trial` (the project's trial, what Ray
runs): in this process against a baseline run in the same process (bench/trial_speed.py: ratios,
never absolute targets, as docs/performance.md explains), or packed several at a time in worker
processes (`run_pool`: bench/grid_timing.py, bench/device_check.py). A benchmark without ImageNet
weights says so on every line it prints: RANDOM WEIGHTS are for timing only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import stats

from trainables.archs import resolve
from trainables.config import TrialConfig
from trainables.data.demo import locate, prepare_data
from trainables.data.manifest import DataRoots, Manifest
from trainables.errors import DataError, UserError
from trainables.models import build_model
from trainables.provenance import CudaFacts
from trainables.train import run_trial
from trainables.weights import is_cached

ROOT = Path(__file__).resolve().parent.parent
RANDOM = "RANDOM WEIGHTS"


# ------------------------------------------------------------------------- the command line
def parser(script: str, doc: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"python bench/{Path(script).name}", description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def run(main: Callable[[argparse.Namespace], int], p: argparse.ArgumentParser,
        argv: list[str] | None = None) -> int:
    """`main(args)`; bad input (a UserError) is `error: ...` and exit 2, without a traceback."""
    try:
        return main(p.parse_args(argv))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def write_json(path: str | Path | None, obj: Any) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(obj, indent=1, default=str) + "\n")


def require_cuda(facts: Any = None) -> Any:
    """This machine's CudaFacts; a UserError naming the cause when CUDA is unusable (a benchmark
    that would otherwise time a CPU)."""
    if not (facts := facts or CudaFacts.read()).usable:
        raise UserError(f"CUDA is unusable here: {facts.diagnosis()} [{facts.summary()}]")
    return facts


def error_line(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def crop(arch: str, size: int) -> int:
    """`size`, or the architecture's smallest input where that is larger (Inception: 299)."""
    return max(size, resolve(arch).min_input_size)


# ------------------------------------------------------------------------------ statistics
def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f}+-{sd:.3f}" if values else "n/a"


def p_values(a: list[float], b: list[float]) -> list[str]:
    """Two-sided p of Welch's t-test and of Mann-Whitney U (unpaired seeds), as `0.12`."""
    if len(a) < 2 or len(b) < 2:
        return ["  n/a"] * 2
    if statistics.pstdev(a) == 0 and statistics.pstdev(b) == 0:
        return [f"{float(a[0] == b[0]):5.2f}"] * 2
    return [f"{stats.ttest_ind(a, b, equal_var=False).pvalue:5.2f}",
            f"{stats.mannwhitneyu(a, b, alternative='two-sided').pvalue:5.2f}"]


# ------------------------------------------------------------------------------------ data
def standin_data(root: Path, pool: dict[str, int] | None = None, ood: dict[str, int] | None = None,
                 size: tuple[int, int] = (500, 375)) -> tuple[Any, Any]:
    """(roots, manifest) of generated JPEGs shaped like the embedded demo (by default its counts:
    100 + 130 pooled images split 60/20/20, 94 + 74 OOD; its typical 500 x 375 photos, every third
    one upright): noise around a colour per class, a learnable task. For timing where the demo set
    is absent, and for the device check."""
    rng = np.random.default_rng(0)
    for folder, counts in (("pool", pool or {"ants": 100, "bees": 130}),
                           ("ood", ood or {"ants": 94, "bees": 74})):
        for ci, (cls, n) in enumerate(sorted(counts.items())):
            (root / folder / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                w, h = size if i % 3 else size[::-1]
                arr = rng.normal(0, 40, (h, w, 3)) + ((200, 60, 50), (50, 80, 190))[ci % 2]
                Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(
                    root / folder / cls / f"{i:04d}.jpg", quality=90)
    return prepare_data(str(root / "pool"), str(root / "ood"), split_seed=0)


def load_data(scratch: Path, standin: bool = False) -> tuple[Any, Any, str]:
    """(roots, manifest, label): the embedded demo set, or a labelled stand-in where it is absent."""
    try:
        if standin:
            raise DataError("stand-in requested")
        locate(allow_download=False)
    except DataError:
        return (*standin_data(scratch / "standin"),
                "GENERATED STAND-IN (embedded demo data not found here; same counts and sizes)")
    return (*prepare_data(), "embedded demo (ants/bees)")


# --------------------------------------------------------------------------------- weights
def weights_available(arch: str) -> bool:
    return is_cached(resolve(arch))


@contextlib.contextmanager
def random_weights(enabled: bool = True) -> Iterator[None]:
    """Trials built with random weights inside the block (architectures whose ImageNet weights
    are not installed: timing only, and labelled RANDOM WEIGHTS). Every module that imported
    `build_model` holds this one function, so its default `pretrained` is what changes."""
    saved = build_model.__defaults__
    if enabled:
        build_model.__defaults__ = (False,)
    try:
        yield
    finally:
        build_model.__defaults__ = saved


# ---------------------------------------------------------------------------------- trials
def project_trial(config: Any, manifest: Any, roots: Any, out_root: str | Path, random_w: bool = False,
                  on_epoch: Callable[..., None] | None = None, gpu_share: float | None = None
                  ) -> dict[str, Any]:
    """run_trial in a fresh results folder (removed after): its row, with its wall seconds
    (`seconds`, setup included) and each epoch's seconds and training loss (`epoch_seconds`,
    `epoch_train_loss`)."""
    epochs: list[dict[str, Any]] = []

    def epoch_done(row: dict[str, Any], state: Any) -> None:
        epochs.append(dict(row))
        if on_epoch is not None:
            on_epoch(row, state)

    out, t0 = tempfile.mkdtemp(dir=out_root, prefix="trial-"), time.perf_counter()
    try:
        with random_weights(random_w):
            row = run_trial(config, manifest, roots, out, on_epoch=epoch_done, gpu_share=gpu_share)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {**row, "seconds": time.perf_counter() - t0, "epoch_seconds": [e["seconds"] for e in epochs],
            "epoch_train_loss": [e["train_loss"] for e in epochs]}


def _start_worker(threads: int, env: dict[str, str]) -> None:
    os.environ.update(env)  # before CUDA starts in this process (the MPS pipe, for one)
    torch.set_num_threads(threads)


def _pool_trial(item: dict[str, Any], manifest_json: str, roots: tuple[str, str | None], out: str,
                random_w: bool, share: float | None) -> dict[str, Any]:
    """One trial in a pool process: its timing and outcome, or its error (not raised: one failed
    trial must not stop the timing)."""
    config = TrialConfig(**item)
    base = {"arch": config.arch, "regime": config.regime, "seed": config.seed, "bf16": config.bf16,
            "worker": os.getpid(), "ok": False}
    try:
        row = project_trial(config, Manifest.from_json(manifest_json), DataRoots(*roots), out,
                            random_w, gpu_share=share)
    except Exception as exc:
        return {**base, "oom": isinstance(exc, torch.OutOfMemoryError), "error": error_line(exc)}
    return {**base, "ok": True, **{k: row[k] for k in (
        "seconds", "train_seconds", "peak_allocated_mb", "peak_reserved_mb", "epoch_seconds",
        "best_val_acc", "test_acc", "ood_acc")}}


def run_pool(configs: list[dict[str, Any]], workers: int, threads: int, manifest: Any, roots: Any,
             out: str, random_w: bool = False, deadline_s: float | None = None,
             on_result: Callable[[dict[str, Any], int, int], None] | None = None,
             env: dict[str, str] | None = None, share: float | None = None
             ) -> tuple[list[dict[str, Any]], float, int]:
    """Run trial configs (TrialConfig.to_dict()) in order on `workers` spawned processes with
    `threads` torch threads and `env` each, capped to `share` of the GPU when given; none is
    started after `deadline_s`. Returns (results, wall seconds, trials never started)."""


    t0, done = time.perf_counter(), []
    with ProcessPoolExecutor(workers, mp.get_context("spawn"), _start_worker, (threads, env or {})) as pool:
        args = (manifest.to_json(), (roots.data, roots.ood), out, random_w, share)
        futures = [pool.submit(_pool_trial, c, *args) for c in configs]
        for future in as_completed(futures):
            if future.cancelled():
                continue
            try:
                res = future.result()
            except Exception as exc:  # the process died (BrokenProcessPool): no result of its own
                res = {**{k: configs[futures.index(future)][k] for k in ("arch", "regime", "seed", "bf16")},
                       "ok": False, "oom": False, "error": f"{type(exc).__name__}: {exc}"}
            done.append({**res, "finished_s": time.perf_counter() - t0})
            if on_result:
                on_result(done[-1], len(done), len(configs))
            if deadline_s is not None and time.perf_counter() - t0 >= deadline_s:
                for f in futures:
                    f.cancel()  # those not handed to a process yet
    return done, time.perf_counter() - t0, sum(f.cancelled() for f in futures)
