"""What only a GPU can check, in one short run: the device script of docs/gpu.md.

    python bench/device_check.py --out device_check.json   # a CUDA machine: at most ~7 min
    python bench/device_check.py --dry --out dry.json      # the same code on the CPU, tiny sizes

Sections (docs/gpu.md), each skipped and marked so when it would overrun --budget-s: cuda (exit 2
with the cause when unusable), trials (one paper-config trial per study architecture: peak
memory and seconds per epoch against the architecture table and the `auto` plan), syncs (per
training step, by function), concurrent (8 capped trials of the largest architecture at once,
without and with CUDA MPS), repeat (bit-identical losses in deterministic mode?). Exit status: 0
every check passed, 1 some failed (`checks` in the JSON), 2 no usable CUDA or bad options.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench import harness  # noqa: E402
from bench.harness import ROOT, project_trial, run_pool, write_json  # noqa: E402
from sweep.resources import fraction_for, trials_per_gpu  # noqa: E402
from trainables import device as dev  # noqa: E402
from trainables.archs import STUDY_ARCHS, resolve  # noqa: E402
from trainables.errors import UserError  # noqa: E402
from trainables.presets import get_preset  # noqa: E402
from trainables.provenance import CudaFacts, code_version, library_versions  # noqa: E402
from trainables.regimes import SCRATCH  # noqa: E402

DATA = {False: ({"target": 100, "other": 130}, {"target": 40, "other": 40}, (500, 375)),
        True: ({"target": 10, "other": 10}, {"target": 3, "other": 3}, (96, 80))}
"""--dry or not: the pool (the study's 100 target + 130 other images), OOD, photo size."""
SECTION_ESTIMATE_S = {"trials": 30.0, "syncs": 25.0, "concurrent": 150.0, "repeat": 60.0}
"""Rough GPU seconds per section (per architecture for `trials`), to skip what cannot finish."""


def trial_config(arch: str, dry: bool, epochs: int = 2, **changes: Any):
    """The paper preset's trial from random weights, shortened; in --dry also tiny crops."""
    tiny = {"epochs": 1, "train_crop": harness.crop(arch, 64)} if dry else {}
    return get_preset("paper").trial(arch, SCRATCH, 0, **{"epochs": epochs, **tiny, **changes})


def trial_result(config, manifest, roots, out: str) -> dict[str, Any]:
    row = project_trial(config, manifest, roots, out)
    return {"arch": config.arch, "epochs": config.epochs, "train_crop": config.train_crop,
            "batch_size": config.batch_size, "train_images": row["train_images"],
            "trial_seconds": row["seconds"], "seconds_per_epoch": row["epoch_seconds"],
            "train_loss": row["epoch_train_loss"], "peak_allocated_mb": row["peak_allocated_mb"],
            "peak_reserved_mb": row["peak_reserved_mb"], "device": row["device"]}


def table_check(result: dict[str, Any], gpu_memory_gb: float | None) -> dict[str, Any]:
    """The measured peak against the table's figure, and against the share the `auto` plan gives
    this architecture on this GPU and on a 24 GB A10G (sweep.resources, the one sizing rule)."""
    table_gb = resolve(result["arch"]).peak_memory_gb
    measured_gb = (result["peak_reserved_mb"] or result["peak_allocated_mb"]) / 1024
    out = {"table_peak_memory_gb": table_gb, "measured_peak_gb": round(measured_gb, 3),
           "table_covers_measured": measured_gb <= table_gb}
    for label, memory in (("this_gpu", gpu_memory_gb), ("a10g_24gb", 24.0)):
        if memory:
            n = trials_per_gpu(table_gb, memory)
            out[f"auto_plan_{label}"] = {"trials_per_gpu": n, "share_gb": round(memory / n, 2),
                                         "fits": measured_gb + dev.CUDA_CONTEXT_GB <= memory / n}
    return out


def measure_syncs(manifest, roots, out: str, device, dry: bool) -> dict[str, Any]:
    """One trial under sync debug mode "warn" (CUDA only: on the CPU nothing is counted), each
    warning attributed to the innermost project function on the stack."""
    config = trial_config("resnet18", dry, epochs=1)
    by_function: dict[str, int] = {}

    def record(message, category, filename, lineno, file=None, line=None) -> None:
        if "synchroniz" not in str(message):
            return
        frame = sys._getframe(1)
        while frame and (not frame.f_code.co_filename.startswith(str(ROOT))
                         or "site-packages" in frame.f_code.co_filename):
            frame = frame.f_back
        where = (f"{Path(frame.f_code.co_filename).relative_to(ROOT)}:{frame.f_code.co_qualname}"
                 if frame else f"{Path(filename).name}:{lineno}")
        by_function[where] = by_function.get(where, 0) + 1

    with warnings.catch_warnings(), contextlib.ExitStack() as stack:
        warnings.simplefilter("always")
        warnings.showwarning = record
        if device.type == "cuda":
            stack.callback(torch.cuda.set_sync_debug_mode, torch.cuda.get_sync_debug_mode())
            torch.cuda.set_sync_debug_mode("warn")
        result = trial_result(config, manifest, roots, out)
    steps = math.ceil(result["train_images"] / config.batch_size)
    total = sum(by_function.values())
    return {"measured": device.type == "cuda", "arch": config.arch, "train_steps": steps,
            "syncs_total": total, "syncs_per_train_step_upper_bound": total / steps if steps else None,
            "note": "all synchronising calls of one trial (training, validation, test and OOD "
                    "evaluation) over its training steps; by_function says which are per step",
            "by_function": dict(sorted(by_function.items(), key=lambda kv: -kv[1]))}


def run_concurrent(arch: str, n: int, manifest, roots, scratch: Path, device, dry: bool,
                   env: dict[str, str] | None = None) -> dict[str, Any]:
    """n trials at once in n processes, each capped to 1/n of the GPU (the `auto` plan's share),
    with the GPU memory in use by every process (total - free) sampled every 0.25 s."""
    share, config, stop, peak = fraction_for(n), trial_config(arch, dry, epochs=1), threading.Event(), [0.0]

    def sample() -> None:
        while not stop.wait(0.25):
            free, total = torch.cuda.mem_get_info(device)
            peak[0] = max(peak[0], (total - free) / 2**20)

    if device.type == "cuda":
        threading.Thread(target=sample, daemon=True).start()
    out = tempfile.mkdtemp(dir=scratch, prefix=f"concurrent-{arch}-")
    results, wall, _ = run_pool([config.to_dict()] * n, n, 1, manifest, roots, out, env=env, share=share)
    stop.set()
    ok = [r for r in results if r["ok"]]
    return {"arch": arch, "processes": n, "share": share, "epochs": config.epochs,
            "all_ok": len(ok) == n, "oom": sum(bool(r.get("oom")) for r in results),
            "wall_seconds": wall,
            "max_peak_allocated_mb": max((r["peak_allocated_mb"] for r in ok), default=None),
            "max_peak_reserved_mb": max((r["peak_reserved_mb"] for r in ok
                                         if r["peak_reserved_mb"] is not None), default=None),
            "gpu_memory_in_use_peak_mb": peak[0] if device.type == "cuda" else None,
            "seconds_per_epoch": [r["epoch_seconds"] for r in ok],
            "errors": [r["error"] for r in results if not r["ok"]]
            + [f"{n - len(results)} process(es) died without a result"] * (len(results) < n)}


@contextlib.contextmanager
def mps_daemon(scratch: Path):
    """The CUDA MPS control daemon for the block: yields its clients' environment, or why not."""
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
        subprocess.run([control], input="quit\n", env=full, capture_output=True, text=True, timeout=30)


def measure_repeat(manifest, roots, out: str, dry: bool) -> dict[str, Any]:
    """Two runs each in deterministic mode and with the paper's defaults (TF32 and cuDNN
    benchmarking off in both), with the ops PyTorch warned have no deterministic kernel."""
    runs = {}
    for label, deterministic in (("deterministic", True), ("defaults", False)):
        losses, ops = [], set()
        for _ in range(2):
            config = trial_config("resnet18", dry, epochs=1, deterministic=deterministic)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                losses.append(trial_result(config, manifest, roots, out)["train_loss"])
            ops |= {str(w.message).split(" does not have")[0][:120]
                    for w in caught if "deterministic" in str(w.message)}
        runs[label] = {"train_loss": losses, "bit_identical": losses[0] == losses[1],
                       "nondeterministic_ops": sorted(ops)}
    return runs


def main(args) -> int:
    t_start = time.perf_counter()
    archs = tuple(args.archs or (("resnet18",) if args.dry else STUDY_ARCHS))
    largest = max(archs, key=lambda a: resolve(a).peak_memory_gb)  # refuses an unknown name
    n_concurrent = args.concurrent or (2 if args.dry else 8)
    if n_concurrent < 1:
        raise UserError("--concurrent must be >= 1")
    report: dict[str, Any] = {"schema": 1, "dry": args.dry, "budget_s": args.budget_s,
                              "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                              "sections": {}, "checks": {}}
    sections, checks = report["sections"], report["checks"]

    def save() -> None:
        report["elapsed_s"] = round(time.perf_counter() - t_start, 1)
        write_json(args.out, report)

    def fits(name: str) -> bool:
        return args.dry or time.perf_counter() - t_start + SECTION_ESTIMATE_S[name] <= args.budget_s

    def section(name: str) -> bool:
        """Whether to run a section: asked for, and ending within the budget (else marked)."""
        if name in args.skip or not fits(name):
            sections.update({} if name in args.skip else {name: {"skipped": "budget"}})
            return False
        return True

    # the paper's numeric settings, and cuBLAS's workspace setting before its first use (the
    # `repeat` section's deterministic runs need it from the process's start)
    dev.apply_determinism(False, tf32=False, cudnn_benchmark=False)
    facts = CudaFacts.read()
    report["cuda"] = facts.to_dict()
    if not checks.setdefault("cuda", args.dry or facts.usable):
        save()
        harness.require_cuda(facts)
    device = torch.device("cpu") if args.dry else dev.select_device(None, facts)
    report["device"] = {"label": dev.describe_device(device), "type": device.type,
                        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None}
    report["code_version"], report["library_versions"] = code_version(), json.loads(library_versions())
    gpu_memory_gb = facts.gpus[0].total_memory / 2**30 if device.type == "cuda" else None
    print(f"device: {report['device']['label']} | {facts.summary()}", flush=True)
    save()
    with tempfile.TemporaryDirectory(prefix="device-check-") as tmp:
        scratch = Path(tmp)
        roots, manifest = harness.standin_data(scratch, *DATA[args.dry])
        report["data"] = {"counts": manifest.counts(), "generated": True}
        if "trials" not in args.skip:
            trials, skipped = [], []
            sections["trials"] = {"trials": trials, "skipped": skipped}
            for arch in archs:
                if not fits("trials"):
                    skipped.append(arch)
                    continue
                try:
                    result = {**trial_result(trial_config(arch, args.dry), manifest, roots, tmp), "ok": True}
                    result.update(table_check(result, gpu_memory_gb))
                except Exception as exc:
                    result = {"arch": arch, "ok": False, "error": harness.error_line(exc)}
                trials.append(result)
                print(f"trial {arch}: " + (f"{result['seconds_per_epoch']} s/epoch, peak allocated "
                                           f"{result['peak_allocated_mb']:.0f} MiB, reserved "
                                           f"{result['peak_reserved_mb']}" if result["ok"]
                                           else f"FAILED {result['error']}"), flush=True)
                save()
            checks["trials_ok"] = bool(trials) and all(r["ok"] for r in trials)
            if device.type == "cuda":
                checks["table_covers_measured_peaks"] = all(r.get("table_covers_measured", False)
                                                            for r in trials)
        if section("syncs"):
            syncs = sections["syncs"] = measure_syncs(manifest, roots, tmp, device, args.dry)
            print(f"syncs: {syncs['syncs_total']} over {syncs['train_steps']} training steps "
                  f"(measured: {syncs['measured']})", flush=True)
        save()
        if section("concurrent"):
            conc = sections["concurrent"] = {
                "no_mps": run_concurrent(largest, n_concurrent, manifest, roots, scratch, device, args.dry)}
            print(f"concurrent {n_concurrent} x {largest}: all ok {conc['no_mps']['all_ok']}, "
                  f"{conc['no_mps']['oom']} OOM", flush=True)
            checks["concurrent_no_oom"] = conc["no_mps"]["all_ok"]
            save()
            if device.type != "cuda":
                conc["mps"] = {"skipped": "no GPU"}
            elif section("concurrent"):
                with mps_daemon(scratch) as env:
                    if isinstance(env, str):
                        conc["mps"] = {"available": False, "reason": env}
                    else:  # errors other than OOM (clients that cannot reach the MPS server in
                        conc["mps"] = {"available": True, **run_concurrent(  # this container)
                            largest, n_concurrent, manifest, roots, scratch, device, args.dry, env)}
                        conc["mps"]["usable"] = conc["mps"]["all_ok"]  # are not memory failures
                        checks["concurrent_mps_no_oom"] = conc["mps"]["oom"] == 0
            else:
                conc["mps"] = {"skipped": "budget"}
            save()
        if section("repeat"):
            repeat = sections["repeat"] = measure_repeat(manifest, roots, tmp, args.dry)
            checks["deterministic_repeats_bit_identical"] = repeat["deterministic"]["bit_identical"]
            print(f"repeat: deterministic identical {repeat['deterministic']['bit_identical']}, "
                  f"defaults identical {repeat['defaults']['bit_identical']}", flush=True)
            save()
    failed = sorted(k for k, v in checks.items() if not v)
    report["all_checks_passed"] = not failed
    save()
    print(f"wrote {args.out} in {report['elapsed_s']:.0f} s; "
          + (f"FAILED: {', '.join(failed)}" if failed else "all checks passed"), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    p = harness.parser(__file__, __doc__)
    p.add_argument("--out", default="device_check.json", help="the JSON to write")
    p.add_argument("--dry", action="store_true", help="CPU, tiny sizes: checks the script itself")
    p.add_argument("--budget-s", type=float, default=420.0,
                   help="skip sections that would end after this many seconds (default 420)")
    p.add_argument("--archs", nargs="+", help="the trials section's (default: the study's; --dry: resnet18)")
    p.add_argument("--concurrent", type=int, help="trials at once on the GPU (default 8; --dry: 2)")
    p.add_argument("--skip", nargs="+", default=[], choices=tuple(SECTION_ESTIMATE_S),
                   help="sections to leave out")
    sys.exit(harness.run(main, p))
