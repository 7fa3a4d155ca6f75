"""A user's image folders -> a validated split manifest.

Input layouts
  pool:      ROOT/<class>/**/<image>                  split here, 60/20/20 stratified
  pre-split: ROOT/{train,val,test}/<class>/**/<image> used as given (also valid/, Train/,
             validation/, testing/ ...: trainables/data/scan.py)
  train+val: ROOT/{train,val}/<class>/... (the PyTorch tutorial's): train/ as given; each
             class's val/ images split by --split-seed, half validation, half test (`split_val`)
  OOD:       OOD/<class>/**/<image> (or OOD/test/<class>/...), the same class names

Every file is decoded once here to validate it (one error lists every bad file) and hashed; the
manifest records the split by content hash. What the scan leaves out is named in the manifest's
warnings (trainables/data/scan.py); byte-identical files are recorded and, where they leak from
train into an evaluation split, refused (trainables/data/manifest.py).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from trainables.data.images import check_image
from trainables.data.manifest import (
    SPLITS,
    UNUSED,
    Entry,
    Manifest,
    copies_word,
    duplicate_warnings,
    find_duplicates,
    leak_refusal,
)
from trainables.data.scan import (
    TRAIN_VAL,
    Findings,
    class_dirs,
    class_links,
    detect_layout,
    ood_root,
    scan_classes,
    shown,
)
from trainables.errors import DataError

SPLIT_FRACTIONS = (0.6, 0.2, 0.2)


def validate_images(paths_by_root: dict[str, tuple[Path, list[Path]]], skip_bad: bool
              ) -> tuple[dict[Path, str], list[dict[str, str]]]:
    """Decode every file once; returns ({path: hash}, skipped). Raises listing every bad file."""
    hashes: dict[Path, str] = {}
    bad: list[tuple[Path, str]] = []
    for _name, (_root, paths) in paths_by_root.items():
        for p in paths:
            reason, digest = check_image(p)
            if reason:
                bad.append((p, reason))
            else:
                hashes[p] = digest
    if bad and not skip_bad:
        listing = "\n".join(f"  {shown(p)}: {why}" for p, why in bad)
        raise DataError(f"{len(bad)} file(s) cannot be read as images:\n{listing}\n"
                        "Fix: remove or replace them, or pass --skip-bad-images to skip them "
                        "(they are then listed in the split manifest)")
    skipped = [{"path": shown(p), "reason": why} for p, why in bad]
    return hashes, skipped


def stratified_split(files: list[Path], rng: random.Random) -> dict[str, list[Path]]:
    order = list(files)
    rng.shuffle(order)
    n = len(order)
    n_train = round(n * SPLIT_FRACTIONS[0])
    n_val = round(n * SPLIT_FRACTIONS[1])
    return {"train": order[:n_train], "val": order[n_train:n_train + n_val],
            "test": order[n_train + n_val:]}


def split_val(files: list[Path], rng: random.Random) -> dict[str, list[Path]]:
    """train/ + val/ without test/: one class's val/ images, shuffled with the split seed, half
    to validation (the larger half when odd) and half to test."""
    order = list(files)
    rng.shuffle(order)
    n_val = (len(order) + 1) // 2
    return {"val": order[:n_val], "test": order[n_val:]}


def layout_words(layout: str, split_seed: int) -> str:
    """How the split was made, for the preflight line ("" when the folders said it all)."""
    if layout == TRAIN_VAL:
        return (f"val/ split per class into validation and test (half each, seeded by "
                f"--split-seed {split_seed}), no test/ folder")
    return ""


def _min_split_message(counts: dict[str, int], copies: dict[str, int]) -> str | None:
    """`copies`: per class, the byte-identical copies set aside, so the count adds up."""
    short = {c: n for c, n in counts.items() if n < 5}
    if not short:
        return None

    def count(c: str, n: int) -> str:
        k = copies.get(c, 0)
        if not k:
            return f"{c!r} has {n}"
        return (f"{c!r} has {n} distinct images ({n + k} files; {k} byte-identical "
                f"{copies_word(k)} set aside)")

    listing = ", ".join(count(c, n) for c, n in short.items())
    return (f"too few images for a 60/20/20 split ({listing}); each class needs at least 5 so "
            "that train, val and test each get one. Fix: add images, or provide a pre-split "
            "folder with train/, val/ and test/")


def _one_class_message(data: Path, name: str) -> str:
    message = (f"--data {shown(data)}: found only one class folder ({name!r}); a classifier needs "
               "at least two. Fix: add a folder of images for each other class")
    inner = data / name
    subdirs = class_dirs(inner) if inner.is_dir() else []
    if len(subdirs) >= 2:
        message += (f", or, if {shown(inner)} holds the class folders "
                    f"({', '.join(p.name for p in subdirs[:4])}), pass --data {shown(inner)}")
    return message


def _require_every_class(entries: list[Entry], classes: list[str], splits: tuple[str, ...],
                         where: str) -> None:
    """After skipping bad files, every split must still hold every class: an accuracy over a
    split that lacks a class is not comparable with one over all classes."""
    have = {(e.split, e.label) for e in entries}
    missing = [f"{s}/{c}" for s in splits for c in classes if (s, c) not in have]
    if missing:
        raise DataError(f"{where}: no readable images left in {', '.join(missing)}. "
                        "Fix: add images there or replace the unreadable ones")


def resolve_ood_root(ood: str | Path, classes: list[str]) -> Path:
    """OOD/<class>/..., or OOD/test/<class>/... as the study's published OOD set is laid out."""
    return ood_root(ood, classes)


