"""Memory and compute of one paper-config trial, per architecture and regime, derived by tracing.

    python bench/footprint.py                         # every registry architecture, 3 regimes
    python bench/footprint.py --archs resnet18 --json out.json
    python bench/footprint.py --validate              # also: the tracer against real CPU allocations

Each row traces a training step (batch 6, the architecture's crop, cross-entropy with Inception's
aux loss, SGD with momentum) and an eval forward pass on fake tensors (trainables/footprint.py):
no GPU and no real memory needed. Columns, in MiB unless named otherwise:

  params    all parameters; grads and momentum: the trainable ones (fine-tune, scratch: all;
            feature extraction: the new head)
  act@peak  activations saved for backward, live at the step's peak
  step      everything live at the training step's peak
  eval@B    peak of an eval forward pass at the config's evaluation batch B (eval_batch_size)
  trial     max(step, eval): what one trial's tensors need at once
  GFLOP     one eval forward pass per image (training: ~3x where the whole network trains)

The last table is what `peak_memory_gb` in the architecture registry holds (the largest trial
peak over the three regimes, in GB, rounded up to 0.1), against the value there now. A GPU adds
its CUDA context, cuDNN workspaces and allocator fragmentation (sweep/resources.py's headroom);
the sweep refines the numbers with a probe trial on the first GPU node (sweep/probe.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MIB = 2**20


def validate(archs: list[str], size: int) -> list[str]:
    """The tracer's step peak against the real CPU allocator's, on real tensors at a small crop."""
    import torch

    from trainables.footprint import measured_cpu_peak, trace
    from trainables.models import build_model
    from trainables.presets import get_preset

    lines = [f"validation at {size} px, batch 6, on this CPU (real tensors, profiler allocation events):"]
    for arch in archs:
        for regime in ("finetune", "feature_extract"):
            traced = trace(arch, regime, input_size=size)
            config = get_preset("paper").trial(arch, regime, 0, "all")
            torch.manual_seed(0)
            model = build_model(config, 2, pretrained=False)
            real = measured_cpu_peak(model, torch.randn(6, 3, size, size), torch.zeros(6, dtype=torch.long))
            lines.append(f"  {arch:14s} {regime:16s} traced {traced.peak / MIB:8.1f} MiB, real "
                         f"{real / MIB:8.1f} MiB ({100 * (traced.peak / real - 1):+.1f} %)")
    return lines


def main(argv: list[str] | None = None) -> int:
    from trainables.archs import ARCHS
    from trainables.footprint import registry_peak_gb, trace
    from trainables.presets import get_preset
    from trainables.regimes import STUDY_REGIMES

    p = argparse.ArgumentParser(prog="python bench/footprint.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=list(ARCHS), help="default: every registry architecture")
    p.add_argument("--regimes", nargs="+", default=list(STUDY_REGIMES))
    p.add_argument("--eval-batch", type=int, default=None,
                   help="evaluation batch (default: the preset's eval_batch_size)")
    p.add_argument("--json", help="also write every row to this file")
    p.add_argument("--validate", action="store_true",
                   help="also check the tracer against real CPU allocations (resnet18, squeezenet1_0, 64 px)")
    args = p.parse_args(argv)
    import torch

    eval_batch = args.eval_batch or get_preset("paper").trial("resnet18", "finetune").eval_batch_size
    rows = []
    print(f"torch {torch.__version__}; paper config, batch 6, fp32; eval batch {eval_batch}")
    print(f"{'arch':14s} {'regime':16s} {'px':>3s} {'params':>7s} {'grads':>7s} {'moment.':>7s} "
          f"{'act@peak':>8s} {'step':>7s} {f'eval@{eval_batch}':>7s} {'trial':>7s} {'GFLOP':>6s} {'s':>5s}")
    for arch in args.archs:
        for regime in args.regimes:
            t0 = time.perf_counter()
            f = trace(arch, regime, eval_batch=eval_batch)
            rows.append(f.as_dict())
            print(f"{arch:14s} {regime:16s} {f.input_size:3d} {f.params / MIB:7.1f} {f.grads / MIB:7.1f} "
                  f"{f.optimizer / MIB:7.1f} {f.activations / MIB:8.1f} {f.peak / MIB:7.1f} "
                  f"{f.eval_peak / MIB:7.1f} {f.trial_peak / MIB:7.1f} "
                  f"{f.forward_gflop_per_image:6.2f} {time.perf_counter() - t0:5.1f}", flush=True)
    print("\nregistry peak_memory_gb (largest trial peak over the regimes, GB rounded up):")
    for arch in args.archs:
        peak = max(r["trial_peak"] for r in rows if r["arch"] == arch)
        now = ARCHS[arch].peak_memory_gb
        print(f"  {arch:14s} derived {registry_peak_gb(peak):4.1f}   registry now {now:4.1f}")
    if args.validate:
        print()
        for line in validate(["resnet18", "squeezenet1_0"], 64):
            print(line)
    if args.json:
        Path(args.json).write_text(json.dumps({"torch": torch.__version__, "eval_batch": eval_batch,
                                               "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
