"""A run's settings as the user chooses them: named starting points (`paper`, `demo`, `smoke`),
what a run changes from the study, the user's overrides on top, and the option checks of every CLI.

A preset is a set of `TrialConfig` overrides plus the sweep's default grid. The user's own
overrides (`--set`, `--config`) go on top. `deviations` lists, in words, everything a run does
differently from the study: the CLIs print it before training and the report shows it.

The option parsing shared by every entry point (no torch import):

Value checks (numbers, paths, names): each raises `UserError` naming the option and the fix, so
every entry point ends in one `error: ...` line (exit 2) instead of a traceback, a hang
(`--cpus-per-trial nan`) or a folder created somewhere unexpected (`--out ''` is the current
folder).

Overrides of any `TrialConfig` field: `--set KEY=VALUE` and `--config FILE.yaml`. Values are
parsed by the field's type (int, float, bool, str; a list of numbers as "0.1,1,10" or a YAML
list); a YAML file is a mapping of field names to values. The grid's own axes (arch, regime,
seed, train size, preset) have options of their own and cannot be set this way. `--set` wins over
`--config`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
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
        description="15 epochs, crops scaled to 160 px; by default mobilenet_v2 x the 3 regimes "
                    "x 3 seeds x train sizes 10 and all, plus the linear probe",
        overrides={"epochs": 15, "crop_scale": 160 / 224},
        archs=("mobilenet_v2",),
        regimes=REGIMES,
        seeds=3,
        train_sizes=("10", "all"),
        why="cut so that the demo fits in minutes on 2 CPU cores",
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


def _listed(values: list[Any], noun: str) -> str:
    if len(values) == 1:
        return f"{noun} {values[0]}" if noun in ("seed", "train size") else str(values[0])
    return f"{len(values)} {noun}s ({', '.join(map(str, values))})"


def run_words(configs: list[TrialConfig], data: str) -> str:
    """What will really run, from the configs themselves: the grid's axes, the data, and the
    epochs and learning-rate schedule of the regimes that train for epochs."""
    def axis(name: str, noun: str, seeded: bool = False) -> str:
        values = [getattr(c, name) for c in configs if not seeded or not REGIMES[c.regime].seedless]
        return _listed(list(dict.fromkeys(values)), noun)

    trials = f"{len(configs)} trials: " if len(configs) > 1 else ""
    parts = [axis("arch", "architecture"), axis("regime", "regime")]
    if any(not REGIMES[c.regime].seedless for c in configs):
        parts.append(axis("seed", "seed", seeded=True))
    parts.append(axis("train_size", "train size"))
    words = f"{trials}{' x '.join(parts)} on {data}"
    schedules = dict.fromkeys((c.epochs, c.step_size, c.gamma) for c in configs
                              if REGIMES[c.regime].uses_epochs)
    for epochs, step, gamma in schedules:
        drops = range(step, epochs, step)  # the epochs after which StepLR lowers it
        after = f"epoch{'s' if len(drops) > 1 else ''} {', '.join(map(str, drops))}"
        when = (f"the learning rate drops x{gamma:g} after {after}"
                if drops else "the learning rate never drops")
        words += f"; {epochs} epochs, StepLR {step}/{gamma:g} ({when})"
    return words


def schedule_notes(configs: list[TrialConfig]) -> list[str]:
    """A note per schedule under which StepLR never lowers the learning rate."""
    out = []
    for epochs, step in dict.fromkeys((c.epochs, c.step_size) for c in configs
                                      if REGIMES[c.regime].uses_epochs):
        if epochs <= step:
            out.append(f"epochs={epochs} <= step_size={step}: the learning rate never drops "
                       f"(StepLR lowers it after every {step} epochs). Fix, if you want it to "
                       f"drop: --set step_size=N with N < {epochs}")
    return out


@dataclass
class PresetMessage:
    """What the CLIs print before training: the preset and what will run (`runs`, from
    `run_words`), the user's overrides, the deviations, notes on the schedule."""

    preset: Preset
    overrides: dict[str, Any] = field(default_factory=dict)
    deviations: list[str] = field(default_factory=list)
    runs: str = ""
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        head = f"preset {self.preset.name}: {self.runs or self.preset.description}"
        out = [head]
        if self.overrides:
            out.append("overrides: " + ", ".join(f"{k}={v}" for k, v in self.overrides.items()))
        if self.deviations:
            why = f" ({self.preset.why})" if self.preset.why else ""
            out.append(f"differences from the study{why}:")
            out += [f"  - {d}" for d in self.deviations]
        else:
            out.append("no differences from the study's protocol")
        return out + [f"note: {n}" for n in self.notes]


NAME_PATTERN = re.compile(r"^\w[\w.+=@,-]*$")
"""Experiment names: letters (any script), digits and . _ - + = @ , ; not starting with a dot
or a dash. `?`, `#`, `%`, spaces and `/` would mean something else in a URI or a shell."""
MAX_NAME = 120


