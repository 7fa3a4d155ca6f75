"""In which order the sweep hands trials to Ray: the longest expected trials first.

A grid mixes trials of very different lengths (a VGG11-BN fine-tune computes ~25x what a
SqueezeNet feature extraction does). Started in grid order, a sweep often ends with one long
trial running alone while the other slots idle. Starting the longest first (the LPT rule) keeps
the slots busy to the end: its wall time is at most 4/3 of the optimum, and in practice within a
few percent of the floor max(sum of trial times / slots, longest trial).

Ray Tune keeps this order: the grid_search list becomes the trials in list order
(BasicVariantGenerator), and with the default FIFOScheduler a freed slot goes to the first
pending trial in that order (ray/tune/schedulers/trial_scheduler.py, FIFOScheduler.
choose_trial_to_run; a reused actor is offered to that trial first). With several resource
shapes at once (per-architecture GPU fractions), a freed slot of one shape can only take a
trial of that shape, so the order holds per shape.

The cost model is arithmetic, not a measurement: images x epochs x FLOPs per image, where a
training image costs 3 forward passes when the whole network trains (backward ~ 2 forwards) and
1 in feature extraction (the backward pass stops at the new head), plus one forward pass per
validation image per epoch and per test and OOD image. Per-trial costs that are the same for
every trial of a sweep (decoding the data, starting the trial) do not change the order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sweep.grid import GridPoint
from trainables.config import TrialConfig, parse_train_size
from trainables.registry import ARCHS

FORWARD_GFLOP: dict[str, float] = {
    "inception_v3": 11.42,
    "densenet161": 15.45,
    "resnet152": 23.02,
    "resnet18": 3.63,
    "vgg11_bn": 15.21,
    "squeezenet1_0": 1.47,
    "mobilenet_v2": 0.60,
}
"""GFLOP of one eval forward pass per image at the architecture's own crop (convolutions and
matrix products, 2 FLOPs per multiply-add), traced by `python bench/footprint.py`
(trainables/footprint.py, torch.utils.flop_counter); tests/unit/test_schedule.py checks these
against a fresh trace."""
TRAIN_PASSES = {"finetune": 3.0, "scratch": 3.0, "feature_extract": 1.0}
"""Forward-pass equivalents per training image (forward + backward as far as it reaches)."""
DEFAULT_GFLOP = max(FORWARD_GFLOP.values())
"""For an architecture missing above: assume it is the most expensive (started early)."""


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
    arch = ARCHS.get(config.arch)  # a derived torchvision/timm model: DEFAULT_GFLOP at its crop
    crop = config.train_crop or (arch.input_size if arch else 224)
    native = arch.input_size if arch else crop
    per_image = FORWARD_GFLOP.get(config.arch, DEFAULT_GFLOP) * (crop / native) ** 2
    n = {split: sum(per_class.values()) for split, per_class in counts.items()}
    per_epoch = (train_images(config, counts.get("train", {})) * TRAIN_PASSES.get(config.regime, 3.0)
                 + n.get("val", 0))
    return per_image * (config.epochs * per_epoch + n.get("test", 0) + n.get("ood", 0))


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
