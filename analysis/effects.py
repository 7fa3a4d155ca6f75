"""Seed-paired comparisons on the same images: the data behind every claim's effect.

A comparison pairs, per architecture and seed, one model A with one model B (for example the
seed's better transfer regime on validation against the same seed's scratch model), reads
their per-image correctness on the test or OOD images from the `predictions` table, and keeps
the images every pair saw. The result is two seeds x images 0/1 matrices, which
`analysis.stats.paired_effect` turns into an effect with a 95% interval and p that count both
sources of noise (docs/analysis.md, "Claims").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analysis.aggregate import rank
from analysis.load import Results
from analysis.one_class import Majority, OneClass, from_columns, from_predictions


@dataclass(frozen=True)
class Pair:
    """One seed's two models (trial ids) of one comparison."""

    seed: int
    a: str
    b: str


class Correctness:
    """Per-image correctness of many trials, read from `predictions` in one pass.

    For each split, a dense trials x images matrix (1 right, 0 wrong, NaN not evaluated), so
    thousands of seed pairs cost array indexing, not one DataFrame per trial. The same pass
    finds the trials that answer one class (`one_class`) and each split's majority class
    (`majority`: analysis.one_class)."""

    def __init__(self, res: Results, trial_ids: Iterable[str]):
        ids = list(dict.fromkeys(str(t) for t in trial_ids))
        self.regime_of: dict[str, str] = dict(zip(res.trials["trial_id"].to_numpy(dtype=object),
                                                  res.trials["regime"].to_numpy(dtype=object), strict=True))
        self.rows: dict[str, dict[str, int]] = {}
        self.paths: dict[str, list[str]] = {}
        self.matrix: dict[str, np.ndarray] = {}
        self.one_class: dict[tuple[str, str], OneClass] = from_columns(res.trials)
        self.majority: dict[str, Majority] = {}
        if not ids:
            return
        table = res.prediction_table(ids, columns=["trial_id", "split", "path", "correct", "pred_label",
                                                   "true_label"], dictionary=True)
        if table.num_rows == 0:
            return
        flags, self.majority = from_predictions(table)
        self.one_class = {**flags, **self.one_class}  # a recorded flag wins over a recount
        split_codes, splits = _codes(table["split"])
        trial_codes, trials = _codes(table["trial_id"])
        path_codes, paths = _codes(table["path"])
        correct = pc.fill_null(table["correct"], False).to_numpy().astype(float)
        for k, split in enumerate(splits):
            sel = split_codes == k
            t_codes, t_used = pd.factorize(trial_codes[sel], sort=False)
            p_codes, p_used = pd.factorize(path_codes[sel], sort=False)
            m = np.full((len(t_used), len(p_used)), np.nan)
            m[t_codes, p_codes] = correct[sel]
            self.rows[split] = {trials[t]: i for i, t in enumerate(t_used)}
            self.paths[split] = [paths[p] for p in p_used]
            self.matrix[split] = m

    def has(self, trial_id: str, split: str) -> bool:
        return trial_id in self.rows.get(split, {})

    def stack(self, groups: list[tuple[str, ...]], split: str) -> tuple[np.ndarray, list[int], int]:
        """(X, used, images dropped): X is groups x k x images (k = trials per group) over the
        images every trial of every used group was evaluated on; `used` indexes the groups kept
        (a group with a trial that has no predictions on this split is left out)."""
        rows = self.rows.get(split, {})
        used = [g for g, trials in enumerate(groups) if all(t in rows for t in trials)]
        if not used:
            return np.empty((0, 0, 0)), [], 0
        m = self.matrix[split]
        x = np.stack([m[[rows[t] for t in groups[g]]] for g in used])  # used x k x all images
        seen = ~np.isnan(x)
        common = seen.all(axis=(0, 1))
        dropped = int((seen.any(axis=(0, 1)) & ~common).sum())
        return x[:, :, common], used, dropped

    def seeds_by_images(self, trial_ids: list[str], split: str) -> tuple[np.ndarray, list[str], int]:
        """(X, trials used, images dropped): one group of trials (e.g. every seed of one regime)
        as a trials x images 0/1 matrix over the images all of them were evaluated on."""
        x, used, dropped = self.stack([(t,) for t in trial_ids], split)
        if not used:
            return np.empty((0, 0)), [], 0
        return x[:, 0, :], [trial_ids[i] for i in used], dropped

    def paired(self, pairs: list[Pair], split: str) -> tuple[np.ndarray, np.ndarray, list[Pair], int]:
        """(A, B, pairs used, images dropped): seeds x images matrices over the images that every
        used pair's two models were both evaluated on. Pairs missing predictions are left out."""
        x, used, dropped = self.stack([(p.a, p.b) for p in pairs], split)
        if not used:
            return np.empty((0, 0)), np.empty((0, 0)), [], 0
        return x[:, 0, :], x[:, 1, :], [pairs[i] for i in used], dropped


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """(codes, names) of a string or dictionary Arrow column: names[codes[i]] is row i's value.
    (Concatenating dictionary chunks unifies their dictionaries.)"""
    arr = column.combine_chunks()
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr)
    codes, used = pd.factorize(arr.indices.to_numpy(zero_copy_only=False), sort=False)
    return codes, arr.dictionary.take(pa.array(used, type=arr.indices.type)).to_pylist()


def per_seed(trials: pd.DataFrame, arch: str) -> pd.DataFrame:
    """The arch's trials indexed by seed (one per seed; duplicates keep the better on validation)."""
    sub = rank(trials[trials["arch"] == arch])
    return sub.drop_duplicates("seed").set_index("seed")


def seed_pairs(a_trials: pd.DataFrame, b_trials: pd.DataFrame, arch: str) -> list[Pair]:
    """Pairs of the seeds that have both an A and a B trial of this architecture."""
    a, b = per_seed(a_trials, arch)["trial_id"], per_seed(b_trials, arch)["trial_id"]
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").sort_index()
    return [Pair(int(s), str(x), str(y)) for s, x, y in zip(both.index, both["a"], both["b"], strict=True)]
