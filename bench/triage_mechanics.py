"""The triage's ranking over every table architecture on a machine without their weights.

    python bench/triage_mechanics.py                       # every table architecture, demo preset
    python bench/triage_mechanics.py --archs resnet18 mobilenet_v2 --preset smoke

`python -m sweep.run --triage` refuses architectures whose ImageNet weights are not installed.
To show the ranking's mechanics where only some weights exist, this runs each architecture's
linear-probe trial in this process (trainables.train.run_trial), with ImageNet weights where they
are installed and RANDOM WEIGHTS elsewhere, and ranks them with the triage's own code
(analysis/probe_triage.py). Random-weight rows are labelled: they rank random features.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from analysis import probe_triage  # noqa: E402
from bench.harness import RANDOM, parser, random_weights, run, weights_available  # noqa: E402
from trainables.archs import ARCHS, resolve  # noqa: E402
from trainables.data.demo import prepare_data  # noqa: E402
from trainables.presets import get_preset  # noqa: E402
from trainables.regimes import LINEAR_PROBE  # noqa: E402
from trainables.train import run_trial  # noqa: E402


def main(args) -> int:
    preset, _ = get_preset(args.preset), [resolve(arch) for arch in args.archs]
    torch.set_num_threads(args.threads)
    out = args.out or tempfile.mkdtemp(prefix="triage-mechanics-")
    roots, manifest = prepare_data()
    labels = {arch: RANDOM for arch in args.archs if not weights_available(arch)}
    for arch in args.archs:
        t0 = time.perf_counter()
        with random_weights(arch in labels):
            row = run_trial(preset.trial(arch, LINEAR_PROBE), manifest, roots, out)
        print(f"{arch:14s} val {row['best_val_acc']:.3f} test {row['test_acc']:.3f} C={row['probe_c']:g} "
              f"{time.perf_counter() - t0:.0f} s  {labels.get(arch, 'ImageNet weights')}", flush=True)
    ranked = probe_triage.rank(probe_triage.read_probe_trials(out))
    print(f"\ntriage ranking (linear probe, preset {args.preset}, train size all); {RANDOM}: timing "
          f"and mechanics only\n" + "\n".join("  " + line for line in probe_triage.lines(ranked, labels)))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    p = parser(__file__, __doc__)
    p.add_argument("--archs", nargs="+", default=list(ARCHS), help="default: every table architecture")
    p.add_argument("--preset", default="demo", help="default demo")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--out", help="results folder (default: a temporary one)")
    sys.exit(run(main, p))
