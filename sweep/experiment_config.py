"""One experiment folder, one configuration: what a sweep records at creation, and the refusal of
a sweep into it with other settings.

An experiment holds the grid of one configuration: the preset plus every override (`--set`,
`--config`), recorded in <experiment>/experiment.json by the first sweep. A later sweep into
it may grow the grid's axes (architectures, regimes, seeds, train sizes), but a setting that a
requested regime reads (trainables.regimes: `Regime.reads`) must be the recorded one: else
its trials would be averaged as seeds with trials of another configuration. It is refused
before any work, naming each field and the fix (`--name NEW`, or `--name auto`: a name derived
from the preset and the overrides, `demo-epochs10-bnfrozen`). A setting none of the requested
regimes reads changes no trial (`--regimes finetune --set probe_max_iter=500`) and is let through.

An experiment written before the record existed adopts the configuration its finished trials
were run with (their rows' config_json), when they agree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import pyarrow.compute as pc

from sweep.grid import GridSpec
from sweep.layout import Experiment
from trainables.config import IDENTITY_FIELDS, TrialConfig, identity_fields
from trainables.errors import UserError
from trainables.presets import MAX_NAME, PRESETS
from trainables.regimes import GRID_FIELDS, REGIMES
from trainables.results import tables as results
from trainables.results.storage import read_text, write_text_atomic

RECORD_VERSION = 1


def record_json(spec: GridSpec) -> str:
    """What <experiment>/experiment.json holds: the non-grid configuration."""
    return json.dumps({"version": RECORD_VERSION, "preset": spec.preset.name,
                       "overrides": json.loads(json.dumps(spec.overrides))}, indent=2,
                      sort_keys=True) + "\n"


def read_record(experiment: Experiment) -> tuple[str, dict[str, Any]] | None:
    """(preset name, overrides) recorded for the experiment, or None when it has no record."""
    text = read_text(experiment.config)
    if text is None:
        return None
    try:
        body = json.loads(text)
        return str(body["preset"]), dict(body.get("overrides") or {})
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{experiment.config} is corrupt. Fix: delete it: the next sweep adopts "
                        "the configuration of the experiment's finished trials") from None


def auto_name(spec: GridSpec) -> str:
    """A readable experiment name from the preset and the overrides, in the order given:
    demo + {epochs: 10, bn_mode: frozen} -> demo-epochs10-bnfrozen."""
    parts = [spec.preset.name]
    for name, value in spec.overrides.items():
        key = name.replace("_", "")
        if isinstance(value, bool):
            parts.append(key if value else f"no{key}")
        elif isinstance(value, str):
            parts.append(name.split("_")[0] + value)
        elif isinstance(value, (list, tuple)):
            parts.append(key + "_".join(f"{v:g}" for v in value))
        else:
            parts.append(f"{key}{value:g}" if isinstance(value, float) else f"{key}{value}")
    name = re.sub(r"[^\w.+=@,-]", "", "-".join(parts))
    return name if len(name) <= MAX_NAME else name[:MAX_NAME]


def _config(preset: str, overrides: dict[str, Any], arch: str, regime: str) -> TrialConfig | None:
    if preset not in PRESETS:
        return None
    try:
        return PRESETS[preset].trial(arch, regime, 0, "all", **overrides)
    except (UserError, TypeError):
        return None


def _value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def differences(before: dict[str, Any], after: TrialConfig) -> dict[str, tuple[Any, Any]]:
    """field -> (recorded, wanted) for the fields `after`'s regime reads that differ."""
    out = {}
    wanted = json.loads(after.to_json())
    for name in identity_fields(after.regime):
        if name not in GRID_FIELDS and name in before and before[name] != wanted[name]:
            out[name] = (before[name], wanted[name])
    return out


def compare(spec: GridSpec, recorded: Iterable[tuple[str, str, dict[str, Any]]]
            ) -> dict[str, tuple[Any, Any, set[str]]]:
    """field -> (recorded value, wanted value, regimes reading it) for each (arch, regime,
    recorded config) whose wanted config differs."""
    out: dict[str, tuple[Any, Any, set[str]]] = {}
    for arch, regime, before in recorded:
        wanted = _config(spec.preset.name, spec.overrides, arch, regime)
        if wanted is None:
            continue
        for name, (old, new) in differences(before, wanted).items():
            out.setdefault(name, (old, new, set()))[2].add(regime)
    return out


