"""What only a GPU can check, in one short run: the device script of docs/gpu.md.

    python bench/device_check.py --out device_check.json   # a CUDA machine: at most ~7 min
    python bench/device_check.py --dry --out dry.json      # the same code on the CPU, tiny sizes

Sections, in order; each writes its part of the JSON, and one that would overrun --budget-s is
skipped and says so:

  cuda        CUDA asserted (exit 2 with the cause: torch build, driver, CUDA_VISIBLE_DEVICES);
              the GPU, driver, torch/CUDA/cuDNN versions.
  trials      one trial per study architecture with trainables.train.run_trial (what the sweep
              runs) at the paper config for 2 epochs: batch 6, 224/299 px, regime scratch (no
              ImageNet weights needed; the same memory as fine-tuning), on a generated
              230-image pool (the study's size) plus an OOD set. Peak allocated and reserved
              memory, seconds per epoch, against the registry's `peak_memory_gb`.
  syncs       one resnet18 epoch under torch.cuda.set_sync_debug_mode("warn"): synchronising
              calls per training step, grouped by the function that made them.
  concurrent  8 trials of the largest architecture at once on one GPU, each process capped to
              its 1/8 (torch.cuda.set_per_process_memory_fraction): out of memory or not, the
              peak per process, the GPU memory in use; again under CUDA MPS when
              nvidia-cuda-mps-control starts here.
  repeat      resnet18 for 1 epoch twice with deterministic settings and twice with the
              defaults: are the losses bit-identical?

Exit status: 0 every check passed, 1 some check failed (`checks` in the JSON says which), 2 no
usable CUDA (without --dry) or bad options.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import linecache
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from trainables import device as dev  # noqa: E402
from trainables.archs import STUDY_ARCHS, resolve  # noqa: E402
from trainables.config import TrialConfig  # noqa: E402
from trainables.presets import get_preset  # noqa: E402

CONCURRENT = 8
TRIAL_EPOCHS = 2
POOL = {"target": 100, "other": 130}  # the study's pool: 100 target, 130 other images
OOD = {"target": 40, "other": 40}
DRY_POOL = {"target": 10, "other": 10}
DRY_OOD = {"target": 3, "other": 3}
DRY_ARCHS = ("resnet18",)
SECTION_ESTIMATE_S = {"trials": 30.0, "syncs": 25.0, "concurrent": 150.0, "repeat": 60.0}
"""Rough GPU seconds per section (per architecture for `trials`), to skip what cannot finish."""


# ----------------------------------------------------------------------------------- data
def make_folder(root: Path, counts: dict[str, int], size: tuple[int, int], seed: int) -> Path:
    """JPEGs of `size` per class: noise around a class colour (a learnable, photo-sized task)."""
    rng = np.random.default_rng(seed)
    colors = [(200, 60, 50), (50, 80, 190)]
    for ci, (cls, n) in enumerate(sorted(counts.items())):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = np.clip(rng.normal(0, 40, (size[1], size[0], 3)) + colors[ci], 0, 255)
            Image.fromarray(arr.astype(np.uint8), "RGB").save(root / cls / f"{i:04d}.jpg", quality=90)
    return root


def prepare(scratch: Path, dry: bool):
    from trainables.data.demo import prepare_data

    size = (96, 80) if dry else (500, 375)  # hymenoptera photos are about 500 x 375
    pool = make_folder(scratch / "pool", DRY_POOL if dry else POOL, size, seed=0)
    ood = make_folder(scratch / "ood", DRY_OOD if dry else OOD, size, seed=1)
    roots, manifest = prepare_data(str(pool), str(ood), split_seed=0)
    return roots, manifest


def trial_config(arch: str, dry: bool, **changes: Any) -> TrialConfig:
    """The paper preset's trial (scratch regime: no weights to download), shortened; in --dry
    also tiny crops."""
    overrides: dict[str, Any] = {"epochs": TRIAL_EPOCHS}
    if dry:
        overrides.update(epochs=1, train_crop=max(64, resolve(arch).min_input_size))
    overrides.update(changes)
    return get_preset("paper").trial(arch, "scratch", seed=0, **overrides)


def numeric_overrides(deterministic: bool, tf32: bool, cudnn_benchmark: bool) -> dict[str, Any]:
    """The numeric switches as TrialConfig fields where the config has them; otherwise they are
    set globally here (the training loop of this code version does not set them)."""
    names = {f.name for f in dataclasses.fields(TrialConfig)}
    wanted = {"deterministic": deterministic, "tf32": tf32, "cudnn_benchmark": cudnn_benchmark}
    if set(wanted) <= names:
        return wanted
    dev.apply_determinism(deterministic, tf32, cudnn_benchmark)
    return {}


# ---------------------------------------------------------------------------------- trials
def run_one(config: TrialConfig, manifest, roots, out: str, device,
            gpu_share: float | None = None) -> dict[str, Any]:
    """trainables.train.run_trial with this process's peak memory measured around it."""
    from trainables.train import run_trial

    epochs: list[dict[str, Any]] = []
    dev.release_memory(device)
    dev.reset_peak_memory(device)
    t0 = time.perf_counter()
    row = run_trial(config, manifest, roots, out, on_epoch=lambda r, _s: epochs.append(dict(r)),
                    gpu_share=gpu_share)
    seconds = time.perf_counter() - t0
    peak = dev.peak_memory(device)
    dev.release_memory(device)
    return {"arch": config.arch, "regime": config.regime, "epochs": config.epochs,
            "train_crop": config.train_crop, "train_images": row["train_images"],
            "batch_size": config.batch_size, "seconds_per_epoch": [r["seconds"] for r in epochs],
            "train_loss": [r["train_loss"] for r in epochs], "trial_seconds": seconds,
            "row_peak_allocated_mb": row["peak_allocated_mb"],
            "row_peak_reserved_mb": row["peak_reserved_mb"], **peak, "device": row["device"]}


