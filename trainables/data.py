"""Image folders -> validated split manifest -> in-memory tensors for one trial.

Input layouts
  pool:      ROOT/<class>/**/<image>                  split here, 60/20/20 stratified
  pre-split: ROOT/{train,val,test}/<class>/**/<image> used as given
  OOD:       OOD/<class>/**/<image> (or OOD/test/<class>/...), the same class names

The split manifest lists every image (root, relative path, class, split, content hash) and is
hashed; the same files and split seed give a byte-identical manifest. Every trial of a sweep
reads the same manifest. Each trial process decodes each image once (EXIF orientation applied,
converted to RGB) and keeps it in memory as a uint8 tensor.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import random
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from trainables.config import parse_train_size
from trainables.errors import DataError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm"}
STRAY_NAMES = {"thumbs.db", "desktop.ini", ".ds_store", "__macosx", "@eadir"}
"""OS and NAS droppings (Windows, macOS zip archives, Synology), ignored like hidden files."""
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
MAX_SHORT_SIDE = 1024
"""Images whose shorter side exceeds this are downscaled once at decode (antialiased) to save
memory; every crop is then resized to <= 342 px anyway. Smaller images are untouched."""


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
        return json.dumps(body, sort_keys=True, indent=1, ensure_ascii=False) + "\n"

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        body = json.loads(text)
        body["entries"] = [Entry(**e) for e in body["entries"]]
        return cls(**body)

    def save(self, path: str | Path) -> str:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)
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


# ---------------------------------------------------------------------------------- decoding
def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB: 16-bit and float scaled to 8 bits, alpha composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def decode_pil(path: str | Path) -> Image.Image:
    """Open, fully decode, apply EXIF orientation, convert to RGB, cap huge images."""
    with Image.open(path) as opened:
        opened.load()
        img = ImageOps.exif_transpose(opened)
        img = to_rgb(img)
    short = min(img.size)
    if short > MAX_SHORT_SIDE:
        scale = MAX_SHORT_SIDE / short
        img = img.resize((round(img.width * scale), round(img.height * scale)),
                         Image.Resampling.BILINEAR, reducing_gap=None)
    return img


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def check_image(path: Path) -> str | None:
    """None if the file decodes fully, else the reason it does not."""
    try:
        if path.is_symlink() and not path.exists():
            return f"broken symbolic link (points to {os.readlink(path)}, which does not exist)"
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as img:
            img.load()
        return None
    except UnidentifiedImageError:
        return "not an image (unrecognised format)"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"cannot be decoded ({exc})"


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# --------------------------------------------------------------------------------- discovery
def _is_stray(name: str) -> bool:
    return name.lower() in STRAY_NAMES or name.startswith(".") or name.startswith("._")


def _is_candidate(path: Path) -> bool:
    """Files that claim to be images (by extension). Stray OS files and other extensions are
    ignored, e.g. notes.txt, .DS_Store, Thumbs.db."""
    return not _is_stray(path.name) and path.suffix.lower() in IMAGE_EXTENSIONS


def _class_dirs(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and not _is_stray(p.name)),
                  key=lambda p: p.name)


def class_name(folder: Path) -> str:
    """A class folder's name in Unicode NFC, so that "café" copied from macOS (NFD) and typed on
    Linux (NFC) are the same class; the path itself keeps the bytes found on disk."""
    return unicodedata.normalize("NFC", folder.name)


def _walk_images(folder: Path, root: Path) -> list[Path]:
    """Candidate images under `folder`, sorted by path relative to `root`.

    Symlinked files and folders are followed (each real folder once, so a link back up the tree
    cannot loop); a dangling link with an image extension is returned too, so that validation
    reports it instead of silently dropping an image the user meant to include."""
    found: list[Path] = []
    seen: set[str] = set()
    top = Path(os.path.realpath(folder))

    def visit(d: Path) -> None:
        real = os.path.realpath(d)
        if real in seen or (d != folder and top.is_relative_to(real)):
            return  # already listed, or a link back up to an ancestor (a loop)
        seen.add(real)
        try:
            children = sorted(d.iterdir(), key=lambda p: p.name)
        except OSError as exc:
            raise DataError(f"cannot list folder {d} ({exc.strerror or exc}). Fix: make it "
                            "readable or remove it") from None
        for child in children:
            if _is_stray(child.name):
                continue
            if child.is_dir():
                visit(child)
            elif _is_candidate(child) and (child.is_file() or child.is_symlink()):
                found.append(child)

    visit(folder)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def scan_classes(root: Path, what: str) -> dict[str, list[Path]]:
    """<root>/<class>/**/<image> -> {class: sorted image paths}. Errors name the folder."""
    if not root.is_dir():
        raise DataError(f"{what} folder {root} does not exist or is not a folder")
    classes = _class_dirs(root)
    if not classes:
        raise DataError(f"{what} folder {root} has no class subfolders; expected "
                        f"{root}/<class name>/<images>")
    found: dict[str, list[Path]] = {}
    empty = []
    for cdir in classes:
        files = _walk_images(cdir, root)
        if not files:
            empty.append(str(cdir))
        name = class_name(cdir)
        if name in found:
            raise DataError(f"{what}: two class folders in {root} are both named {name!r} "
                            "(they differ only in Unicode normalization). Fix: merge them")
        found[name] = files
    if empty:
        raise DataError(f"{what}: class folder(s) with no images: {', '.join(empty)}. "
                        "Fix: add images (" + ", ".join(sorted(IMAGE_EXTENSIONS)) +
                        ") or remove the folder")
    return found


def detect_layout(root: Path) -> str:
    """"presplit" when ROOT has train/, val/ and test/; otherwise "pool"."""
    if not root.is_dir():
        raise DataError(f"--data folder {root} does not exist or is not a folder")
    names = {p.name for p in root.iterdir() if p.is_dir() and not _is_stray(p.name)}
    present = names & set(SPLITS)
    if present == set(SPLITS):
        return "presplit"
    if present and names <= set(SPLITS):
        missing = sorted(set(SPLITS) - present)
        raise DataError(f"--data folder {root} looks pre-split but lacks {', '.join(missing)}/. "
                        "Fix: add the missing split folder(s), or merge them into one pool "
                        "folder (one subfolder per class) to be split 60/20/20 here")
    return "pool"


def _validate(paths_by_root: dict[str, tuple[Path, list[Path]]], skip_bad: bool
              ) -> tuple[dict[Path, str], list[dict[str, str]]]:
    """Decode every file once; returns ({path: hash}, skipped). Raises listing every bad file."""
    hashes: dict[Path, str] = {}
    bad: list[tuple[Path, str]] = []
    for _name, (_root, paths) in paths_by_root.items():
        for p in paths:
            reason = check_image(p)
            if reason:
                bad.append((p, reason))
            else:
                hashes[p] = file_hash(p)
    if bad and not skip_bad:
        listing = "\n".join(f"  {p}: {why}" for p, why in bad)
        raise DataError(f"{len(bad)} file(s) cannot be read as images:\n{listing}\n"
                        "Fix: remove or replace them, or pass --skip-bad-images to skip them "
                        "(they are then listed in the split manifest)")
    skipped = [{"path": str(p), "reason": why} for p, why in bad]
    return hashes, skipped


def _stratified_split(files: list[Path], rng: random.Random) -> dict[str, list[Path]]:
    order = list(files)
    rng.shuffle(order)
    n = len(order)
    n_train = round(n * SPLIT_FRACTIONS[0])
    n_val = round(n * SPLIT_FRACTIONS[1])
    return {"train": order[:n_train], "val": order[n_train:n_train + n_val],
            "test": order[n_train + n_val:]}


def _min_split_message(counts: dict[str, int]) -> str | None:
    short = {c: n for c, n in counts.items() if n < 5}
    if not short:
        return None
    listing = ", ".join(f"{c!r} has {n}" for c, n in short.items())
    return (f"too few images for a 60/20/20 split ({listing}); each class needs at least 5 so "
            "that train, val and test each get one. Fix: add images, or provide a pre-split "
            "folder with train/, val/ and test/")


def _one_class_message(data: Path, name: str) -> str:
    message = (f"--data {data}: found only one class folder ({name!r}); a classifier needs at "
               "least two. Fix: add a folder of images for each other class")
    inner = data / name
    subdirs = _class_dirs(inner) if inner.is_dir() else []
    if len(subdirs) >= 2:
        message += (f", or, if {inner} holds the class folders "
                    f"({', '.join(p.name for p in subdirs[:4])}), pass --data {inner}")
    return message


def _require_every_class(entries: list[Entry], classes: list[str], data: Path) -> None:
    """After skipping bad files, each split of a pre-split folder must still hold every class."""
    have = {(e.split, e.label) for e in entries}
    missing = [f"{s}/{c}" for s in SPLITS for c in classes if (s, c) not in have]
    if missing:
        raise DataError(f"--data {data}: no readable images left in {', '.join(missing)}. "
                        "Fix: add images there or replace the unreadable ones")


def build_manifest(data: str | Path, ood: str | Path | None = None, split_seed: int = 0,
                   caps: dict[str, int] | None = None, skip_bad: bool = False) -> Manifest:
    """Discover, validate and split a user's folders. `caps` limit images per class (drawn with
    the split seed) before splitting, as the study capped its pool at 100 target / 130 other."""
    data = Path(data)
    layout = detect_layout(data)
    caps = dict(caps or {})
    roots: dict[str, tuple[Path, list[Path]]] = {}
    if layout == "presplit":
        per_split = {s: scan_classes(data / s, f"--data {s}/") for s in SPLITS}
        classes = sorted(per_split["train"])
        for s in SPLITS:
            if sorted(per_split[s]) != classes:
                raise DataError(f"--data: class folders differ between train/ ({classes}) and "
                                f"{s}/ ({sorted(per_split[s])}). Fix: use the same class names")
        roots["data"] = (data, [p for s in SPLITS for c in classes for p in per_split[s][c]])
    else:
        by_class = scan_classes(data, "--data")
        classes = sorted(by_class)
        roots["data"] = (data, [p for c in classes for p in by_class[c]])
    if len(classes) < 2:
        raise DataError(_one_class_message(data, classes[0]))
    unknown_caps = set(caps) - set(classes)
    if unknown_caps:
        raise DataError(f"class caps name unknown classes {sorted(unknown_caps)}; classes are "
                        f"{classes}")
    ood_root = None
    ood_by_class: dict[str, list[Path]] = {}
    if ood is not None:
        ood_root = Path(ood)
        if ood_root.is_dir() and (ood_root / "test").is_dir() and not any(
                (ood_root / c).is_dir() for c in classes):
            ood_root = ood_root / "test"
        ood_by_class = scan_classes(ood_root, "--ood")
        if sorted(ood_by_class) != classes:
            raise DataError(
                f"--ood {ood_root}: class folders {sorted(ood_by_class)} do not match the "
                f"training classes {classes}. Fix: rename the OOD class folders to match "
                "(e.g. alpha/ and beta/ in both)")
        roots["ood"] = (ood_root, [p for c in classes for p in ood_by_class[c]])

    hashes, skipped = _validate(roots, skip_bad)
    rng = random.Random(split_seed)
    entries: list[Entry] = []

    def good(paths: list[Path]) -> list[Path]:
        return [p for p in paths if p in hashes]

    def add(root_key: str, root: Path, split: str, label: str, paths: list[Path]) -> None:
        entries.extend(Entry(root_key, p.relative_to(root).as_posix(), label, split, hashes[p])
                       for p in paths)

    if layout == "presplit":
        for s in SPLITS:
            for c in classes:
                add("data", data, s, c, good(per_split[s][c]))
        _require_every_class(entries, classes, data)
    else:
        counts = {}
        kept_by_class = {}
        for c in classes:
            files = good(by_class[c])
            if c in caps and len(files) > caps[c]:
                files = sorted(rng.sample(files, caps[c]))
            kept_by_class[c] = files
            counts[c] = len(files)
        message = _min_split_message(counts)
        if message:
            raise DataError(f"--data {data}: {message}")
        for c in classes:
            for s, paths in _stratified_split(kept_by_class[c], rng).items():
                add("data", data, s, c, paths)
    if ood_root is not None:
        for c in classes:
            add("ood", ood_root, "ood", c, good(ood_by_class[c]))
    return Manifest(classes=classes, entries=entries, layout=layout, split_seed=split_seed,
                    ood_kind="real" if ood_root is not None else "none", caps=caps,
                    skipped=skipped)


# ------------------------------------------------------------------------- per-trial tensors
@dataclass
class SplitTensors:
    """One split: uint8 CHW images (sizes vary), labels, relative paths.

    Decoded once (tensors) by default; with decode_once off, `images` holds loaders that decode
    from disk on every access, as a DataLoader over ImageFolder would."""

    images: list[torch.Tensor | Callable[[], torch.Tensor]]
    labels: torch.Tensor
    paths: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def image(self, i: int) -> torch.Tensor:
        item = self.images[i]
        return item if isinstance(item, torch.Tensor) else item()


@dataclass
class TrialData:
    classes: list[str]
    train: SplitTensors
    val: SplitTensors
    test: SplitTensors
    ood: SplitTensors | None
    ood_kind: str
    manifest_hash: str


@dataclass(frozen=True)
class DataRoots:
    """Where a manifest's relative paths live on this machine."""

    data: str
    ood: str | None = None

    def resolve(self, entry: Entry) -> Path:
        base = self.data if entry.root == "data" else self.ood
        if base is None:
            raise DataError(f"manifest entry {entry.path} is under the OOD folder, but no --ood "
                            "folder was given")
        return Path(base) / entry.path


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