def _folder_overlap(data: Path, ood: Path) -> str:
    """' (--ood is the same folder as --data)' and the like, for the leakage messages."""
    a, b = Path(os.path.realpath(data)), Path(os.path.realpath(ood))
    if a == b:
        return f"; --ood {shown(ood)} is the same folder as --data"
    if b.is_relative_to(a) or a.is_relative_to(b):
        return f"; --ood {shown(ood)} and --data {shown(data)} overlap (one is inside the other)"
    return ""


def _dedupe_class(files: list[Path], hashes: dict[Path, str]) -> tuple[list[Path], list[Path]]:
    """(one copy of each distinct image, the extra copies), first copy by path kept."""
    kept, extra, seen = [], [], set()
    for p in files:
        (extra if hashes[p] in seen else kept).append(p)
        seen.add(hashes[p])
    return kept, extra


def build_manifest(data: str | Path, ood: str | Path | None = None, split_seed: int = 0,
                   caps: dict[str, int] | None = None, skip_bad: bool = False,
                   allow_duplicates: bool = False) -> Manifest:
    """Discover, validate and split a user's folders. `caps` limit images per class (drawn with
    the split seed) before splitting, as the study capped its pool at 100 target / 130 other.
    Images in train and also in val/test/OOD are refused unless `allow_duplicates`."""
    data = Path(data)
    layout = detect_layout(data)
    findings = Findings()
    caps = dict(caps or {})
    roots: dict[str, tuple[Path, list[Path]]] = {}
    links: list[str] = []
    given = tuple(s for s in SPLITS if s in layout.splits)  # TRAIN_VAL: train and val
    if layout.kind in ("presplit", TRAIN_VAL):
        for extra in layout.extras:
            findings.add("beside_splits", extra)
        per_split = {s: scan_classes(layout.splits[s], f"--data {layout.splits[s].name}/", findings)
                     for s in given}
        classes = sorted(per_split["train"])
        for s in given:
            if sorted(per_split[s]) != classes:
                raise DataError(f"--data: class folders differ between {layout.splits['train'].name}/ "
                                f"({classes}) and {layout.splits[s].name}/ ({sorted(per_split[s])}). "
                                "Fix: use the same class names")
            links += [f"{layout.splits[s].name}/: {m}" for m in class_links(layout.splits[s])]
        roots["data"] = (data, [p for s in given for c in classes for p in per_split[s][c]])
    else:
        by_class = scan_classes(data, "--data", findings)
        classes = sorted(by_class)
        links += class_links(data)
        roots["data"] = (data, [p for c in classes for p in by_class[c]])
    if len(classes) < 2:
        raise DataError(_one_class_message(data, classes[0]))
    unknown_caps = set(caps) - set(classes)
    if unknown_caps:
        raise DataError(f"class caps name unknown classes {sorted(unknown_caps)}; classes are "
                        f"{classes}")
    ood_path = None
    ood_by_class: dict[str, list[Path]] = {}
    overlap = ""
    if ood is not None:
        ood_path = resolve_ood_root(ood, classes)
        ood_findings = Findings()
        ood_by_class = scan_classes(ood_path, "--ood", ood_findings)
        if sorted(ood_by_class) != classes:
            raise DataError(
                f"--ood {shown(ood_path)}: class folders {sorted(ood_by_class)} do not match the "
                f"training classes {classes}. Fix: rename the OOD class folders to match "
                "(e.g. alpha/ and beta/ in both)")
        roots["ood"] = (ood_path, [p for c in classes for p in ood_by_class[c]])
        overlap = _folder_overlap(data, ood_path)

    hashes, skipped = validate_images(roots, skip_bad)
    rng = random.Random(split_seed)
    entries: list[Entry] = []
    unused: list[Entry] = []

    def good(paths: list[Path]) -> list[Path]:
        return [p for p in paths if p in hashes]

    def add(out: list[Entry], root_key: str, root: Path, split: str, label: str,
            paths: list[Path]) -> None:
        out.extend(Entry(root_key, p.relative_to(root).as_posix(), label, split, hashes[p])
                   for p in paths)

    if layout.kind == "presplit":
        for s in SPLITS:
            for c in classes:
                add(entries, "data", data, s, c, good(per_split[s][c]))
        _require_every_class(entries, classes, SPLITS, f"--data {shown(data)}")
    elif layout.kind == TRAIN_VAL:
        val_name = layout.splits["val"].name
        for c in classes:
            add(entries, "data", data, "train", c, good(per_split["train"][c]))
            files = good(per_split["val"][c])
            if len(files) < 2:
                raise DataError(f"--data {shown(data)}: {val_name}/{c} has {len(files)} image(s); "
                                f"without a test/ folder {val_name}/ is split into validation "
                                "and test, which needs at least 2 per class. Fix: add images, "
                                "or add a test/ folder")
            for s, paths in split_val(files, rng).items():
                add(entries, "data", data, s, c, paths)
        _require_every_class(entries, classes, SPLITS, f"--data {shown(data)}")
    else:
        counts, copies = {}, {}
        kept_by_class = {}
        for c in classes:
            files = good(by_class[c])
            if not allow_duplicates:
                files, extra = _dedupe_class(files, hashes)
                add(unused, "data", data, UNUSED, c, extra)
                copies[c] = len(extra)
            if c in caps and len(files) > caps[c]:
                files = sorted(rng.sample(files, caps[c]))
            kept_by_class[c] = files
            counts[c] = len(files)
        message = _min_split_message(counts, copies)
        if message:
            raise DataError(f"--data {shown(data)}: {message}")
        for c in classes:
            for s, paths in stratified_split(kept_by_class[c], rng).items():
                add(entries, "data", data, s, c, paths)
    if ood_path is not None:
        for c in classes:
            add(entries, "ood", ood_path, "ood", c, good(ood_by_class[c]))
        _require_every_class(entries, classes, ("ood",), f"--ood {shown(ood_path)}")

    groups = find_duplicates(entries + unused)
    context = overlap + "".join(f"; {m}" for m in links)
    refusal = leak_refusal(groups, "--data" + (" and --ood" if ood_path else ""), context)
    if refusal and not allow_duplicates:
        raise DataError(refusal)
    warnings = [f"--data {shown(data)}: {m}" for m in findings.messages()]
    if ood_path is not None:
        warnings += [f"--ood {shown(ood_path)}: {m}" for m in ood_findings.messages()]
    warnings += [f"--data: {m}" for m in links] + ([overlap.lstrip("; ")] if overlap else [])
    warnings += duplicate_warnings(groups, "duplicates")
    return Manifest(classes=classes, entries=entries, layout=layout.kind, split_seed=split_seed,
                    ood_kind="real" if ood_path is not None else "none", caps=caps,
                    skipped=skipped, duplicates=groups, warnings=warnings)
