"""Named starting points (`paper`, `demo`, `smoke`) and what a run changes from the study.

A preset is a set of `TrialConfig` overrides plus the sweep's default grid. The user's own
overrides (`--set`, `--config`) go on top. `deviations` lists, in words, everything a run does
differently from the study: the CLIs print it before training and the report shows it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from trainables.archs import ARCHS, STUDY_ARCHS
from trainables.config import IDENTITY_FIELDS, TrialConfig
from trainables.errors import UserError
from trainables.regimes import REGIMES, STUDY_REGIMES

STUDY_SEEDS = 1
"""The study trained each architecture x regime once."""


@dataclass(frozen=True)
class Preset:
    """A named starting point: trial-config overrides plus the sweep's default grid."""

    name: str
    description: str
    overrides: dict[str, Any]
    archs: tuple[str, ...]
    regimes: tuple[str, ...] = STUDY_REGIMES
    seeds: int = 1
    train_sizes: tuple[str, ...] = ("all",)
    why: str = ""
    """Why this preset cuts what it cuts (printed with its deviations)."""

    def trial(self, arch: str, regime: str, seed: int = 0, train_size: str = "all",
              **overrides: Any) -> TrialConfig:
        """The preset's config for one grid point; `overrides` (the user's) win over the preset's."""
        return TrialConfig(arch=arch, regime=regime, seed=seed, train_size=str(train_size),
                           preset=self.name, **{**self.overrides, **overrides})


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper",
        description="exactly the study's protocol: 30 epochs, SGD 0.001/0.9, StepLR 7/0.1, batch "
                    "6, the authors' eval transforms per split; 5 seeds per configuration",
        overrides={},
        archs=STUDY_ARCHS,
        seeds=5,
    ),
    "demo": Preset(
        name="demo",
        description="the embedded default: mobilenet_v2 x 3 regimes x 3 seeds x 2 train sizes "
                    "on 2 CPU cores, plus the linear probe (one trial per train size)",
        overrides={"epochs": 15, "crop_scale": 160 / 224},
        archs=("mobilenet_v2",),
        regimes=REGIMES,
        seeds=3,
        train_sizes=("10", "all"),
        why="cut so that its 18 SGD trials fit in minutes on 2 CPU cores (StepLR step 7 kept: the "
            "learning rate still drops at epochs 7 and 14)",
    ),
    "smoke": Preset(
        name="smoke",
        description="seconds per trial, for tests: tiny crops, 2 epochs",
        overrides={"epochs": 2, "step_size": 1, "crop_scale": 64 / 224},
        archs=("mobilenet_v2",),
        seeds=1,
        why="for tests: seconds per trial",
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"--preset {name!r} is unknown; choose from {', '.join(PRESETS)}") from None


def _describe_change(name: str, study: Any, used: Any) -> str:
    if isinstance(study, float) or isinstance(used, float):
        return f"{name} {study:g} -> {used:g}"
    return f"{name} {study} -> {used}"


def config_deviations(config: TrialConfig) -> list[str]:
    """Each field of `config` that differs from the study's protocol for its architecture."""
    study = TrialConfig(arch=config.arch, regime=config.regime, seed=config.seed,
                        train_size=config.train_size)
    out = []
    for f in dataclasses.fields(TrialConfig):
        if f.name in IDENTITY_FIELDS or f.name == "crop_scale":
            continue
        before, after = getattr(study, f.name), getattr(config, f.name)
        if before != after:
            out.append(_describe_change(f.name, before, after))
    return out


def deviations(configs: list[TrialConfig], *, data: str, ood_kind: str, seeds: int,
               train_sizes: tuple[str, ...] = ("all",)) -> list[str]:
    """Everything a run does differently from the study, one phrase each.

    `data` says which images ("the embedded ants-vs-bees photos" or the user's folder),
    `ood_kind` the manifest's OOD kind. An empty list means the run is the study's protocol on
    the given data."""
    out: list[str] = []
    archs = list(dict.fromkeys(c.arch for c in configs))
    extra = [a for a in archs if a not in ARCHS or not ARCHS[a].in_study]
    missing = [a for a in STUDY_ARCHS if a not in archs]
    if extra:
        out.append(f"architectures outside the study: {', '.join(extra)}")
    new_regimes = [r for r in dict.fromkeys(c.regime for c in configs) if r not in STUDY_REGIMES]
    if new_regimes:
        out.append(f"regimes outside the study: {', '.join(new_regimes)} (docs/linear_probe.md)")
    if missing:
        out.append(f"study architectures not run: {', '.join(missing)}")
    out.append(f"data: {data} (the study: 100 TEL + 130 other photos, not public)")
    if ood_kind != "real":
        out.append(f"OOD: {ood_kind} (the study: a separate folder from another source)")
    if seeds != STUDY_SEEDS:
        out.append(f"seeds: {seeds} per configuration (the study: one run)")
    sizes = [s for s in train_sizes if s != "all"]
    if sizes:
        out.append(f"train sizes {', '.join(sizes)} per class besides all (the study: all)")
    changes: dict[str, list[str]] = {}
    for c in configs:
        for change in config_deviations(c):
            changes.setdefault(change, []).append(c.arch)
    for change, who in changes.items():
        scope = "" if set(who) == set(archs) else f" ({', '.join(dict.fromkeys(who))})"
        out.append(change + scope)
    return out


def user_overrides(config: TrialConfig, preset: Preset) -> dict[str, Any]:
    """The fields the user set on top of the preset (what `--set`/`--config` changed)."""
    base = preset.trial(config.arch, config.regime, config.seed, config.train_size)
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(TrialConfig)
            if getattr(config, f.name) != getattr(base, f.name)}


@dataclass
class PresetMessage:
    """What the CLIs print before training: the preset, the user's overrides, the deviations."""

    preset: Preset
    overrides: dict[str, Any] = field(default_factory=dict)
    deviations: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        head = f"preset {self.preset.name}: {self.preset.description}"
        out = [head]
        if self.overrides:
            out.append("overrides: " + ", ".join(f"{k}={v}" for k, v in self.overrides.items()))
        if self.deviations:
            why = f" ({self.preset.why})" if self.preset.why else ""
            out.append(f"differences from the study{why}:")
            out += [f"  - {d}" for d in self.deviations]
        else:
            out.append("no differences from the study's protocol")
        return out
