"""Bytes per trial checkpoint, per architecture and regime (serialised with torch.save, as the
sweep writes them to its storage, S3 on a cluster).

    python bench/checkpoint_bytes.py                   # every registry architecture, 3 regimes
    python bench/checkpoint_bytes.py --archs resnet18 vgg11_bn

Each row builds the trial's model (random weights: the sizes are what matter), takes one SGD
step so that the momentum buffers exist, fills the training state the way the engine does after
an epoch (model, optimizer and scheduler state, the best epoch's weights) and serialises the
checkpoint into a byte counter:

  before      what every epoch's checkpoint held before: the whole training state (weights,
              momentum, the best epoch's weights)
  now         what a checkpoint holds now (sweep/checkpoints.py, checkpoint_payload): only what
              training changes; feature extraction leaves out the frozen backbone (rebuilt from
              the ImageNet weights on resume) and keeps the head, its momentum and the BatchNorm
              statistics when they move (bn_mode "train", the study's)
  (best=now)  the same when the best epoch is the current one (its weights stored once)

How many checkpoints a trial writes is the other factor: before, one per epoch (30 in the
paper config); now one every --checkpoint-every minutes and one after the last epoch.
"""

from __future__ import annotations

import argparse
import copy
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MIB = 2**20


class Counter(io.RawIOBase):
    """A write-only sink that counts bytes (torch.save needs a file-like object)."""

    def __init__(self) -> None:
        self.n = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.n += len(b)
        return len(b)


def saved_bytes(obj) -> int:
    import torch

    sink = Counter()
    torch.save(obj, sink)
    return sink.n


def trained_state(arch: str, regime: str):
    """(model, config, FitState) after one SGD step, as the engine holds them after an epoch."""
    import torch

    from trainables.engine import FitState, cpu_copy, frozen_state_keys
    from trainables.models import build_model
    from trainables.presets import get_preset

    config = get_preset("paper").trial(arch, regime, 0, "all")  # bn_mode "train", the study's
    torch.manual_seed(0)
    model = build_model(config, 2, pretrained=False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    size = config.train_crop  # (the state's size does not depend on the crop)
    model.train()
    out = model(torch.randn(2, 3, size, size))
    logits = out[0] if isinstance(out, tuple) else out
    torch.nn.functional.cross_entropy(logits, torch.zeros(2, dtype=torch.long)).backward()
    optimizer.step()
    scheduler.step()
    state = FitState(epoch=1, rows=[{"epoch": 1}], best_acc=0.5, best_loss=0.7, best_epoch=1,
                     best_state=cpu_copy(model.state_dict()), model_state=cpu_copy(model.state_dict()),
                     optimizer_state=copy.deepcopy(optimizer.state_dict()),
                     scheduler_state=scheduler.state_dict(),
                     frozen_keys=frozen_state_keys(model, config))
    return model, config, state


def main(argv: list[str] | None = None) -> int:
    from trainables.archs import ARCHS
    from trainables.regimes import STUDY_REGIMES

    p = argparse.ArgumentParser(prog="python bench/checkpoint_bytes.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=list(ARCHS))
    p.add_argument("--regimes", nargs="+", default=list(STUDY_REGIMES))
    args = p.parse_args(argv)
    from sweep.checkpoints import checkpoint_payload
    from trainables.archs import resolve
    from trainables.weights import weights_file
    print(f"{'arch':14s} {'regime':16s} {'before MiB':>10s} {'now MiB':>9s} {'(best=now)':>10s} ratio")
    for arch in args.archs:
        for regime in args.regimes:
            model, config, state = trained_state(arch, regime)
            before = {k: v for k, v in state.to_dict().items() if k != "frozen_keys"}
            full = saved_bytes({"trial_id": "0" * 16, "state": before})
            weights = weights_file(resolve(arch))
            state.epoch = 2  # a later epoch than the best one: both weights in the checkpoint
            now = saved_bytes(checkpoint_payload(state, "0" * 16, weights))
            state.epoch = state.best_epoch  # the best epoch is this one: its weights once
            best_now = saved_bytes(checkpoint_payload(state, "0" * 16, weights))
            print(f"{arch:14s} {regime:16s} {full / MIB:10.1f} {now / MIB:9.3f} {best_now / MIB:10.3f} "
                  f"{full / now:6.1f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