def registry_check(result: dict[str, Any], gpu_memory_gb: float | None) -> dict[str, Any]:
    """The measured peak against the registry's figure, and against the GPU share the `auto`
    plan would give this architecture on this GPU (and on a 24 GB A10G)."""
    from sweep.resources import trials_per_gpu

    registry_gb = resolve(result["arch"]).peak_memory_gb
    measured_gb = (result["peak_reserved_mb"] or result["peak_allocated_mb"]) / 1024
    out = {"registry_peak_memory_gb": registry_gb, "measured_peak_gb": round(measured_gb, 3),
           "registry_covers_measured": measured_gb <= registry_gb}
    for label, memory in (("this_gpu", gpu_memory_gb), ("a10g_24gb", 24.0)):
        if memory:
            n = trials_per_gpu(registry_gb, memory)
            share_gb = memory / n
            out[f"auto_plan_{label}"] = {
                "trials_per_gpu": n, "share_gb": round(share_gb, 2),
                "fits": measured_gb + dev.CUDA_CONTEXT_GB <= share_gb}
    return out


def eval_batch_for(config: TrialConfig, num_classes: int) -> int:
    """What trainables.device.eval_batch_size gives this trial (the engine's forward-only batch
    is compared against it: a larger one can set the trial's peak memory)."""
    from trainables.models import build_model

    return dev.eval_batch_size(build_model(config, num_classes), config.val_crop,
                               config.batch_size)


# ----------------------------------------------------------------------------------- syncs
@functools.cache
def _functions(filename: str) -> list[tuple[int, int, str]]:
    """(first line, last line, qualified name) of every function in a source file."""
    try:
        tree = ast.parse(Path(filename).read_text())
    except (OSError, SyntaxError, ValueError):
        return []
    spans = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    spans.append((child.lineno, child.end_lineno or child.lineno, name))
                visit(child, name + ".")

    visit(tree, "")
    return spans


