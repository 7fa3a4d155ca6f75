"""The split manifest: which image is in which split, by content hash. No torch import.

Every image of a run is an `Entry` (which folder it is under, its relative path, class, split and
content hash). The manifest is written as canonical JSON and hashed; the same files and split seed
give a byte-identical manifest, and its hash is on every result row. `analysis` reads manifests
too, without importing torch.

The same hashes find byte-identical images (`find_duplicates`). What they do:
- the same image in train and in an evaluation split (val, test, OOD): the model is scored on an
  image it trained on; the run measures memorisation. Refused unless the user opts in
  (`--allow-duplicates`, `leak_refusal`);
- the same image under two classes: contradictory labels (a warning);
- copies within one class of a pool: one copy is used, the others are set aside (split "unused"
  in the record), so that no copy can straddle the 60/20/20 split;
- anything else (e.g. copies inside one split): a warning.
Every group is recorded in the manifest's `duplicates` (absent when there are none, so a clean
folder's manifest and hash do not change).

One results folder holds one split (`other_split`): trials of different data pooled into one
folder would make every band and verdict a mixture.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from trainables.config import parse_train_size
from trainables.errors import DataError
from trainables.results.storage import read_bytes, write_text_atomic
from trainables.results.tables import read_table

SPLITS = ("train", "val", "test")
EVAL_SPLITS = ("val", "test", "ood")


@dataclass(frozen=True)
class Entry:
    root: str  # "data" or "ood": which folder `path` is relative to
    path: str
    label: str
    split: str  # train | val | test | ood
    sha256: str


def _entry_order(entry: Entry) -> tuple[str, str, str]:
    return (entry.split, entry.root, entry.path)


@dataclass
class Manifest:
    classes: list[str]
    entries: list[Entry]
    layout: str
    split_seed: int
    ood_kind: str = "none"
    """"none", "real" (a separate folder) or "synthetic shift: ..." (see trainables/data/demo.py)."""
    shift_seed: int | None = None
    caps: dict[str, int] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    """Groups of byte-identical files (`find_duplicates`); written only when there are any,
    so a folder without duplicates keeps the manifest (and hash) it always had."""
    warnings: list[str] = field(default_factory=list, compare=False, repr=False)
    """What the scan ignored or found suspicious, for the CLIs to print; not part of the JSON."""

    def __post_init__(self) -> None:
        # One canonical order, the one the JSON is written in: a manifest built here and one
        # read back from disk (as every sweep trial does) must feed images in the same order,
        # or the same seed shuffles different images into each batch.
        self.entries = sorted(self.entries, key=_entry_order)

    def to_json(self) -> str:
        """Canonical bytes: sorted keys and entries, no paths outside the data folders, no times."""
        body = {
            "classes": self.classes, "layout": self.layout, "split_seed": self.split_seed,
            "ood_kind": self.ood_kind, "shift_seed": self.shift_seed, "caps": self.caps,
            "skipped": sorted(self.skipped, key=lambda s: s["path"]),
            "entries": [e.__dict__ for e in sorted(self.entries, key=_entry_order)],
        }
        if self.duplicates:
            body["duplicates"] = self.duplicates
        return json.dumps(body, sort_keys=True, indent=1, ensure_ascii=False) + "\n"

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        body = json.loads(text)
        body["entries"] = [Entry(**e) for e in body["entries"]]
        body.pop("warnings", None)
        return cls(**body)

    @classmethod
    def parse(cls, text: str | bytes, where: str, fix: str) -> Manifest:
        """from_json, with one UserError naming the file when it is corrupt or truncated."""
        try:
            if isinstance(text, bytes):
                text = text.decode("utf-8")
            manifest = cls.from_json(text)
            if not isinstance(manifest.classes, list) or not manifest.entries:
                raise ValueError("no classes or no entries")
            return manifest
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise DataError(f"{where} is corrupt or truncated ({reason}). Fix: {fix}") from None

    def save(self, path: str | Path) -> str:
        write_text_atomic(str(path), self.to_json())
        return self.hash

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


    def split_entries(self, split: str) -> list[Entry]:
        return [e for e in self.entries if e.split == split]

    def set_aside(self) -> dict[str, int]:
        """Per class, the byte-identical copies set aside (split "unused"); only classes with some."""
        out: dict[str, int] = {}
        for group in self.duplicates:
            for f in group["files"]:
                if f["split"] == UNUSED:
                    out[f["label"]] = out.get(f["label"], 0) + 1
        return out

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for e in self.entries:
            out.setdefault(e.split, {c: 0 for c in self.classes})[e.label] += 1
        return out


@functools.cache
def _uri_filesystem(uri: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path) for a data root URI, made once per process (an S3 client)."""
    import pyarrow.fs as pafs

    return pafs.FileSystem.from_uri(uri)