def finite(option: str, value: float, minimum: float | None = None, above: bool = False,
           example: str = "") -> float:
    """`value` as a finite float, at least (or, with `above`, more than) `minimum`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if minimum is None:
        ok = math.isfinite(number)
    else:
        ok = math.isfinite(number) and (number > minimum if above else number >= minimum)
    if not ok:
        bound = "" if minimum is None else (f" above {minimum:g}" if above else f" of at least "
                                            f"{minimum:g}")
        hint = f" (e.g. {example})" if example else ""
        raise UserError(f"{option} {value!r}: use a finite number{bound}{hint}")
    return number


def whole(option: str, value: int, minimum: int = 0, maximum: int | None = None) -> int:
    if value < minimum or (maximum is not None and value > maximum):
        span = f"between {minimum} and {maximum}" if maximum is not None else f"{minimum} or more"
        raise UserError(f"{option} must be a whole number {span}, got {value}")
    return value


def text_option(option: str, value: str) -> str:
    """Any text an option passes on: valid UTF-8 (what manifests and Parquet store)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(value).decode("utf-8", "backslashreplace")
        raise UserError(f"{option} {shown!r} is not valid UTF-8. Fix: rename the folder (or "
                        "pass the name in UTF-8)") from None
    if "\x00" in value:
        raise UserError(f"{option}: contains a NUL character")
    return value


def path_option(option: str, value: str | None) -> str | None:
    """A folder or URI option: not empty (an empty path is the current folder), valid UTF-8."""
    if value is None:
        return None
    text_option(option, value)
    if not value.strip():
        raise UserError(f"{option} is empty. Fix: pass a folder (or a URI such as s3://bucket/x)")
    return value


def experiment_name(option: str, value: str) -> str:
    """A name that is one plain folder on every filesystem and in every URI."""
    text_option(option, value)
    if not NAME_PATTERN.match(value) or len(value) > MAX_NAME:
        raise UserError(f"{option} {value!r}: use a plain folder name of letters, digits and "
                        f". _ - + = @ , (not starting with '.' or '-', at most {MAX_NAME} "
                        "characters); '/', '?', '#', '%' and spaces would change where results go")
    return value


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# ----------------------------------------------------------------- --set and --config
FIELD_TYPES: dict[str, str] = {f.name: str(f.type) for f in dataclasses.fields(TrialConfig)
                               if f.name not in IDENTITY_FIELDS}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _axis_hint(name: str) -> str:
    option = {"arch": "--arch/--archs", "regime": "--regime/--regimes", "seed": "--seed/--seeds",
              "train_size": "--train-size/--train-sizes", "preset": "--preset"}[name]
    return f"{name} is set with {option}, not --set"


def parse_value(name: str, text: Any, source: str) -> Any:
    """`text` (a CLI string or a YAML scalar) as the type of field `name`."""
    if name in IDENTITY_FIELDS:
        raise UserError(f"{source}: {_axis_hint(name)}")
    if name not in FIELD_TYPES:
        raise UserError(f"{source}: {name!r} is not a setting; choose from "
                        f"{', '.join(FIELD_TYPES)}")
    kind = FIELD_TYPES[name]
    raw = str(text).strip() if not isinstance(text, bool) else text
    try:
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise ValueError
        if kind in ("int", "float") and isinstance(text, bool):
            raise ValueError  # YAML's `yes`/`true` is not a number
        if kind == "int":
            if isinstance(text, float) and not text.is_integer():
                raise ValueError
            return int(str(raw), 10) if not isinstance(text, (int, float)) else int(text)
        if kind == "float":
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError
            return value
        if kind == "tuple[float, ...]":
            items = text if isinstance(text, (list, tuple)) else str(raw).replace(",", " ").split()
            values = tuple(float(v) for v in items if not isinstance(v, bool))
            if not values or len(values) != len(items) or not all(math.isfinite(v) for v in values):
                raise ValueError
            return values
        return str(raw)
    except (ValueError, TypeError):
        wanted = {"bool": "true or false", "int": "a whole number",
                  "float": "a finite number",
                  "tuple[float, ...]": "a list of numbers (e.g. 0.1,1,10)"}.get(kind, "text")
        raise UserError(f"{source}: {name}={text!r} is not {wanted}") from None


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """["epochs=10", "bf16=true"] -> {"epochs": 10, "bf16": True}."""
    out: dict[str, Any] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--set {item!r}: use KEY=VALUE, e.g. --set epochs=10")
        out[name.strip()] = parse_value(name.strip(), value, f"--set {item}")
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML (or JSON) mapping of settings."""
    import yaml

    path = Path(path)
    try:
        body = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"--config {path}: cannot be read ({exc.strerror or exc})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"--config {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise UserError(f"--config {path}: expected a mapping of settings (KEY: VALUE), "
                        f"found {type(body).__name__}")
    return {str(k): parse_value(str(k), v, f"--config {path}") for k, v in body.items()}


def collect(config_file: str | None, sets: list[str] | None) -> dict[str, Any]:
    """The user's overrides from both sources; --set wins."""
    out = load_config_file(config_file) if config_file else {}
    out.update(parse_sets(sets))
    return out


def add_arguments(parser: Any) -> None:
    """The two override options, the same in every CLI."""
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", dest="set_values",
                        help="override a trial setting (repeatable), e.g. --set epochs=10; "
                             f"settings: {', '.join(FIELD_TYPES)}")
    parser.add_argument("--config", metavar="FILE", dest="config_file",
                        help="YAML file of settings (KEY: VALUE) applied before --set")