def _decode_entry(path: Path, key: str, shift: Any) -> torch.Tensor:
    try:
        img = decode_pil(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be decoded ({exc}); was it changed after the split "
                        "manifest was built?") from None
    if shift is not None:
        img = shift(img, key)
    return pil_to_tensor(img)


def load_split(entries: list[Entry], classes: list[str], roots: DataRoots,
               shift: Any = None, decode_once: bool = True) -> SplitTensors:
    """Decode each image once. `shift(img, key)` applies the seeded synthetic shift (OOD only)."""
    index = {c: i for i, c in enumerate(classes)}
    images: list[Any] = []
    for e in entries:
        path = roots.resolve(e)
        if decode_once:
            images.append(_decode_entry(path, e.path, shift))
        else:
            images.append(functools.partial(_decode_entry, path, e.path, shift))
    labels = torch.tensor([index[e.label] for e in entries], dtype=torch.long)
    return SplitTensors(images, labels, [e.path for e in entries])


def load_trial_data(manifest: Manifest, roots: DataRoots, train_size: str = "all",
                    decode_once: bool = True) -> TrialData:
    from trainables.shift import shift_for_manifest

    classes = manifest.classes
    train_entries = select_train(manifest.split_entries("train"), classes, train_size,
                                 manifest.split_seed)
    ood_entries = manifest.split_entries("ood")
    shift = shift_for_manifest(manifest)
    return TrialData(
        classes=classes,
        train=load_split(train_entries, classes, roots, decode_once=decode_once),
        val=load_split(manifest.split_entries("val"), classes, roots, decode_once=decode_once),
        test=load_split(manifest.split_entries("test"), classes, roots, decode_once=decode_once),
        ood=(load_split(ood_entries, classes, roots, shift, decode_once=decode_once)
             if ood_entries else None),
        ood_kind=manifest.ood_kind,
        manifest_hash=manifest.hash,
    )


def encode_jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def prepare_data(data: str | Path | None = None, ood: str | Path | None = None,
                 split_seed: int = 0, caps: dict[str, int] | None = None,
                 skip_bad: bool = False) -> tuple[DataRoots, Manifest]:
    """The CLIs' entry point: no --data means the embedded demo set (with its shifted OOD)."""
    if data is None:
        from trainables.embedded import demo_manifest

        if ood is not None or caps:
            raise DataError("--ood and class caps need --data; the embedded default brings its "
                            "own pool and synthetic-shift OOD set")
        root, manifest = demo_manifest(skip_bad=skip_bad)
        return DataRoots(str(root)), manifest
    manifest = build_manifest(data, ood, split_seed=split_seed, caps=caps, skip_bad=skip_bad)
    ood_root = None
    if ood is not None:
        ood_root = Path(ood)
        if (ood_root / "test").is_dir() and not any((ood_root / c).is_dir()
                                                     for c in manifest.classes):
            ood_root = ood_root / "test"
    return DataRoots(str(Path(data).resolve()),
                     str(ood_root.resolve()) if ood_root else None), manifest