def read_entry(source: Any, entry: Entry) -> bytes:
    """The bytes of one manifest entry from an image source (anything with `open(entry)`, such
    as DataRoots); a DataError naming the file when it cannot be read."""
    try:
        with source.open(entry) as f:
            return f.read()
    except OSError as exc:
        where = entry.path if entry.root in ("data", "") else f"{entry.root}/{entry.path}"
        raise DataError(f"{where}: cannot be read ({exc.strerror or exc}); was it moved after the "
                        "split manifest was built?") from None


def matches(data: bytes, entry: Entry) -> bool:
    """Whether `data` is the content the manifest recorded for `entry` (its sha256 prefix)."""
    return hashlib.sha256(data).hexdigest().startswith(entry.sha256)


DATA_ROOTS_FILE = "data_roots.json"
"""An experiment's record of its `DataRoots`, beside its manifest.json: {"data": DIR or URI,
"ood": DIR, URI or null, "embedded": bool, "manifest_hash": HASH}. The sweep's preflight writes
it, the report reads it (analysis.image_roots) to find the images by itself."""


@dataclass(frozen=True)
class DataRoots:
    """Where a manifest's relative paths live on this machine."""

    data: str
    ood: str | None = None

    def resolve(self, entry: Entry) -> Path:
        """The entry's file on this machine."""
        return Path(self._base(entry)) / entry.path

    def open(self, entry: Entry) -> BinaryIO:
        """The entry's bytes, as a file object (what decoding reads). A root may also be a
        pyarrow filesystem URI (s3://bucket/pool), read through pyarrow."""
        base = self._base(entry)
        if "://" in base:
            import io

            fs, root = _uri_filesystem(base)
            with fs.open_input_stream(f"{root.rstrip('/')}/{entry.path}") as f:
                return io.BytesIO(f.read())
        return open(self.resolve(entry), "rb")  # noqa: SIM115 - the caller closes it

    def _base(self, entry: Entry) -> str:
        base = self.data if entry.root == "data" else self.ood
        if base is None:
            raise DataError(f"manifest entry {entry.path} is under the OOD folder, but no --ood "
                            "folder was given")
        return base


def select_train(entries: list[Entry], classes: list[str], train_size: str, seed: int,
                 set_aside: dict[str, int] | None = None) -> list[Entry]:
    """Shrink only the train split: N images per class or a fraction of each class, drawn with
    `seed` (a trial's `TrialConfig.subset_seed`: its own per seed by default). For one seed the
    subsets are nested (smaller sizes are prefixes of the permutation that seed draws).
    `set_aside` (Manifest.set_aside): copies per class, named in the error so its count adds up."""
    size = parse_train_size(train_size)
    if size is None:
        return entries
    chosen = []
    for c in classes:
        items = sorted((e for e in entries if e.label == c), key=lambda e: e.path)
        random.Random(seed).shuffle(items)
        k = size if isinstance(size, int) else max(1, round(len(items) * size))
        if k > len(items):
            copies = (set_aside or {}).get(c, 0)
            note = (f" (distinct images; {copies} byte-identical {copies_word(copies)} of its "
                    "images set aside, listed in the manifest)") if copies else ""
            raise DataError(f"--train-sizes {train_size}: class {c!r} has only {len(items)} "
                            f"training images{note}. Fix: use at most {len(items)} or a fraction")
        chosen.extend(items[:k])
    return chosen


# ----------------------------------------------------------------- duplicates (leakage)
UNUSED = "unused"
"""Split recorded for a pool's extra copies of an image its class already has."""
DUPLICATES_SHOWN = 5
"""Examples shown per kind of problem; the manifest records every one."""


def _member(entry: Entry) -> dict[str, str]:
    return {"root": entry.root, "path": entry.path, "label": entry.label, "split": entry.split}