def where(filename: str, lineno: int) -> str:
    inner = [s for s in _functions(filename) if s[0] <= lineno <= s[1]]
    func = min(inner, key=lambda s: s[1] - s[0])[2] if inner else "<module>"
    try:
        rel = Path(filename).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        rel = Path(filename).name
    return f"{rel}:{func}"


@contextlib.contextmanager
def sync_warnings(device):
    """Collect the warnings of torch.cuda.set_sync_debug_mode("warn") in the block (CUDA only;
    on the CPU the list stays empty)."""
    caught: list[warnings.WarningMessage] = []
    if device.type != "cuda":
        yield caught
        return
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield caught
        finally:
            torch.cuda.set_sync_debug_mode(previous)
            caught.extend(w for w in recorded if "synchroniz" in str(w.message))


def measure_syncs(manifest, roots, out: str, device, dry: bool) -> dict[str, Any]:
    config = trial_config("resnet18", dry, epochs=1)
    with sync_warnings(device) as caught:
        result = run_one(config, manifest, roots, out, device)
    steps = math.ceil(result["train_images"] / config.batch_size)
    by_function: dict[str, int] = {}
    lines: dict[str, int] = {}
    for w in caught:
        by_function[where(w.filename, w.lineno)] = by_function.get(where(w.filename, w.lineno), 0) + 1
        key = f"{Path(w.filename).name}:{w.lineno}: {linecache.getline(w.filename, w.lineno).strip()}"
        lines[key] = lines.get(key, 0) + 1
    return {"measured": device.type == "cuda", "arch": config.arch, "train_steps": steps,
            "syncs_total": len(caught),
            "syncs_per_train_step_upper_bound": len(caught) / steps if steps else None,
            "note": "all synchronising calls of one trial (training, validation, test and OOD "
                    "evaluation) over its training steps; by_function says which are per step",
            "by_function": dict(sorted(by_function.items(), key=lambda kv: -kv[1])),
            "by_line": dict(sorted(lines.items(), key=lambda kv: -kv[1])[:20])}


