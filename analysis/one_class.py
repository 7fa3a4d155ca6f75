"""Broken models and the accuracy a broken model gets for free.

A trial that predicts one class for at least THRESHOLD of a split's images has learnt nothing
about that split (an unstable scratch run often collapses this way); its accuracy is the share
of that class, and the report says so next to its numbers ("predicts 'ants' for 46 of 46 test
images"). The majority-class accuracy of a split (always answering its most common class) is
drawn as a line in Fig. 2 and the learning curves.

Where the flag comes from: the trials table's `one_class_test` / `one_class_ood` columns when the
results carry them (the class name the trial predicted for >= 95% of that split's images, null
otherwise; its count and the split's size are the column sums of `test_confusion_json` /
`ood_confusion_json`), else the `predictions` table (its `pred_label` counts per trial and split).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from trainables.results.tables import ONE_CLASS_SHARE

THRESHOLD = ONE_CLASS_SHARE
SPLITS = ("test", "ood")
FLAG_COLUMNS = {split: f"one_class_{split}" for split in SPLITS}
"""The trials columns read when present (see the module docstring)."""


@dataclass(frozen=True)
class OneClass:
    """A trial that answered `label` for `count` of a split's `total` images."""

    trial_id: str
    split: str
    label: str
    count: int
    total: int

    def text(self, split_label: str | None = None) -> str:
        return f"predicts '{self.label}' for {self.count} of {self.total} {split_label or self.split} images"


@dataclass(frozen=True)
class Majority:
    """The most common true class of a split: the accuracy of always answering it."""

    split: str
    label: str
    count: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.count / self.total if self.total else float("nan")


def from_predictions(table: pa.Table) -> tuple[dict[tuple[str, str], OneClass], dict[str, Majority]]:
    """One-class trials and each split's majority class from a predictions table with columns
    trial_id, split, path, pred_label, true_label (string or dictionary-encoded)."""
    if table.num_rows == 0:
        return {}, {}
    df = pd.DataFrame({name: table[name].to_pandas() for name in
                       ("trial_id", "split", "path", "pred_label", "true_label")})
    for name in df.columns:
        df[name] = df[name].astype("category") if not isinstance(df[name].dtype, pd.CategoricalDtype) \
            else df[name]
    counts = df.groupby(["trial_id", "split", "pred_label"], observed=True).size()
    totals = counts.groupby(level=["trial_id", "split"], observed=True).sum()
    top = counts.sort_values(ascending=False, kind="stable").groupby(level=["trial_id", "split"],
                                                                      observed=True).head(1)
    flags = {}
    for (tid, split, label), n in top.items():
        total = int(totals.loc[(tid, split)])
        if total and n >= THRESHOLD * total:
            flags[(str(tid), str(split))] = OneClass(str(tid), str(split), str(label), int(n), total)
    images = df.drop_duplicates(["split", "path"])
    majority = {}
    for split, sub in images.groupby("split", observed=True):
        per = sub["true_label"].value_counts()
        if len(per):
            majority[str(split)] = Majority(str(split), str(per.index[0]), int(per.iloc[0]), int(per.sum()))
    return flags, majority


def from_columns(trials: pd.DataFrame) -> dict[tuple[str, str], OneClass]:
    """The flags the trials table carries itself (FLAG_COLUMNS), with counts from the confusion
    matrices (rows true, columns predicted)."""
    flags = {}
    for split, col in FLAG_COLUMNS.items():
        if col not in trials:
            continue
        confusion = f"{split}_confusion_json"
        classes = trials.get("classes_json")
        for i, label in trials[col].items():
            if not isinstance(label, str) or not label:
                continue
            count = total = 0
            text = trials.at[i, confusion] if confusion in trials else None
            named = classes is not None and isinstance(classes.at[i], str)
            names = json.loads(classes.at[i]) if named else []
            if isinstance(text, str) and label in names:
                m = np.asarray(json.loads(text))
                count, total = int(m[:, names.index(label)].sum()), int(m.sum())
            tid = str(trials.at[i, "trial_id"])
            flags[(tid, split)] = OneClass(tid, split, label, count, total)
    return flags


def val_majority(manifest: dict | None) -> Majority | None:
    """The validation split's majority class from the split manifest's entries (the val split
    has no predictions rows)."""
    if not manifest:
        return None
    labels = [e.get("label") for e in manifest.get("entries", []) if e.get("split") == "val"]
    if not labels:
        return None
    per = pd.Series(labels).value_counts()
    return Majority("val", str(per.index[0]), int(per.iloc[0]), int(per.sum()))


def with_val(majority: dict[str, Majority], manifest: dict | None) -> dict[str, Majority]:
    """The test and OOD majorities (from the predictions) plus the validation split's."""
    val = val_majority(manifest)
    return {**majority, **({"val": val} if val is not None else {})}


def summary(flags: dict[tuple[str, str], OneClass], trial_ids: list[str], seeds: dict[str, int],
            split_labels: dict[str, str]) -> str:
    """'seeds 1, 2 predict 'ants' for 46 of 46 test images; seed 1 predicts ...' over a group of
    trials (one line per split and class), or ''."""
    parts = []
    for split in SPLITS:
        hit: dict[tuple[str, int, int], list[int]] = {}
        for tid in trial_ids:
            f = flags.get((tid, split))
            if f is not None:
                hit.setdefault((f.label, f.count, f.total), []).append(seeds.get(tid, -1))
        for (label, count, total), who in hit.items():
            who = sorted(who)
            name = f"seed{'s' if len(who) > 1 else ''} {', '.join(str(s) for s in who)}"
            verb = "predict" if len(who) > 1 else "predicts"
            of = f"{count} of {total}" if total else "at least 95% of the"
            parts.append(f"{name} {verb} '{label}' for {of} {split_labels.get(split, split)} images")
    return "; ".join(parts)