def copies_word(n: int) -> str:
    return "copy" if n == 1 else "copies"


def find_duplicates(entries: Iterable[Entry]) -> list[dict]:
    """Groups of two or more files with the same content: [{"sha256", "files": [...]}, ...]."""
    by_hash: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        by_hash[entry.sha256].append(entry)
    groups = []
    for digest, members in sorted(by_hash.items()):
        if len(members) > 1:
            files = sorted((_member(e) for e in members),
                           key=lambda m: (m["split"], m["root"], m["path"]))
            groups.append({"sha256": digest, "files": files})
    return groups


def _splits(group: dict) -> set[str]:
    return {f["split"] for f in group["files"]} - {UNUSED}


def is_leak(group: dict) -> bool:
    splits = _splits(group)
    return "train" in splits and bool(splits & set(EVAL_SPLITS))


def _show(group: dict) -> str:
    return " = ".join(f"{f['path']} ({f['split']}, {f['label']!r})" for f in group["files"][:3])


def _examples(groups: list[dict]) -> str:
    shown = "; ".join(_show(g) for g in groups[:DUPLICATES_SHOWN])
    more = f"; ... and {len(groups) - DUPLICATES_SHOWN} more" if len(groups) > DUPLICATES_SHOWN else ""
    return shown + more


def duplicate_warnings(groups: list[dict], where: str) -> list[str]:
    """One line per kind of duplicate (leaks are the caller's refusal, or a warning if allowed)."""
    out = []
    leaks = [g for g in groups if is_leak(g)]
    if leaks:
        out.append(f"{where}: {len(leaks)} image(s) are both in train and in an evaluation split "
                   f"(byte-identical files): {_examples(leaks)}")
    two_classes = [g for g in groups if len({f["label"] for f in g["files"]}) > 1]
    if two_classes:
        out.append(f"{where}: {len(two_classes)} image(s) are in two or more classes "
                   f"(contradictory labels): {_examples(two_classes)}")
    unused = [g for g in groups if any(f["split"] == UNUSED for f in g["files"])]
    if unused:
        n = sum(1 for g in unused for f in g["files"] if f["split"] == UNUSED)
        out.append(f"{where}: {n} extra copy(ies) of images already in their class were set "
                   f"aside (one copy of each is used, so no copy straddles the split): "
                   f"{_examples(unused)}")
    rest = [g for g in groups if g not in leaks and g not in two_classes and g not in unused]
    if rest:
        out.append(f"{where}: {len(rest)} image(s) have byte-identical copies: {_examples(rest)}")
    return out


def leak_refusal(groups: list[dict], where: str, context: str = "") -> str | None:
    """The error for leaking duplicates (None when there are none)."""
    leaks = [g for g in groups if is_leak(g)]
    if not leaks:
        return None
    return (f"{where}: {len(leaks)} image(s) are both in train and in val, test or OOD "
            f"(byte-identical files){context}: the model would be scored on images it trained "
            f"on. {_examples(leaks)}. Fix: remove the copies from one side, or pass "
            "--allow-duplicates to run anyway (they are recorded in the split manifest and "
            "shown in the report)")


# ----------------------------------------------------------------- one folder, one split
def other_split(manifest_file: str, results_root: str, now: str, fix: str) -> str | None:
    """The hash of the split a folder already holds when it is not `now`; None when it is `now`
    or nothing was recorded. `manifest_file` says which split the folder holds; where it is gone
    (deleted by hand, never copied with the results), the split hash every trial row carries
    says it instead, so deleting the manifest never lets another split in. The sweep and
    `python -m trainables.train` both ask here and word the refusal for their own options.

    A corrupt manifest raises UserError naming it with `fix`; storage errors from reading it
    propagate (the callers report storage problems their own way)."""
    data = read_bytes(manifest_file)
    if data is not None:
        old = Manifest.parse(data, manifest_file, fix).hash
        return None if old == now else old
    try:
        table = read_table(results_root, "trials", columns=["split_manifest_hash"])
    except Exception:  # unreadable results are named by the callers' own results checks
        return None
    hashes = sorted({h for h in table["split_manifest_hash"].to_pylist() if h})
    return hashes[0] if hashes and now not in hashes else None
