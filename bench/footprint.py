"""Memory, compute and checkpoint bytes of one paper-config trial per architecture and regime.

    python bench/footprint.py                         # every table architecture, the study's regimes
    python bench/footprint.py --archs resnet18 --json out.json
    python bench/footprint.py --checkpoints           # also: bytes per trial checkpoint

A training step (the trial's model, regime, batch, crop and loss; SGD with momentum, the second
step) and an eval pass at the config's eval batch are traced on fake tensors (FakeTensorMode:
shapes, no data, no device) under PyTorch's MemTracker; FlopCounterMode counts the forward GFLOP.
No GPU and no real memory needed. The last table is what the architecture table's
`peak_memory_gb` and `forward_gflop` hold (tests/integration/test_footprint_registry.py). The
trace counts every tensor an operator returns, not the scratch a kernel allocates inside itself
(tests/unit/test_footprint.py measures both; on a GPU, sweep/memory_check.py the real peak).
"""

from __future__ import annotations

import copy
import io
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from bench.harness import parser, run, write_json  # noqa: E402
from trainables.archs import ARCHS, resolve  # noqa: E402
from trainables.device import cpu_copy  # noqa: E402
from trainables.engine import FitState, frozen_state_keys, training_loss  # noqa: E402
from trainables.models import build_model  # noqa: E402
from trainables.presets import get_preset  # noqa: E402
from trainables.regimes import STUDY_REGIMES  # noqa: E402
from trainables.weights import weights_file  # noqa: E402

GB, MIB = 1e9, 2**20


@dataclass(frozen=True)
class Footprint:
    """Bytes of one traced training step at its peak, and of one eval forward pass."""

    arch: str
    regime: str
    batch: int
    input_size: int
    params: int  # all parameters (fp32)
    grads: int  # gradients of the trainable parameters; SGD momentum: as many bytes
    buffers: int  # BatchNorm running statistics and other buffers
    peak: int  # everything live at the step's peak: the above, activations, temporaries, inputs
    activations: int  # saved for backward, live at the peak
    temporary: int  # live at the peak (a backward op's output before it is accumulated)
    eval_batch: int
    eval_peak: int  # an eval-mode forward pass under no_grad at `eval_batch`, parameters included
    forward_gflop_per_image: float
    """One eval forward pass (convolutions and matrix products, 2 FLOPs per multiply-add). The
    backward is not counted: FlopCounterMode's grouped-convolution backward ignores the groups."""

    @property
    def trial_peak(self) -> int:
        """What a trial needs at once: the larger of the training step and the eval pass."""
        return max(self.peak, self.eval_peak)


def table_peak_gb(peak_bytes: int) -> float:
    """A trial peak as the architecture table's `peak_memory_gb` holds it: GB, rounded up to 0.1."""
    return math.ceil(peak_bytes / GB * 10) / 10


def _bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _model(arch: str, regime: str):
    """The paper preset's trial config and its two-class model (random weights)."""
    config = get_preset("paper").trial(arch, regime, 0, "all")
    torch.manual_seed(0)  # built for real: some initialisers (Inception's) branch on their draws
    return config, build_model(config, 2, pretrained=False)


