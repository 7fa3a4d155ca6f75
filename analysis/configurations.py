"""Which finished trials share a configuration: the report never averages trials of different
settings as if they were seeds.

Trials are pooled per architecture x regime x train size. Within one architecture x regime, every
`TrialConfig` field the regime reads (trainables.regimes: `Regime.reads`; the seed and train size
apart) must hold one value; else the results mix configurations (a sweep into an experiment by
older code with other --set values, folders copied together) and the report refuses them, naming
each field with its values and trial counts. `--where FIELD=VALUE` keeps the trials of one
configuration (the report then says so in its notes).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from trainables.config import identity_fields
from trainables.errors import UserError
from trainables.presets import parse_sets
from trainables.regimes import GRID_FIELDS
from trainables.results.tables import read_table

KEYS_OUT = r'"(seed|train_size|preset)": ("[^"]*"|\d+)'
"""The parts of a config_json that differ between trials of one configuration."""


def parse_where(items: list[str] | None) -> dict[str, Any]:
    """--where KEY=VALUE items as typed values (the --set parser: names and types checked)."""
    try:
        return parse_sets(items)
    except UserError as exc:
        raise UserError(str(exc).replace("--set", "--where")) from None


def _configs(root: str, trial_ids: list[str]) -> pa.Table:
    table = read_table(root, "trials", columns=["trial_id", "arch", "regime", "config_json"],
                       filter=pc.field("trial_id").isin(pa.array(trial_ids, pa.string())))
    return table.filter(pc.is_valid(table["config_json"]))


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else json.dumps(value) if isinstance(
        value, list) else str(value)


def mixed_settings(root: str, trial_ids: list[str]) -> dict[str, Counter]:
    """field -> Counter(value shown -> trials) for each field read by a regime whose value
    differs between these trials of one architecture x regime. Trials without config_json
    (older or external rows) are not compared."""
    table = _configs(root, trial_ids)
    if table.num_rows == 0:
        return {}
    stripped = pc.replace_substring_regex(table["config_json"], KEYS_OUT, '"\\1": null')
    groups = Counter(zip(table["arch"].to_pylist(), table["regime"].to_pylist(),
                         stripped.to_pylist(), strict=True))
    values: dict[tuple[str, str, str], Counter] = {}
    for (arch, regime, text), count in groups.items():
        config = json.loads(text)
        for name in identity_fields(regime):
            if name not in GRID_FIELDS and name in config:
                values.setdefault((arch, regime, name), Counter())[_shown(config[name])] += count
    out: dict[str, Counter] = {}
    for (_, _, name), counts in values.items():
        if len(counts) > 1:
            out.setdefault(name, Counter()).update(counts)
    return out


def check_one_configuration(root: str, trials: pd.DataFrame) -> None:
    """UserError when the ok trials mix configurations, naming the fields and the fix."""
    mixed = mixed_settings(root, trials["trial_id"].astype(str).tolist())
    if not mixed:
        return
    listing = "; ".join(f"{name} " + ", ".join(f"{v} ({n} trials)" for v, n in counts.items())
                        for name, counts in mixed.items())
    name, counts = next(iter(mixed.items()))
    raise UserError(f"results {root} hold trials of different configurations, which the report "
                    f"would average as seeds: {listing}. Fix: report one configuration with "
                    f"--where {name}={next(iter(counts))} (repeatable), or give each its own "
                    "results folder (a sweep with other settings: --name auto)")


def select(root: str, trials: pd.DataFrame, where: dict[str, Any]) -> pd.DataFrame:
    """The trials whose config_json holds every `where` value."""
    if not where or trials.empty:
        return trials
    table = _configs(root, trials["trial_id"].astype(str).tolist())
    wanted = json.loads(json.dumps(where))
    keep = {tid for tid, text in zip(table["trial_id"].to_pylist(),
                                     table["config_json"].to_pylist(), strict=True)
            if all(json.loads(text).get(k) == v for k, v in wanted.items())}
    return trials[trials["trial_id"].isin(keep)].reset_index(drop=True)