def from_record(spec: GridSpec, preset: str, overrides: dict[str, Any]
                ) -> list[tuple[str, str, dict[str, Any]]]:
    """The recorded configuration, per (arch, regime) of the requested grid."""
    out = []
    for arch in spec.resolved_archs:
        for regime in spec.resolved_regimes:
            if regime not in REGIMES:
                continue
            config = _config(preset, overrides, arch, regime)
            if config is None:  # a preset since removed: compare what was recorded as given
                config_dict = {**overrides, "preset": preset}
            else:
                config_dict = json.loads(config.to_json())
            out.append((arch, regime, config_dict))
    return out


def from_rows(experiment: Experiment) -> list[tuple[str, str, dict[str, Any]]]:
    """The distinct configurations of the experiment's finished trials (seed and train size
    apart), per (arch, regime): what an experiment without a record was run with."""
    table = results.read_table(experiment.results, "trials",
                               columns=["arch", "regime", "status", "config_json"])
    table = table.filter(pc.and_(pc.equal(table["status"], "ok"),
                                 pc.is_valid(table["config_json"])))
    if table.num_rows == 0:
        return []
    text = pc.replace_substring_regex(table["config_json"],
                                      r'"(seed|train_size)": ("[^"]*"|\d+)', '"\\1": null')
    keys = {(a, r, t) for a, r, t in zip(table["arch"].to_pylist(), table["regime"].to_pylist(),
                                          text.to_pylist(), strict=True)}
    return [(a, r, json.loads(t)) for a, r, t in sorted(keys)]


def config_problem(experiment: Experiment, spec: GridSpec) -> str | None:
    """Why this sweep may not run into `experiment` (another configuration), or None."""
    record = read_record(experiment)
    if record is not None:
        found = compare(spec, from_record(spec, *record))
        source = f"was created with preset {record[0]}" + (
            f" and {_overrides(record[1])}" if record[1] else "")
    else:
        rows = from_rows(experiment)
        mixed = _mixed(rows)
        if mixed:
            return (f"experiment {experiment.root} already holds trials of several "
                    f"configurations (they differ in {', '.join(mixed)}): a report of it would "
                    "average them as seeds. Fix: sweep into a new experiment with --name NEW or "
                    "--name auto, and report each configuration from its own folder")
        found = compare(spec, [r for r in rows if r[1] in spec.resolved_regimes])
        source = "holds finished trials run with other settings"
    if not found:
        return None
    listing = "; ".join(f"{name} {_value(old)} there, {_value(new)} now (read by "
                        f"{', '.join(sorted(regimes))})"
                        for name, (old, new, regimes) in found.items())
    return (f"experiment {experiment.root} {source}: this sweep differs in {listing}. One "
            "experiment holds one configuration (else its trials are averaged as seeds). Fix: "
            f"--name NEW for a new experiment, or --name auto (here: {auto_name(spec)}); the "
            "grid's axes (--archs, --regimes, --seeds, --train-sizes) may grow in the same one")


def _overrides(overrides: dict[str, Any]) -> str:
    return "--set " + " --set ".join(f"{k}={_value(v)}" for k, v in overrides.items())


def _mixed(rows: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    """Fields whose value differs between finished trials of one (arch, regime)."""
    seen: dict[tuple[str, str, str], Any] = {}
    mixed = []
    for arch, regime, config in rows:
        for name in identity_fields(regime):
            if name in GRID_FIELDS or name in IDENTITY_FIELDS or name not in config:
                continue
            key = (arch, regime, name)
            if key in seen and seen[key] != config[name] and name not in mixed:
                mixed.append(name)
            seen.setdefault(key, config[name])
    return mixed


def save_record(experiment: Experiment, spec: GridSpec) -> None:
    """Record the configuration when the experiment has none (a new one, or one adopted)."""
    if read_text(experiment.config) is None:
        write_text_atomic(experiment.config, record_json(spec))
