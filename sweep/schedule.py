"""In which order the sweep hands trials to Ray: the longest expected trials first.

A grid mixes trials of very different lengths (a VGG11-BN fine-tune computes ~25x what a
SqueezeNet feature extraction does). Started in grid order, a sweep often ends with one long
trial running alone while the other slots idle. Starting the longest first (the LPT rule) keeps
the slots busy to the end: its wall time is at most 4/3 of the optimum, and in practice within a
few percent of the floor max(sum of trial times / slots, longest trial).

Ray Tune keeps this order: the points become trials in list order (sweep/tuner.py,
GridPoints), and with the default FIFOScheduler a freed slot goes to the first
pending trial in that order (ray/tune/schedulers/trial_scheduler.py, FIFOScheduler.
choose_trial_to_run; a reused actor is offered to that trial first). With several resource
shapes at once (per-architecture GPU fractions), a freed slot of one shape can only take a
trial of that shape, so the order holds per shape.

The cost model is arithmetic, not a measurement: images x epochs x FLOPs per image (the
architecture table's `forward_gflop`), where a training image costs the regime's
`passes_per_image` forward passes (3 when the whole network trains, backward ~ 2 forwards; 1 in
feature extraction, whose backward pass stops at the new head), plus one forward pass per
validation image per epoch and per test and OOD image. A regime that does not train for epochs
(the linear probe: features once per image) counts one pass over every image. Per-trial costs
that are the same for every trial of a sweep (decoding the data, starting the trial) do not
change the order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sweep.grid import GridPoint
from trainables.archs import ARCHS, resolve
from trainables.config import TrialConfig, parse_train_size
from trainables.regimes import REGIMES

DEFAULT_GFLOP = max(a.forward_gflop or 0.0 for a in ARCHS.values())
"""For an architecture without a number (a derived model the meta device cannot run): assume
it is the most expensive study architecture (started early)."""


def train_images(config: TrialConfig, train_per_class: Mapping[str, int]) -> int:
    """Training images this trial uses, from the split's per-class train counts."""
    size = parse_train_size(config.train_size)
    if size is None:
        return sum(train_per_class.values())
    if isinstance(size, int):
        return sum(min(size, n) for n in train_per_class.values())
    return sum(max(1, round(n * size)) for n in train_per_class.values())


def expected_gflop(config: TrialConfig, counts: Mapping[str, Mapping[str, int]]) -> float:
    """The trial's expected computation in GFLOP; `counts` is Manifest.counts() (split -> class
    -> images)."""
    arch = resolve(config.arch, config.weights)
    regime = REGIMES[config.regime]
    crop = config.train_crop or arch.input_size
    per_image = (arch.forward_gflop or DEFAULT_GFLOP) * (crop / arch.input_size) ** 2
    n = {split: sum(per_class.values()) for split, per_class in counts.items()}
    per_epoch = (train_images(config, counts.get("train", {})) * regime.passes_per_image
                 + n.get("val", 0))
    epochs = config.epochs if regime.uses_epochs else 1
    return per_image * (epochs * per_epoch + n.get("test", 0) + n.get("ood", 0))


def longest_first(points: Sequence[GridPoint], counts: Mapping[str, Mapping[str, int]]
                  ) -> list[GridPoint]:
    """The points by expected cost, largest first; equal costs keep the grid's order."""
    return sorted(points, key=lambda p: -expected_gflop(p.config, counts))


def run_order(points: Sequence[GridPoint], counts: Mapping[str, Mapping[str, int]], order: str
              ) -> list[GridPoint]:
    """The points in the order the sweep hands them to Ray (`--order`): "longest-first" or
    "grid" (as given)."""
    return list(points) if order == "grid" else longest_first(points, counts)


def grid_lines(done: Sequence[GridPoint], todo: Sequence[GridPoint],
               counts: Mapping[str, Mapping[str, int]], plan, order: str) -> list[str]:
    """--dry-run's table: finished trials, then the rest in the order they will start, each with
    its resources (`plan`, a sweep.resources.ResourcePlan) and expected GFLOP."""
    lines = [f"{'trial_id':16s}  {'arch':14s} {'regime':16s} {'seed':>4s} {'train_size':>10s}  "
             f"{'resources':18s} {'GFLOP':>9s} status"]
    rows = [(p, "finished") for p in done] + [(p, "to run") for p in run_order(todo, counts, order)]
    for p, status in rows:
        c = p.config
        lines.append(f"{p.trial_id:16s}  {c.arch:14s} {c.regime:16s} {c.seed:4d} {c.train_size:>10s}  "
                     f"{plan.for_arch(c.arch).describe():18s} {expected_gflop(c, counts):9.0f} {status}")
    return lines + plan.describe()
