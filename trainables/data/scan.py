"""Walking a user's image folders: which files are images of which class, and what is left out.

Nothing is dropped silently. A file that is not used for training is either an OS or NAS
dropping (hidden files, Thumbs.db, __MACOSX/ ...), a file that is plainly not an image (notes.txt,
labels.csv), or it is counted in a `Findings` warning that names an example: images loose
beside the class folders, formats Pillow reads that are not used (.ico, .psd ...) or cannot read
(.heic ...), image files without an image extension, archives and files named like a class,
folders beside train/val/test.

Split folders go by many names (`SPLIT_ALIASES`): `train/ val/ test/` is this project's own
spelling; Roboflow exports `train/ valid/ test/`, others `Train/ Val/ Test/`, `training/
validation/ testing/`, `train_set/`, `dev/` ... All name the same three splits. A pool (one folder
per class) whose class folders carry such names is almost always a pre-split folder read the wrong
way, and is refused (`detect_layout`). Building the manifest: trainables/data/folders.py.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from trainables.errors import DataError

SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("train", "training", "trn", "trainset", "trainingset"),
    "val": ("val", "valid", "validation", "validate", "dev", "valset", "validset",
            "validationset"),
    "test": ("test", "testing", "tst", "testset", "testingset"),
}
FILLER_WORDS = frozenset({"set", "data", "dataset", "images", "image", "imgs", "img", "split",
                          "seg", "photos", "files", "folder"})
"""Words around a split name that do not change it: train_set, seg_train, Test Images."""
_ALIAS_TO_SPLIT = {alias: split for split, aliases in SPLIT_ALIASES.items() for alias in aliases}


def split_of(name: str) -> str | None:
    """"train", "val" or "test" when a folder name spells a split, else None."""
    words = [w for w in re.split(r"[\s_\-.]+", name.strip().lower()) if w]
    core = [w for w in words if w not in FILLER_WORDS]
    if len(core) != 1:
        return None
    return _ALIAS_TO_SPLIT.get(core[0])


def spellings() -> str:
    """The accepted spellings, for error messages."""
    return "; ".join(f"{split}: {', '.join(aliases)}" for split, aliases in SPLIT_ALIASES.items()) + \
        " (any case; words such as _set or _images around them are ignored)"


IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".jfif", ".jif", ".png", ".apng", ".bmp", ".gif",
                    ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
"""Files used as images (case-insensitive). Other formats are named in a warning, not used."""
UNREADABLE_EXTENSIONS = {".heic", ".heif", ".svg", ".raw", ".dng", ".cr2", ".cr3", ".nef", ".arw",
                         ".orf", ".rw2", ".raf"}
"""Photo formats Pillow cannot decode here: named in a warning with the fix (convert)."""
ARCHIVE_EXTENSIONS = (".zip", ".tar", ".tgz", ".tar.gz", ".7z", ".rar")
STRAY_NAMES = {"thumbs.db", "desktop.ini", ".ds_store", "__macosx", "@eadir"}
"""OS and NAS droppings (Windows, macOS zip archives, Synology), ignored like hidden files."""
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")


def is_stray(name: str) -> bool:
    return name.lower() in STRAY_NAMES or name.startswith(".") or name.startswith("._")


def shown(path: Path | str) -> str:
    """A path for messages: bytes that are not UTF-8 appear as \\xNN instead of failing to print."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _pillow_extensions() -> set[str]:
    from PIL import Image

    stubs = {"BUFR", "GRIB", "HDF5", "MPEG", "WMF", "FITS"}  # not photos (or need plugins)
    return {ext for ext, fmt in Image.registered_extensions().items()
            if fmt in Image.OPEN and fmt not in stubs}