# ------------------------------------------------------------------------------ concurrent
def worker_main(spec_path: str) -> int:
    """One trial in its own process (the --worker mode of this script), capped to its share."""
    from trainables.data.manifest import DataRoots, Manifest

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(1)
    result: dict[str, Any] = {"rank": spec["rank"], "ok": False, "oom": False}
    try:
        device = dev.select_device(None)
        result["memory_fraction"] = dev.set_memory_fraction(device, spec["share"])
        config = TrialConfig(**spec["config"])
        manifest = Manifest.from_json(Path(spec["manifest"]).read_text())
        roots = DataRoots(spec["data"], spec["ood"])
        result.update(run_one(config, manifest, roots, spec["out"], device, spec["share"]),
                      ok=True)
    except torch.OutOfMemoryError as exc:
        result.update(oom=True, error=str(exc).splitlines()[0])
    except Exception as exc:  # recorded, not raised: the parent reports every process
        result["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


class GpuMemorySampler:
    """GPU memory in use (all processes: total - free) every 0.25 s, from this process."""

    def __init__(self, device) -> None:
        self.device, self.peak_mb = device, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            free, total = torch.cuda.mem_get_info(self.device)
            self.peak_mb = max(self.peak_mb, (total - free) / 2**20)
            self._stop.wait(0.25)

    def __enter__(self) -> GpuMemorySampler:
        if self.device.type == "cuda":
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def run_concurrent(arch: str, n: int, manifest_path: Path, roots, scratch: Path, device, dry: bool,
                   env: dict[str, str] | None = None) -> dict[str, Any]:
    from sweep.resources import fraction_for

    share = fraction_for(n)
    config = trial_config(arch, dry, epochs=1)
    procs = []
    folder = Path(tempfile.mkdtemp(dir=scratch, prefix=f"concurrent-{arch}-"))
    for rank in range(n):
        spec = {"rank": rank, "share": share, "config": config.to_dict(),
                "manifest": str(manifest_path), "data": roots.data, "ood": roots.ood,
                "out": str(folder / f"out{rank}"), "result": str(folder / f"result{rank}.json")}
        spec_path = folder / f"spec{rank}.json"
        spec_path.write_text(json.dumps(spec))
        procs.append(subprocess.Popen([sys.executable, __file__, "--worker", str(spec_path)],
                                      env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                                      stderr=open(folder / f"stderr{rank}.txt", "w")))
    t0 = time.perf_counter()
    with GpuMemorySampler(device) as sampler:
        codes = [p.wait() for p in procs]
    wall = time.perf_counter() - t0
    results = []
    for rank in range(n):
        path = folder / f"result{rank}.json"
        if path.is_file():
            results.append(json.loads(path.read_text()))
        else:
            err = (folder / f"stderr{rank}.txt").read_text()[-2000:]
            results.append({"rank": rank, "ok": False, "oom": "out of memory" in err.lower(),
                            "error": f"worker exited {codes[rank]}: {err.strip()[-500:]}"})
    ok = [r for r in results if r["ok"]]
    return {"arch": arch, "processes": n, "share": share, "epochs": config.epochs,
            "all_ok": len(ok) == n, "oom": sum(bool(r.get("oom")) for r in results),
            "wall_seconds": wall,
            "max_peak_allocated_mb": max((r["peak_allocated_mb"] for r in ok), default=None),
            "max_peak_reserved_mb": max((r["peak_reserved_mb"] for r in ok
                                         if r["peak_reserved_mb"] is not None), default=None),
            "gpu_memory_in_use_peak_mb": sampler.peak_mb if device.type == "cuda" else None,
            "seconds_per_epoch": [r["seconds_per_epoch"] for r in ok],
            "errors": [r["error"] for r in results if not r["ok"]]}


@contextlib.contextmanager
def mps_daemon(scratch: Path):
    """Start the CUDA MPS control daemon for the block; yields its environment for the client
    processes, or a string saying why MPS is not available."""
    control = shutil.which("nvidia-cuda-mps-control")
    if control is None:
        yield "nvidia-cuda-mps-control not found"
        return
    env = {"CUDA_MPS_PIPE_DIRECTORY": str(scratch / "mps-pipe"),
           "CUDA_MPS_LOG_DIRECTORY": str(scratch / "mps-log")}
    for d in env.values():
        Path(d).mkdir(parents=True, exist_ok=True)
    full = {**os.environ, **env}
    start = subprocess.run([control, "-d"], env=full, capture_output=True, text=True, timeout=30)
    if start.returncode != 0:
        yield f"nvidia-cuda-mps-control -d failed: {(start.stderr or start.stdout).strip()}"
        return
    try:
        yield env
    finally:
        subprocess.run([control], input="quit\n", env=full, capture_output=True, text=True,
                       timeout=30)


# ---------------------------------------------------------------------------------- repeat
def measure_repeat(manifest, roots, out: str, device, dry: bool) -> dict[str, Any]:
    """Two runs each: deterministic mode (TF32 and cuDNN benchmarking off), and the paper
    defaults (deterministic mode off too). Records the ops PyTorch warned have no
    deterministic kernel."""
    runs = {}
    for label, deterministic in (("deterministic", True), ("defaults", False)):
        losses: list[list[float]] = []
        ops: set[str] = set()
        for _ in range(2):
            extra = numeric_overrides(deterministic, tf32=False, cudnn_benchmark=False)
            config = trial_config("resnet18", dry, epochs=1, **extra)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = run_one(config, manifest, roots, out, device)
            losses.append(result["train_loss"])
            ops |= {str(w.message).split(" does not have")[0][:120]
                    for w in caught if "deterministic" in str(w.message)}
        runs[label] = {"train_loss": losses, "bit_identical": losses[0] == losses[1],
                       "nondeterministic_ops": sorted(ops)}
    dev.apply_determinism(False, tf32=False, cudnn_benchmark=False)
    return runs


# ------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python bench/device_check.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="device_check.json", help="the JSON to write")
    p.add_argument("--dry", action="store_true", help="CPU, tiny sizes: checks the script itself")
    p.add_argument("--budget-s", type=float, default=420.0,
                   help="skip sections that would end after this many seconds (default 420)")
    p.add_argument("--archs", nargs="+", default=None,
                   help=f"architectures of the trials section (default: the study's; --dry: "
                        f"{' '.join(DRY_ARCHS)})")
    p.add_argument("--concurrent", type=int, default=None,
                   help=f"trials at once on the GPU (default {CONCURRENT}; --dry: 2)")
    p.add_argument("--skip", nargs="+", default=[], choices=("trials", "syncs", "concurrent", "repeat"),
                   help="sections to leave out")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    t_start = time.perf_counter()
    archs = tuple(args.archs or (DRY_ARCHS if args.dry else STUDY_ARCHS))
    n_concurrent = args.concurrent or (2 if args.dry else CONCURRENT)
    from trainables.archs import ARCHS

    unknown = [a for a in archs if a not in ARCHS]
    if unknown or n_concurrent < 1:
        print(f"error: unknown --archs {unknown}" if unknown else "error: --concurrent must be >= 1",
              file=sys.stderr)
        return 2
    out_path = Path(args.out)
    report: dict[str, Any] = {
        "schema": 1, "dry": args.dry,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "budget_s": args.budget_s, "sections": {}, "checks": {}}

    def save() -> None:
        report["elapsed_s"] = round(time.perf_counter() - t_start, 1)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(report, indent=1, default=str) + "\n")

    def fits(estimate: float) -> bool:
        return args.dry or time.perf_counter() - t_start + estimate <= args.budget_s

    # cuda ---------------------------------------------------------------------------
    # the paper's numeric settings, and cuBLAS's workspace setting before its first use (the
    # `repeat` section's deterministic runs need it from the process's start)
    dev.apply_determinism(False, tf32=False, cudnn_benchmark=False)
    facts = dev.CudaFacts.probe()
    report["cuda"] = facts.to_dict()
    if not args.dry and not facts.usable:
        report["checks"]["cuda"] = False
        save()
        print(f"error: CUDA is unusable here: {facts.diagnosis()} [{facts.summary()}]",
              file=sys.stderr)
        return 2
    device = torch.device("cpu") if args.dry else dev.select_device(None, facts)
    report["checks"]["cuda"] = device.type == "cuda" or args.dry
    description = dev.describe_device(device, facts=facts)
    from trainables.provenance import code_version, library_versions

    report["device"] = {"label": description.label, **description.details}
    report["code_version"] = code_version()
    report["library_versions"] = json.loads(library_versions())
    report["numeric_settings_at_start"] = dev.numeric_settings()
    gpu_memory_gb = facts.gpus[0].total_memory / 2**30 if device.type == "cuda" else None
    print(f"device: {description.label} | {facts.summary()}", flush=True)
    save()

    with tempfile.TemporaryDirectory(prefix="device-check-") as tmp:
        scratch = Path(tmp)
        roots, manifest = prepare(scratch, args.dry)
        manifest_path = scratch / "manifest.json"
        manifest_path.write_text(manifest.to_json())
        out = str(scratch / "results")
        report["data"] = {"counts": manifest.counts(), "generated": True}

        # trials ---------------------------------------------------------------------
        if "trials" not in args.skip:
            section: dict[str, Any] = {"trials": [], "skipped": []}
            report["sections"]["trials"] = section
            for arch in archs:
                if not fits(SECTION_ESTIMATE_S["trials"]):
                    section["skipped"].append(arch)
                    continue
                try:
                    config = trial_config(arch, args.dry)
                    result = run_one(config, manifest, roots, out, device)
                    result.update(registry_check(result, gpu_memory_gb), ok=True)
                    result["eval_batch_size_rule"] = eval_batch_for(config, len(manifest.classes))
                except Exception as exc:
                    result = {"arch": arch, "ok": False, "error": "".join(
                        traceback.format_exception_only(type(exc), exc)).strip()}
                section["trials"].append(result)
                print(f"trial {arch}: " + (
                    f"{result['seconds_per_epoch']} s/epoch, peak allocated "
                    f"{result['peak_allocated_mb']:.0f} MiB, reserved {result['peak_reserved_mb']}"
                    if result["ok"] else f"FAILED {result['error']}"), flush=True)
                save()
            done = section["trials"]
            report["checks"]["trials_ok"] = bool(done) and all(r["ok"] for r in done)
            if device.type == "cuda":
                report["checks"]["registry_covers_measured_peaks"] = all(
                    r.get("registry_covers_measured", False) for r in done)
        # syncs ----------------------------------------------------------------------
        if "syncs" not in args.skip:
            if fits(SECTION_ESTIMATE_S["syncs"]):
                syncs = measure_syncs(manifest, roots, out, device, args.dry)
                report["sections"]["syncs"] = syncs
                print(f"syncs: {syncs['syncs_total']} over {syncs['train_steps']} training steps "
                      f"(measured: {syncs['measured']})", flush=True)
            else:
                report["sections"]["syncs"] = {"skipped": "budget"}
            save()
        # concurrent -----------------------------------------------------------------
        if "concurrent" not in args.skip:
            from trainables.archs import resolve

            largest = max(archs, key=lambda a: resolve(a).peak_memory_gb)
            conc: dict[str, Any] = {}
            report["sections"]["concurrent"] = conc
            if fits(SECTION_ESTIMATE_S["concurrent"]):
                dev.release_memory(device)
                conc["no_mps"] = run_concurrent(largest, n_concurrent, manifest_path, roots,
                                                scratch, device, args.dry)
                print(f"concurrent {n_concurrent} x {largest}: all ok {conc['no_mps']['all_ok']}, "
                      f"{conc['no_mps']['oom']} OOM", flush=True)
                report["checks"]["concurrent_no_oom"] = conc["no_mps"]["all_ok"]
            else:
                conc["no_mps"] = {"skipped": "budget"}
            save()
            if device.type != "cuda":
                conc["mps"] = {"skipped": "no GPU"}
            elif not fits(SECTION_ESTIMATE_S["concurrent"]):
                conc["mps"] = {"skipped": "budget"}
            else:
                with mps_daemon(scratch) as env:
                    if isinstance(env, str):
                        conc["mps"] = {"available": False, "reason": env}
                    else:
                        conc["mps"] = {"available": True, **run_concurrent(
                            largest, n_concurrent, manifest_path, roots, scratch, device,
                            args.dry, env)}
                        # errors other than OOM (clients that cannot reach the MPS server in
                        # this container, say) are recorded, but are not a memory failure
                        report["checks"]["concurrent_mps_no_oom"] = conc["mps"]["oom"] == 0
                        conc["mps"]["usable"] = conc["mps"]["all_ok"]
            save()
        # repeat ---------------------------------------------------------------------
        if "repeat" not in args.skip:
            if fits(SECTION_ESTIMATE_S["repeat"]):
                repeat = measure_repeat(manifest, roots, out, device, args.dry)
                report["sections"]["repeat"] = repeat
                report["checks"]["deterministic_repeats_bit_identical"] = \
                    repeat["deterministic"]["bit_identical"]
                print(f"repeat: deterministic identical {repeat['deterministic']['bit_identical']}, "
                      f"defaults identical {repeat['defaults']['bit_identical']}", flush=True)
            else:
                report["sections"]["repeat"] = {"skipped": "budget"}
            save()

    failed = sorted(k for k, v in report["checks"].items() if not v)
    report["all_checks_passed"] = not failed
    save()
    print(f"wrote {out_path} in {report['elapsed_s']:.0f} s; "
          + ("all checks passed" if not failed else f"FAILED: {', '.join(failed)}"), flush=True)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
