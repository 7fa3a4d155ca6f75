"""The triage's ranking over every registered architecture on a machine without their weights.

    python bench/triage_mechanics.py                       # all registered architectures, demo preset
    python bench/triage_mechanics.py --archs resnet18 mobilenet_v2 --preset smoke

`python -m sweep.run --triage` refuses architectures whose ImageNet weights are not installed
(their preflight fails), as it should. To show the ranking's mechanics where only some weights
exist (this project's CPU machines have MobileNetV2's only), this script runs the linear-probe
trial of each architecture in this process through `trainables.train.run_trial`, with ImageNet
weights where they are installed and RANDOM WEIGHTS elsewhere, then ranks them with the
triage's own code (analysis/probe_triage.py). Random-weight rows are labelled: they rank random
features, not what the architecture transfers, and say nothing about which to fine-tune.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from analysis import probe_triage  # noqa: E402
from bench.trial_speed import random_weights_in_run_trial, weights_available  # noqa: E402
from trainables.archs import ARCHS, resolve  # noqa: E402
from trainables.data.demo import prepare_data  # noqa: E402
from trainables.errors import UserError  # noqa: E402
from trainables.presets import PRESETS, get_preset  # noqa: E402
from trainables.train import run_trial  # noqa: E402

RANDOM = "RANDOM WEIGHTS"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/triage_mechanics.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=list(ARCHS), help="default: every registered one")
    p.add_argument("--preset", default="demo", help=f"from: {', '.join(PRESETS)} (default demo)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--out", default=None, help="results folder (default: a temporary one)")
    args = p.parse_args(argv)
    try:
        preset = get_preset(args.preset)
        for arch in args.archs:
            resolve(arch)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    out = args.out or tempfile.mkdtemp(prefix="triage-mechanics-")
    roots, manifest = prepare_data()
    labels = {}
    for arch in args.archs:
        random_w = not weights_available(arch)
        if random_w:
            labels[arch] = RANDOM
        ctx = random_weights_in_run_trial() if random_w else contextlib.nullcontext()
        t0 = time.perf_counter()
        with ctx:
            row = run_trial(preset.trial(arch, "linear_probe"), manifest, roots, out)
        print(f"{arch:14s} val {row['best_val_acc']:.3f} test {row['test_acc']:.3f} "
              f"C={row['probe_c']:g} {time.perf_counter() - t0:.0f} s"
              + (f"  {RANDOM}" if random_w else "  ImageNet weights"), flush=True)
    ranked = probe_triage.rank(probe_triage.read_probe_trials(out))
    print(f"\ntriage ranking (linear probe, preset {args.preset}, train size all); "
          f"{RANDOM}: timing and mechanics only")
    for line in probe_triage.lines(ranked, labels):
        print("  " + line)
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