def _looks_like_image(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head.startswith(_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


@dataclass
class Findings:
    """Files and folders a scan did not use, by kind; `messages()` words them as warnings."""

    found: dict[str, list[Path]] = field(default_factory=lambda: defaultdict(list))
    images_in: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, path: Path) -> None:
        self.found[kind].append(path)

    def paths(self) -> set[Path]:
        return {p for paths in self.found.values() for p in paths}

    def messages(self) -> list[str]:
        out = []
        for kind, paths in sorted(self.found.items()):
            if not paths:
                continue
            example = ", ".join(shown(p) for p in sorted(paths)[:3])
            more = f" (and {len(paths) - 3} more)" if len(paths) > 3 else ""
            out.append(f"{len(paths)} {_WORDING[kind]}: {example}{more}")
        return out


_WORDING = {
    "loose": "image(s) outside any class folder are not used. Fix: move each into its class "
             "folder",
    "other_format": "file(s) in formats Pillow reads but this tool does not use as images "
                    f"(it uses {', '.join(sorted(IMAGE_EXTENSIONS))}). Fix: convert them to PNG "
                    "or JPEG",
    "unreadable_format": "photo(s) in formats Pillow cannot decode here (HEIC, RAW, SVG ...) "
                         "are not used. Fix: convert them to JPEG or PNG",
    "no_extension": "file(s) look like images (by their first bytes) but have no image "
                    "extension and are not used. Fix: rename them with .jpg/.png",
    "named_like_class": "file(s) are named like a class or are archives, not folders, and are "
                        "not used (an archive to unpack, or a link to a missing folder?)",
    "beside_splits": "folder(s) beside the train/val/test folders are not used",
    "split_inside_class": "class folder(s) hold split-named subfolders; their images are "
                          "pooled into the class and split 60/20/20 here. Fix: to keep your "
                          "own split, arrange DATA/train/<class>/, DATA/val/<class>/, "
                          "DATA/test/<class>/",
}


def _classify_other(path: Path, findings: Findings, class_names: set[str] | None = None) -> None:
    """A non-candidate file: counted when it may be an image or an archive/class stand-in."""
    suffix = path.suffix.lower()
    stem = path.name.split(".")[0].casefold()
    if path.name.lower().endswith(ARCHIVE_EXTENSIONS) or (class_names and stem in class_names):
        findings.add("named_like_class", path)
    elif suffix in UNREADABLE_EXTENSIONS:
        findings.add("unreadable_format", path)
    elif suffix in _pillow_extensions():
        findings.add("other_format", path)
    elif suffix in ("", ".bin", ".dat", ".tmp", ".download", ".crdownload") and \
            _looks_like_image(path):
        findings.add("no_extension", path)


def walk_images(folder: Path, root: Path, findings: Findings | None = None) -> list[Path]:
    """Candidate images under `folder`, sorted by path relative to `root`.

    Symlinked files and folders are followed (each real folder once, so a link back up the tree
    cannot loop); a dangling link with an image extension is returned too, so that validation
    reports it instead of silently dropping an image the user meant to include."""
    findings = findings if findings is not None else Findings()
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
            raise DataError(f"cannot list folder {shown(d)} ({exc.strerror or exc}). Fix: make it "
                            "readable or remove it") from None
        for child in children:
            if is_stray(child.name):
                continue
            if child.is_dir():
                visit(child)
            elif child.suffix.lower() in IMAGE_EXTENSIONS and (child.is_file() or child.is_symlink()):
                found.append(child)
            elif child.is_file():
                _classify_other(child, findings)

    visit(folder)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def class_name(folder: Path) -> str:
    """A class folder's name in Unicode NFC, so that "café" copied from macOS (NFD) and typed on
    Linux (NFC) are the same class; the path itself keeps the bytes found on disk."""
    return unicodedata.normalize("NFC", folder.name)


def class_dirs(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and not is_stray(p.name)),
                  key=lambda p: p.name)


def _root_files(root: Path, classes: set[str], findings: Findings) -> None:
    """Files directly in a folder of class folders: images there belong to no class."""
    for child in sorted(root.iterdir(), key=lambda p: p.name):
        if is_stray(child.name) or child.is_dir():
            continue
        if child.suffix.lower() in IMAGE_EXTENSIONS:
            findings.add("loose", child)
        else:
            _classify_other(child, findings, classes)


def scan_classes(root: Path, what: str, findings: Findings | None = None) -> dict[str, list[Path]]:
    """<root>/<class>/**/<image> -> {class: sorted image paths}. Errors name the folder."""
    findings = findings if findings is not None else Findings()
    if not root.is_dir():
        raise DataError(f"{what} folder {shown(root)} does not exist or is not a folder")
    classes = class_dirs(root)
    if not classes:
        raise DataError(f"{what} folder {shown(root)} has no class subfolders; expected "
                        f"{shown(root)}/<class name>/<images>")
    bad_names = [shown(c) for c in classes if not is_utf8(c.name)]
    if bad_names:
        raise DataError(f"{what}: class folder name(s) are not valid UTF-8: {', '.join(bad_names)}. "
                        "Fix: rename them (e.g. `convmv -f latin1 -t utf8 -r --notest FOLDER`)")
    by_fold: dict[str, list[str]] = defaultdict(list)
    for c in classes:
        by_fold[class_name(c).casefold()].append(c.name)
    clashes = [names for names in by_fold.values() if len(set(names)) > 1]
    if clashes:
        listing = "; ".join(" and ".join(repr(n) for n in names) for names in clashes)
        raise DataError(f"{what}: class folders in {shown(root)} differ only in case or Unicode "
                        f"form ({listing}): they collide on macOS and Windows and are most likely "
                        "one class. Fix: merge them into one folder, or rename one")
    _root_files(root, {class_name(c).casefold() for c in classes}, findings)
    found: dict[str, list[Path]] = {}
    empty = []
    for cdir in classes:
        if any(split_of(p.name) for p in class_dirs(cdir)):
            findings.add("split_inside_class", cdir)
        files = walk_images(cdir, root, findings)
        if not files:
            empty.append(shown(cdir))
        found[class_name(cdir)] = files
    if empty:
        raise DataError(f"{what}: class folder(s) with no images: {', '.join(empty)}. "
                        "Fix: add images (" + ", ".join(sorted(IMAGE_EXTENSIONS)) +
                        ") or remove the folder")
    return found