def trace(arch: str, regime: str, input_size: int | None = None, eval_batch: int | None = None
          ) -> Footprint:
    """Trace `arch` in `regime` with the paper preset's batch, crops and eval batch (or these)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker
    from torch.utils.flop_counter import FlopCounterMode

    config, model = _model(arch, regime)
    batch, size = config.batch_size, input_size or config.train_crop
    eval_size, eval_batch = input_size or config.val_crop, eval_batch or config.eval_batch_size
    fake_mode = FakeTensorMode()
    for module in model.modules():  # every parameter and buffer becomes a fake of its shape
        for name, param in module._parameters.items():
            if param is not None:
                module._parameters[name] = nn.Parameter(fake_mode.from_tensor(param.detach()),
                                                        requires_grad=param.requires_grad)
        for name, buf in module._buffers.items():
            if buf is not None:
                module._buffers[name] = fake_mode.from_tensor(buf)
    with fake_mode:
        params, grads = _bytes(model.parameters()), _bytes(p for p in model.parameters() if p.requires_grad)
        for module in model.modules():  # frozen weights as buffers: MemTracker hooks every
            for name, param in list(module._parameters.items()):  # parameter's gradient
                if param is not None and not param.requires_grad:
                    del module._parameters[name]
                    module.register_buffer(name, param.detach())
        optimizer = torch.optim.SGD(list(model.parameters()), lr=config.lr, momentum=config.momentum)
        x, y = torch.empty(batch, 3, size, size), torch.zeros(batch, dtype=torch.long)
        model.train()
        tracker = MemTracker()
        tracker.track_external(model, optimizer, x, y)
        with tracker:
            for i in range(2):  # the first step creates the momentum buffers
                if i:
                    tracker.reset_mod_stats()
                training_loss(model(x), y, config.aux_loss_weight)[0].backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        at_peak = _by_kind(tracker.get_tracker_snapshot("peak"))
        model.eval()
        xe = torch.empty(eval_batch, 3, eval_size, eval_size)
        tracker = MemTracker()
        tracker.track_external(model, xe)
        with tracker, torch.no_grad():
            model(xe)
        eval_peak = _by_kind(tracker.get_tracker_snapshot("peak"))["Total"]
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(xe[:1])
        buffers = _bytes(model.buffers()) - (params - grads)
    return Footprint(arch, regime, batch, size, params, grads, buffers, at_peak["Total"],
                     at_peak.get("Activation", 0), at_peak.get("Temp", 0), eval_batch, eval_peak,
                     counter.get_total_flops() / GB)


def _by_kind(snapshot: dict) -> dict[str, int]:
    """MemTracker's {device: {kind: bytes}} for the one device, keyed by the kind's name."""
    out: dict[str, int] = {}
    for per_kind in snapshot.values():
        for kind, n in per_kind.items():
            name = kind if isinstance(kind, str) else kind.value
            out[name] = out.get(name, 0) + n
    return out


def checkpoint_bytes(arch: str, regime: str) -> tuple[int, int]:
    """torch.save bytes of a trial's checkpoint after one SGD step (random weights: the sizes are
    what matter), as sweep/checkpoints.py's payload holds it (what training changes: feature
    extraction leaves out the frozen backbone, rebuilt from the ImageNet weights on resume): at a
    later epoch than the best one, and when the best epoch is the current one (weights once)."""
    from sweep.checkpoints import checkpoint_payload  # imports Ray: only for --checkpoints

    def saved(obj: Any) -> int:
        sink = io.BytesIO()
        torch.save(obj, sink)
        return sink.tell()

    config, model = _model(arch, regime)  # bn_mode "train", the study's
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                momentum=config.momentum)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, config.step_size, config.gamma)
    training_loss(model.train()(torch.randn(2, 3, config.train_crop, config.train_crop)),
                  torch.zeros(2, dtype=torch.long), config.aux_loss_weight)[0].backward()
    optimizer.step()
    scheduler.step()
    state = FitState(epoch=1, rows=[{"epoch": 1}], best_acc=0.5, best_loss=0.7, best_epoch=1,
                     best_state=cpu_copy(model.state_dict()), model_state=cpu_copy(model.state_dict()),
                     optimizer_state=copy.deepcopy(optimizer.state_dict()),
                     scheduler_state=scheduler.state_dict(), frozen_keys=frozen_state_keys(model, config))
    weights = weights_file(resolve(arch))
    state.epoch = 2  # a later epoch than the best one: both weights in the checkpoint
    now = saved(checkpoint_payload(state, "0" * 16, weights))
    state.epoch = state.best_epoch
    return now, saved(checkpoint_payload(state, "0" * 16, weights))


def main(args) -> int:
    regimes = args.regimes or list(STUDY_REGIMES)
    eval_batch = get_preset("paper").trial(args.archs[0], regimes[0]).eval_batch_size
    rows = []
    print(f"torch {torch.__version__}; paper config, batch 6, fp32; eval batch {eval_batch}; MiB")
    print(f"{'arch':14s} {'regime':16s} {'px':>3s} {'params':>7s} {'grads':>7s} {'act@peak':>8s} "
          f"{'step':>7s} {f'eval@{eval_batch}':>7s} {'trial':>7s} {'GFLOP':>6s} {'s':>5s}")
    for arch in args.archs:
        for regime in regimes:
            t0 = time.perf_counter()
            f = trace(arch, regime, eval_batch=eval_batch)
            rows.append({**asdict(f), "trial_peak": f.trial_peak})
            print(f"{arch:14s} {regime:16s} {f.input_size:3d} {f.params / MIB:7.1f} {f.grads / MIB:7.1f} "
                  f"{f.activations / MIB:8.1f} {f.peak / MIB:7.1f} {f.eval_peak / MIB:7.1f} "
                  f"{f.trial_peak / MIB:7.1f} {f.forward_gflop_per_image:6.2f} "
                  f"{time.perf_counter() - t0:5.1f}", flush=True)
    print("\ntable peak_memory_gb (largest trial peak over the regimes, GB rounded up), forward_gflop:")
    for arch in args.archs:
        mine = [r for r in rows if r["arch"] == arch]
        print(f"  {arch:14s} derived {table_peak_gb(max(r['trial_peak'] for r in mine)):4.1f} "
              f"{mine[0]['forward_gflop_per_image']:6.2f}   table now {ARCHS[arch].peak_memory_gb:4.1f} "
              f"{ARCHS[arch].forward_gflop}")
    if args.checkpoints:
        print(f"\nbytes per checkpoint, MiB: {'now':>8s} {'(best=now)':>10s}")
        for arch in args.archs:
            for regime in regimes:
                now, best_now = checkpoint_bytes(arch, regime)
                print(f"  {arch:14s} {regime:16s} {now / MIB:8.3f} {best_now / MIB:10.3f}", flush=True)
    write_json(args.json, {"torch": torch.__version__, "eval_batch": eval_batch, "rows": rows})
    return 0


if __name__ == "__main__":
    p = parser(__file__, __doc__)
    p.add_argument("--archs", nargs="+", default=list(ARCHS), help="default: every table architecture")
    p.add_argument("--regimes", nargs="+", help="default: the study's")
    p.add_argument("--json", help="also write every row to this file")
    p.add_argument("--checkpoints", action="store_true", help="also: bytes per trial checkpoint")
    sys.exit(run(main, p))
