"""The split manifest: which image is in which split, by content hash. No torch import.

Every image of a run is an `Entry` (which folder it is under, its relative path, class, split and
content hash). The manifest is written as canonical JSON and hashed; the same files and split seed
give a byte-identical manifest, and its hash is on every result row. `analysis` reads manifests
too, without importing torch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from trainables.config import parse_train_size
from trainables.errors import DataError
from trainables.storage import write_text_atomic

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
    """"none", "real" (a separate folder) or "synthetic shift: ..." (see trainables/shift.py)."""
    shift_seed: int | None = None
    caps: dict[str, int] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    """Groups of byte-identical files (trainables/leakage.py); written only when there are any,
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


def select_train(entries: list[Entry], classes: list[str], train_size: str, seed: int
                 ) -> list[Entry]:
    """Shrink only the train split: N images per class or a fraction of each class. Subsets are
    nested (smaller sizes are prefixes of a fixed permutation drawn with the split seed)."""
    size = parse_train_size(train_size)
    if size is None:
        return entries
    chosen = []
    for c in classes:
        items = sorted((e for e in entries if e.label == c), key=lambda e: e.path)
        random.Random(seed).shuffle(items)
        k = size if isinstance(size, int) else max(1, round(len(items) * size))
        if k > len(items):
            raise DataError(f"--train-sizes {train_size}: class {c!r} has only {len(items)} "
                            f"training images. Fix: use at most {len(items)} or a fraction")
        chosen.extend(items[:k])
    return chosen
