"""The embedded default ("demo") dataset: ants vs bees from the PyTorch transfer-learning tutorial.

Pool: 100 ants (target) + 130 bees (other), drawn with a fixed seed from all 398 photos, the
study's pool shape; split 60/20/20 stratified. The 168 photos left over become the OOD set after
the seeded synthetic covariate shift of trainables/shift.py.

These photos come from ImageNet, so ImageNet-pretrained models have seen photos like them: results
on this set overstate what transfer gives on a truly new domain. Every report says so.

Where the data is looked for, in order: $FEATURE_REUSE_DATA/hymenoptera_data,
../shared/data/hymenoptera_data beside the project root, ~/.cache/feature-reuse/hymenoptera_data;
if absent everywhere, it is downloaded from the tutorial's public URL and its 398 images are
checked against a content checksum before use.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from trainables.errors import DataError
from trainables.folders import scan_classes, stratified_split, validate_images
from trainables.manifest import Entry, Manifest
from trainables.shift import SHIFT_LABEL

URL = "https://download.pytorch.org/tutorial/hymenoptera_data.zip"
CONTENT_SHA256 = "09b04960d40ea4c276af6130f0ef37f96d7cec47cd98d180fff2c6b5de53852f"
"""sha256 over the sorted (relative path, file sha256) lines of all images; see content_digest."""
EXPECTED_IMAGES = 398
POOL_CAPS = {"ants": 100, "bees": 130}
POOL_SEED = 0
SPLIT_SEED = 0
SHIFT_SEED = 0
CAVEAT = ("demo data: ants vs bees photos drawn from ImageNet itself, so ImageNet-pretrained "
          "models have seen photos like these; OOD here is a synthetic shift, not a new domain")

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def candidates() -> list[Path]:
    env = os.environ.get("FEATURE_REUSE_DATA")
    out = [Path(env) / "hymenoptera_data"] if env else []
    out += [PROJECT_ROOT.parent / "shared" / "data" / "hymenoptera_data",
            Path.home() / ".cache" / "feature-reuse" / "hymenoptera_data"]
    return out


def _images(root: Path) -> list[Path]:
    return [p for split in ("train", "val") for files in
            scan_classes(root / split, f"embedded {split}/").values() for p in files]


def content_digest(root: Path) -> str:
    lines = sorted(f"{p.relative_to(root).as_posix()} {hashlib.sha256(p.read_bytes()).hexdigest()}"
                   for p in _images(root))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def download(dest: Path) -> Path:
    """Fetch the tutorial zip, extract it, verify the images' checksum, then move into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        archive = Path(tmp) / "hymenoptera_data.zip"
        try:
            print(f"downloading {URL} ...", flush=True)
            urllib.request.urlretrieve(URL, archive)
        except OSError as exc:
            raise DataError(f"embedded data not found in {', '.join(map(str, candidates()))} and "
                            f"the download from {URL} failed ({exc}). Fix: place the tutorial's "
                            "hymenoptera_data folder in one of those places, or pass --data") from None
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        extracted = Path(tmp) / "hymenoptera_data"
        digest = content_digest(extracted)
        if digest != CONTENT_SHA256:
            raise DataError(f"downloaded {URL} but its images' checksum {digest[:16]}... does not "
                            f"match the expected {CONTENT_SHA256[:16]}...; not using it")
        shutil.move(str(extracted), dest)
    return dest


def locate(allow_download: bool = True) -> Path:
    for path in candidates():
        if (path / "train").is_dir() and (path / "val").is_dir():
            return path
    if not allow_download:
        raise DataError("embedded data not found in " + ", ".join(map(str, candidates())))
    return download(candidates()[-1])


def demo_manifest(root: Path | None = None, skip_bad: bool = False) -> tuple[Path, Manifest]:
    """(data root, manifest) of the embedded default: pool 100 + 130, 60/20/20, shifted OOD."""
    root = Path(root) if root is not None else locate()
    by_class: dict[str, list[Path]] = {}
    for split in ("train", "val"):
        for cls, files in scan_classes(root / split, f"embedded {split}/").items():
            by_class.setdefault(cls, []).extend(files)
    classes = sorted(by_class)
    if classes != sorted(POOL_CAPS):
        raise DataError(f"{root}: expected class folders {sorted(POOL_CAPS)}, found {classes}")
    hashes, skipped = validate_images({"data": (root, [p for c in classes for p in by_class[c]])},
                                skip_bad)
    pool_rng = random.Random(POOL_SEED)
    split_rng = random.Random(SPLIT_SEED)
    entries: list[Entry] = []
    for cls in classes:
        files = sorted((p for p in by_class[cls] if p in hashes),
                       key=lambda p: p.relative_to(root).as_posix())
        pool = set(pool_rng.sample(files, min(POOL_CAPS[cls], len(files))))
        chosen = [p for p in files if p in pool]
        rest = [p for p in files if p not in pool]
        for split, paths in stratified_split(chosen, split_rng).items():
            entries += [Entry("data", p.relative_to(root).as_posix(), cls, split, hashes[p])
                        for p in paths]
        entries += [Entry("data", p.relative_to(root).as_posix(), cls, "ood", hashes[p])
                    for p in rest]
    manifest = Manifest(classes=classes, entries=entries, layout="embedded-demo",
                        split_seed=SPLIT_SEED, ood_kind=SHIFT_LABEL, shift_seed=SHIFT_SEED,
                        caps=dict(POOL_CAPS), skipped=skipped)
    return root, manifest
