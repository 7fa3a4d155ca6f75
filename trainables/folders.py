"""A user's image folders -> a validated split manifest.

Input layouts
  pool:      ROOT/<class>/**/<image>                  split here, 60/20/20 stratified
  pre-split: ROOT/{train,val,test}/<class>/**/<image> used as given
  OOD:       OOD/<class>/**/<image> (or OOD/test/<class>/...), the same class names

Every file is decoded once here to validate it (one error lists every bad file) and hashed; the
manifest records the split by content hash.
"""

from __future__ import annotations

import os
import random
import unicodedata
from pathlib import Path

from trainables.errors import DataError
from trainables.images import check_image, file_hash
from trainables.manifest import SPLITS, Entry, Manifest

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm"}
STRAY_NAMES = {"thumbs.db", "desktop.ini", ".ds_store", "__macosx", "@eadir"}
"""OS and NAS droppings (Windows, macOS zip archives, Synology), ignored like hidden files."""
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)


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


def validate_images(paths_by_root: dict[str, tuple[Path, list[Path]]], skip_bad: bool
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


def stratified_split(files: list[Path], rng: random.Random) -> dict[str, list[Path]]:
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


def resolve_ood_root(ood: str | Path, classes: list[str]) -> Path:
    """OOD/<class>/..., or OOD/test/<class>/... as the study's published OOD set is laid out."""
    root = Path(ood)
    if root.is_dir() and (root / "test").is_dir() and not any((root / c).is_dir() for c in classes):
        return root / "test"
    return root


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
        ood_root = resolve_ood_root(ood, classes)
        ood_by_class = scan_classes(ood_root, "--ood")
        if sorted(ood_by_class) != classes:
            raise DataError(
                f"--ood {ood_root}: class folders {sorted(ood_by_class)} do not match the "
                f"training classes {classes}. Fix: rename the OOD class folders to match "
                "(e.g. alpha/ and beta/ in both)")
        roots["ood"] = (ood_root, [p for c in classes for p in ood_by_class[c]])

    hashes, skipped = validate_images(roots, skip_bad)
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
            for s, paths in stratified_split(kept_by_class[c], rng).items():
                add("data", data, s, c, paths)
    if ood_root is not None:
        for c in classes:
            add("ood", ood_root, "ood", c, good(ood_by_class[c]))
    return Manifest(classes=classes, entries=entries, layout=layout, split_seed=split_seed,
                    ood_kind="real" if ood_root is not None else "none", caps=caps,
                    skipped=skipped)