def class_links(root: Path) -> list[str]:
    """Class folders that are (links to) the same folder as another class, or inside it."""
    reals = [(c.name, Path(os.path.realpath(c))) for c in class_dirs(root)]
    out = []
    for i, (a, ra) in enumerate(reals):
        for b, rb in reals[i + 1:]:
            if ra == rb or ra.is_relative_to(rb) or rb.is_relative_to(ra):
                out.append(f"class folder {a!r} and {b!r} are the same folder (a link) or one is "
                           "inside the other")
    return out


@dataclass(frozen=True)
class Layout:
    kind: str  # "pool" | "presplit" | TRAIN_VAL
    splits: dict[str, Path] = field(default_factory=dict)
    """presplit: split -> its folder as spelled on disk (train/, Valid/, testing/ ...)."""
    extras: tuple[Path, ...] = ()
    """presplit: other folders beside the splits (not used)."""


TRAIN_VAL = "train+val"
"""The PyTorch transfer-learning tutorial's layout: train/ and val/, no test/ (val/ is split
into validation and test by trainables.data.folders.split_val)."""


def detect_layout(root: Path) -> Layout:
    """Pre-split when ROOT has one folder for each of train, val and test (any common spelling);
    TRAIN_VAL with train and val only; a pool otherwise. A folder that half looks pre-split (test/
    alone, train/ + test/), or a pool whose classes are named like splits, is refused: reading
    it as a pool would train on the split names as classes."""
    if not root.is_dir():
        raise DataError(f"--data folder {shown(root)} does not exist or is not a folder")
    dirs = class_dirs(root)
    by_split: dict[str, list[Path]] = defaultdict(list)
    for d in dirs:
        if split_of(d.name):
            by_split[split_of(d.name)].append(d)
    twice = {s: ds for s, ds in by_split.items() if len(ds) > 1}
    if twice:
        listing = "; ".join(f"{s}: {', '.join(d.name + '/' for d in ds)}" for s, ds in twice.items())
        raise DataError(f"--data folder {shown(root)} has more than one folder for a split ({listing}). "
                        "Fix: keep one folder per split (merge or remove the others)")
    if len(by_split) == 3:
        splits = {s: ds[0] for s, ds in by_split.items()}
        extras = tuple(d for d in dirs if d not in splits.values())
        return Layout("presplit", splits, extras)
    if set(by_split) == {"train", "val"} and len(dirs) == 2:
        return Layout(TRAIN_VAL, {s: ds[0] for s, ds in by_split.items()})
    if by_split:
        named = ", ".join(f"{d.name}/" for ds in by_split.values() for d in ds)
        missing = sorted({"train", "val", "test"} - set(by_split))
        if len(dirs) == sum(len(ds) for ds in by_split.values()):
            raise DataError(f"--data folder {shown(root)} looks pre-split but lacks "
                            f"{', '.join(m + '/' for m in missing)} (found {named}). Fix: add the "
                            "missing split "
                            "folder(s), or merge them into one pool folder (one subfolder per "
                            "class) to be split 60/20/20 here")
        raise DataError(f"--data folder {shown(root)}: class folder(s) {named} are named like "
                        "data splits, so this would train a classifier of split names. Fix: if "
                        "the folder is pre-split, give it one folder per split (train, val and "
                        f"test; accepted spellings: {spellings()}), each holding the class "
                        "folders; if they really are classes, rename them")
    return Layout("pool")


def ood_root(ood: str | Path, classes: list[str]) -> Path:
    """OOD/<class>/..., or OOD/test/<class>/... (any spelling of test) as the study's published
    OOD set and labelling tools' exports are laid out."""
    root = Path(ood)
    if not root.is_dir() or any((root / c).is_dir() for c in classes):
        return root
    tests = [d for d in class_dirs(root) if split_of(d.name) == "test"]
    return tests[0] if len(tests) == 1 else root
