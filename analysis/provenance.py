"""The report's provenance block: which code, split, libraries and machines made these numbers,
and every way the trials differ from the study.

Read from the trials table's provenance columns (docs/results.md): config_json, code_version,
library_versions_json, device, split_manifest_hash, preset, overrides_json. The differences from
the study are `trainables.presets.deviations` (the same list the sweep and the single-trial CLI
print before training), computed here from the configs the trials recorded.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from analysis.load import Results, is_full_size

PROVENANCE_COLUMNS = ["trial_id", "arch", "regime", "train_size", "seed", "status", "preset",
                      "config_json", "overrides_json", "code_version", "library_versions_json",
                      "device", "split_manifest_hash"]
EMBEDDED_DATA = "the embedded ants-vs-bees photos"
"""How trainables.presets.deviations names the embedded data (as sweep.run and train say it)."""


@dataclass
class Provenance:
    n_trials: int
    n_failed: int
    code_versions: list[tuple[str, int]]
    split_hashes: list[tuple[str, int]]
    libraries: list[tuple[str, str]]
    """(library, version(s)); several versions are listed with their trial counts."""
    devices: list[tuple[str, int]]
    presets: list[tuple[str, str]]
    """(preset, its description and why it cuts what it cuts)."""
    deviations: list[str] = field(default_factory=list)
    """Everything these trials do differently from the study, one phrase each."""
    overrides: list[tuple[str, int]] = field(default_factory=list)
    """The users' --set/--config overrides as recorded (overrides_json), with trial counts."""
    unreadable: list[str] = field(default_factory=list)
    """Recorded config fields this code version does not know (older or newer rows)."""
    configs: int = 0
    """Distinct recorded trial configs the deviations were computed from."""

    def lines(self) -> list[str]:
        """Plain-text lines for the console."""
        out = [f"code version: {_counted(self.code_versions)}",
               f"split manifest: {_counted(self.split_hashes)}",
               f"devices: {_counted(self.devices)}",
               "libraries: " + ", ".join(f"{k} {v}" for k, v in self.libraries)]
        return out + [f"differs from the study: {d}" for d in self.deviations]


def _counted(items: list[tuple[str, int]]) -> str:
    if not items:
        return "not recorded"
    if len(items) == 1:
        return items[0][0]
    return "; ".join(f"{v} ({n} trials)" for v, n in items)


def trial_configs(texts: list[tuple[str, int]]) -> tuple[list[Any], list[str]]:
    """(TrialConfig per distinct recorded config_json, field names this version does not know).
    Unknown fields are dropped; a config that still does not build is skipped."""
    from trainables.config import TrialConfig
    from trainables.errors import UserError

    known = {f.name for f in dataclasses.fields(TrialConfig)}
    configs, unknown = [], set()
    for text, _count in texts:
        try:
            raw = json.loads(text)
        except ValueError:
            continue
        unknown |= set(raw) - known
        try:
            configs.append(TrialConfig(**{k: v for k, v in raw.items() if k in known}))
        except (UserError, TypeError):
            continue
    return configs, sorted(unknown)


def _data_words(res: Results) -> str:
    if res.manifest_layout == "embedded-demo":
        return EMBEDDED_DATA
    from analysis.image_roots import find_recorded

    _, recorded = find_recorded(res)
    if recorded and recorded.get("data"):
        return f"the folder {recorded['data']}"
    return "the user's folder"


def collect(res: Results) -> Provenance:
    """Read the provenance columns of every trial (failed ones included)."""
    from trainables.presets import PRESETS, deviations
    from trainables.results.tables import TABLES, read_checked

    names = TABLES["trials"].names
    table = read_checked(res.root, "trials", columns=[c for c in PROVENANCE_COLUMNS if c in names])
    cols = {name: table[name].to_pylist() for name in table.column_names}

    def counted(name: str) -> list[tuple[str, int]]:
        return Counter(v for v in cols.get(name, []) if v).most_common()

    libs: dict[str, Counter] = {}
    for text, count in counted("library_versions_json"):
        try:
            versions = json.loads(text)
        except ValueError:
            continue
        for lib, version in versions.items():
            libs.setdefault(lib, Counter())[str(version)] += count
    libraries = [(lib, _counted(list(c.most_common())) if len(c) > 1 else next(iter(c)))
                 for lib, c in sorted(libs.items())]
    configs, unknown = trial_configs(counted("config_json"))
    ok = res.trials
    seeds = int(ok.groupby(["arch", "regime", "train_size"])["seed"].nunique().max()) if len(ok) else 0
    sizes = tuple(sorted(ok["train_size"].unique(), key=lambda s: (is_full_size(s), s)))
    ood_kind = res.ood_kinds[0] if res.ood_kinds else "none"
    found = deviations(configs, data=_data_words(res), ood_kind=ood_kind, seeds=seeds,
                       train_sizes=sizes) if configs else []
    presets = []
    for name, _ in counted("preset"):
        preset = PRESETS.get(name)
        words = "unknown preset" if preset is None else preset.description + (
            f" ({preset.why})" if preset.why else "")
        presets.append((name, words))
    overrides = [(text, k) for text, k in counted("overrides_json") if text not in ("{}", "null")]
    return Provenance(n_trials=table.num_rows, n_failed=len(res.failed),
                      code_versions=counted("code_version"), split_hashes=counted("split_manifest_hash"),
                      libraries=libraries, devices=counted("device"), presets=presets,
                      deviations=found, overrides=overrides, unreadable=unknown, configs=len(configs))
