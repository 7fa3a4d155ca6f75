"""The trial grid: architecture x regime x seed x train size, as frozen TrialConfigs.

Architectures: the registry's names, any torchvision classifier, or timm/<model>; the last two are
checked (and derived, `trainables.derived`) only when named, so a grid of the study's models
never imports a model library here.

Regimes in which the seed changes nothing (`Regime.seedless` in trainables/regimes.py: the linear probe)
get seed 0 only: more seeds would repeat the same numbers and fake a zero-width interval."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trainables.archs import arch_problem
from trainables.config import TrialConfig, canonical_train_size, trial_id
from trainables.errors import UserError
from trainables.presets import Preset
from trainables.regimes import REGIMES

MAX_SEED = 2**32 - 1
"""Seeds above this overflow NumPy's and torch's seeding."""


def seeds_option(values: list[int] | None) -> int | tuple[int, ...] | None:
    """--seeds as typed: one number is a count (--seeds 5: seeds 0..4), more are the seeds."""
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


@dataclass(frozen=True)
class GridSpec:
    """What the user asked for; None means "the preset's default"."""

    preset: Preset
    archs: tuple[str, ...] | None = None
    regimes: tuple[str, ...] | None = None
    seeds: int | tuple[int, ...] | None = None
    """A count N (seeds 0..N-1) or the seeds themselves."""
    train_sizes: tuple[str, ...] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    """The user's --set/--config settings, applied to every trial on top of the preset."""

    def __post_init__(self) -> None:
        if isinstance(self.seeds, list):  # --seeds as parsed: a count or the seeds
            object.__setattr__(self, "seeds", seeds_option(self.seeds))

    @property
    def resolved_archs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.archs or self.preset.archs))

    @property
    def resolved_regimes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.regimes or self.preset.regimes))

    @property
    def resolved_seeds(self) -> int:
        """How many seeds each seeded configuration runs."""
        seeds = self.preset.seeds if self.seeds is None else self.seeds
        return len(set(seeds)) if isinstance(seeds, tuple) else seeds

    @property
    def seed_values(self) -> tuple[int, ...]:
        """The seeds themselves: --seeds 0 1 2 as given (deduplicated), a count N as 0..N-1."""
        if isinstance(self.seeds, tuple):
            return tuple(dict.fromkeys(self.seeds))
        return tuple(range(self.resolved_seeds))

    @property
    def resolved_train_sizes(self) -> tuple[str, ...]:
        """Canonical and deduplicated: "all ALL", "0.5 .5" and "2 02" are one size each."""
        sizes = self.train_sizes or self.preset.train_sizes
        out = []
        for size in sizes:
            try:
                out.append(canonical_train_size(size))
            except UserError:
                out.append(size)  # reported by problems()
        return tuple(dict.fromkeys(out))

    def problems(self) -> list[str]:
        """Every invalid option at once (each names the option and the valid choices)."""
        out = []
        out += [p.replace("--arch ", "--archs ", 1) for p in map(arch_problem, self.resolved_archs)
                if p]
        unknown = [r for r in self.resolved_regimes if r not in REGIMES]
        if unknown:
            out.append(f"--regimes {' '.join(unknown)}: unknown; choose from {', '.join(REGIMES)}")
        if isinstance(self.seeds, tuple):
            out += [f"--seeds {s}: a seed is a whole number from 0 to {MAX_SEED}"
                    for s in self.seeds if not 0 <= s <= MAX_SEED]
        elif self.resolved_seeds < 1:
            out.append(f"--seeds must be at least 1 (the number of seeds 0..N-1), "
                       f"got {self.resolved_seeds}")
        for size in self.resolved_train_sizes:
            try:
                canonical_train_size(size)
            except UserError as exc:
                out.append(str(exc))
        if not out:
            for arch in self.resolved_archs:  # a setting one architecture cannot take
                try:
                    self.preset.trial(arch, self.resolved_regimes[0], 0, **self.overrides)
                except UserError as exc:
                    out.append(f"{arch}: {exc}")
        return out

    @property
    def pretrained_archs(self) -> list[str]:
        """Architectures whose ImageNet weights this grid loads (any pretrained regime)."""
        if not any(REGIMES[r].pretrained for r in self.resolved_regimes if r in REGIMES):
            return []
        return list(self.resolved_archs)


def build_grid(spec: GridSpec) -> list[TrialConfig]:
    """All trial configs in a stable order (arch, regime, train size, seed); seedless regimes
    get seed 0 only."""
    problems = spec.problems()
    if problems:
        raise UserError("; ".join(problems))
    return [spec.preset.trial(arch, regime, seed, size, **spec.overrides)
            for arch in spec.resolved_archs
            for regime in spec.resolved_regimes
            for size in spec.resolved_train_sizes
            for seed in ((0,) if REGIMES[regime].seedless else spec.seed_values)]


@dataclass(frozen=True)
class GridPoint:
    config: TrialConfig
    trial_id: str


def with_ids(configs: Sequence[TrialConfig], manifest_hash: str) -> list[GridPoint]:
    return [GridPoint(c, trial_id(c, manifest_hash)) for c in configs]


def split_done(points: Sequence[GridPoint], finished: Collection[str],
               stored_as: Mapping[str, str] | None = None
               ) -> tuple[list[GridPoint], list[GridPoint]]:
    """(already finished with an ok row, still to run). `stored_as` maps a trial id to the id an
    older row of the same trial is stored under (written when the id hashed every field); such a
    point is done, and carries the stored id from here on."""
    stored_as = stored_as or {}
    done, todo = [], []
    for p in points:
        if p.trial_id in finished:
            done.append(p)
        elif stored_as.get(p.trial_id) in finished:
            done.append(GridPoint(p.config, stored_as[p.trial_id]))
        else:
            todo.append(p)
    return done, todo
