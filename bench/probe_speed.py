"""How much cheaper is a linear-probe trial than a study-style feature-extraction trial?

    python bench/probe_speed.py                          # mobilenet_v2, paper and demo presets
    python bench/probe_speed.py --presets paper --archs mobilenet_v2 resnet18 --threads 2

In this one process, on the embedded demo data, with the same architecture and its weights, for
each preset (paper: 30 epochs, 224 px; demo: 15 epochs, 160 px) and architecture:

  baseline  bench/baseline.py's study-style loop in the feature_extract regime, the preset's
            epochs: an ImageFolder-style dataset decoding every image with PIL on every access,
            transforms v1, batch 6, the whole model in train mode (BatchNorm statistics move),
            the best-val epoch kept, test and OOD evaluated
  probe     trainables.train.run_trial in the linear_probe regime with the same preset: decoding,
            penultimate features once per image, the C grid, test and OOD evaluation and the
            three tables written

Each cell runs probe, baseline, probe (the machine may be shared: the probe's time is the mean of
the runs on either side of the baseline). Printed per cell: wall seconds of each (data, model,
training and evaluation included), the ratio baseline / probe, and both trials' accuracies.
Architectures whose ImageNet weights are not installed run with RANDOM WEIGHTS (timing only);
the output labels them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.baseline import run_baseline_trial  # noqa: E402
from bench.trial_speed import random_weights_in_run_trial, weights_available  # noqa: E402
from trainables import train as train_mod  # noqa: E402
from trainables.archs import ARCHS, resolve  # noqa: E402
from trainables.data.demo import prepare_data  # noqa: E402
from trainables.errors import UserError  # noqa: E402
from trainables.presets import PRESETS, get_preset  # noqa: E402


def probe_trial(config, manifest, roots, out_root: Path, random_w: bool) -> dict[str, Any]:
    out = tempfile.mkdtemp(dir=out_root, prefix="probe-")
    ctx = random_weights_in_run_trial() if random_w else contextlib.nullcontext()
    t0 = time.perf_counter()
    with ctx:
        row = train_mod.run_trial(config, manifest, roots, out)
    seconds = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": seconds, "val": row["best_val_acc"], "test": row["test_acc"],
            "ood": row["ood_acc"], "probe_c": row["probe_c"]}


def baseline_trial(config, manifest, roots, device, random_w: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    res = run_baseline_trial(config, manifest, roots, device,
                             pretrained=False if random_w else None)
    return {"seconds": time.perf_counter() - t0, "val": res.best_val_acc, "test": res.test_acc,
            "ood": res.ood_acc, "best_epoch": res.best_epoch, "epoch_seconds": res.train_seconds}


def run_cell(preset: str, arch: str, manifest, roots, device, out_root: Path) -> dict[str, Any]:
    p = get_preset(preset)
    probe_cfg = p.trial(arch, "linear_probe")
    base_cfg = p.trial(arch, "feature_extract")  # bn_mode "train": the study's behaviour
    random_w = not weights_available(arch)
    first = probe_trial(probe_cfg, manifest, roots, out_root, random_w)
    base = baseline_trial(base_cfg, manifest, roots, device, random_w)
    second = probe_trial(probe_cfg, manifest, roots, out_root, random_w)
    probe_s = statistics.mean([first["seconds"], second["seconds"]])
    return {"preset": preset, "arch": arch, "epochs": base_cfg.epochs, "crop": base_cfg.train_crop,
            "random_weights": random_w, "baseline": base, "probe": [first, second],
            "probe_seconds": probe_s, "ratio": base["seconds"] / probe_s,
            "ratio_range": [base["seconds"] / max(first["seconds"], second["seconds"]),
                            base["seconds"] / min(first["seconds"], second["seconds"])]}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def describe(cell: dict[str, Any]) -> list[str]:
    b, p = cell["baseline"], cell["probe"][0]
    label = "RANDOM WEIGHTS (timing only)" if cell["random_weights"] else "ImageNet weights"
    return [f"{cell['preset']:6s} {cell['arch']:14s} {cell['epochs']:2d} epochs {cell['crop']} px  "
            f"baseline {b['seconds']:7.1f} s  probe {cell['probe_seconds']:6.1f} s "
            f"({cell['probe'][0]['seconds']:.1f}, {cell['probe'][1]['seconds']:.1f})  "
            f"ratio {cell['ratio']:5.1f}x (range {cell['ratio_range'][0]:.1f}-"
            f"{cell['ratio_range'][1]:.1f})  {label}",
            f"{'':22s}accuracy val/test/OOD %: study-style feature extraction "
            f"{_pct(b['val'])}/{_pct(b['test'])}/{_pct(b['ood'])} (best epoch {b['best_epoch']}), "
            f"linear probe {_pct(p['val'])}/{_pct(p['test'])}/{_pct(p['ood'])} (C={p['probe_c']:g})"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python bench/probe_speed.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["paper", "demo"],
                   help=f"from: {', '.join(PRESETS)} (default: paper demo)")
    p.add_argument("--archs", nargs="+", default=["mobilenet_v2"],
                   help=f"from: {', '.join(ARCHS)} (default mobilenet_v2)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads for both (default 1, as a sweep trial gets)")
    p.add_argument("--json", default=None, help="write every run as JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        for name in args.presets:
            get_preset(name)
        for arch in args.archs:
            resolve(arch)
        if args.threads < 1:
            raise UserError("--threads must be at least 1")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    roots, manifest = prepare_data()
    out_root = Path(tempfile.mkdtemp(prefix="probe-speed-"))
    print(f"device {device}, {args.threads} thread(s), {os.cpu_count()} CPUs; demo data: "
          + ", ".join(f"{s} {len(manifest.split_entries(s))}" for s in ("train", "val", "test", "ood"))
          + " images", flush=True)
    cells = []
    t_all = time.perf_counter()
    for preset in args.presets:
        for arch in args.archs:
            cells.append(run_cell(preset, arch, manifest, roots, device, out_root))
            for line in describe(cells[-1]):
                print(line, flush=True)
    print(f"total {time.perf_counter() - t_all:.0f} s; ratio = study-style feature-extraction "
          "trial / linear-probe trial, both whole trials in this process")
    if args.json:
        Path(args.json).write_text(json.dumps({"argv": sys.argv[1:], "device": str(device),
                                               "threads": args.threads, "cells": cells}, indent=1))
    shutil.rmtree(out_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
