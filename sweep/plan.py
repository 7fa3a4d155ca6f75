"""Step 1 of a sweep: the command's options, checked, as one plan. Nothing is read or run yet.

The plan's parts follow the CLI's option groups: which grid (`spec`), which images
(`DataChoice`), what each trial may use (`ResourceChoice`), where results land and how the run
goes. Step 2 (sweep/preflight.py) checks the plan against the data, the weights and
the storage; step 3 (sweep/tuner.py) runs it on Ray Tune.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

from sweep.grid import GridSpec
from sweep.layout import Experiment
from sweep.option_checks import check_options
from sweep.resources import parse_cpus_per_trial, parse_gpus_per_trial
from trainables import presets as overrides
from trainables.presets import Preset, get_preset


@dataclass(frozen=True)
class DataChoice:
    """The images: --data, --ood and how the pool is split and checked."""

    data: str | None = None
    """A folder or URI; None: the embedded demo set."""
    ood: str | None = None
    split_seed: int = 0
    skip_bad_images: bool = False
    allow_duplicates: bool = False

    @property
    def embedded(self) -> bool:
        return self.data is None

    def describe(self) -> str:
        """How the preset message names the data."""
        return "the embedded ants-vs-bees photos" if self.data is None else f"--data {self.data}"


@dataclass(frozen=True)
class ResourceChoice:
    """What each trial asks Ray for, and which Ray."""

    gpus: float | None
    """GPUs per trial; None: "auto" (a fraction per architecture)."""
    cpus: float
    gpu_memory_gb: float | None = None
    measure_memory: bool = True
    """--memory-check: measure each architecture's peak GPU memory on the first GPU node."""
    address: str | None = None


@dataclass(frozen=True)
class SweepPlan:
    preset: Preset
    spec: GridSpec
    data: DataChoice
    resources: ResourceChoice
    experiment: Experiment
    storage: str
    """--storage as given (messages name it)."""
    order: str = "longest-first"
    keep_models: str = "best"
    checkpoint_every_s: float = 300.0
    max_failures: int = 2
    progress_interval: float = 30.0
    dry_run: bool = False
    triage: bool = False
    argv: tuple[str, ...] = ()
    """The command line as typed (--triage prints it back, changed)."""
    started: float = field(default_factory=time.time)


AUTO_NAME = "auto"
"""--name auto: a name derived from the preset and the overrides (sweep/experiment_config.py)."""


def experiment_name(name: str | None, spec: GridSpec) -> str:
    """--name as given; none: the preset's; "auto": derived from the preset and overrides."""
    from sweep.experiment_config import auto_name

    if name == AUTO_NAME:
        return auto_name(spec)
    return name or spec.preset.name


def make_plan(args: argparse.Namespace) -> SweepPlan:
    """The parsed options as a plan; one UserError naming the first bad option."""
    from sweep import triage

    preset = get_preset(args.preset)
    spec = GridSpec(preset=preset, archs=tuple(args.archs) if args.archs else None,
                    regimes=tuple(args.regimes) if args.regimes else None, seeds=args.seeds,
                    train_sizes=tuple(args.train_sizes) if args.train_sizes else None,
                    overrides=overrides.collect(args.config_file, args.set_values))
    if args.triage:
        spec = triage.triage_spec(spec)
    resources = ResourceChoice(parse_gpus_per_trial(args.gpus_per_trial),
                               parse_cpus_per_trial(args.cpus_per_trial), args.gpu_memory_gb,
                               args.memory_check, args.address)
    check_options(args, spec)
    return SweepPlan(
        preset, spec,
        DataChoice(args.data, args.ood, args.split_seed, args.skip_bad_images,
                   args.allow_duplicates),
        resources, Experiment.at(args.storage, experiment_name(args.name, spec)), args.storage,
        order=args.order, keep_models=args.keep_models,
        checkpoint_every_s=60.0 * args.checkpoint_every, max_failures=args.max_failures,
        progress_interval=args.progress_interval, dry_run=args.dry_run, triage=args.triage,
        argv=tuple(args.argv))
