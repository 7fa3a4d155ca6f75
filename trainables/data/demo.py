"""The embedded default ("demo") dataset: ants vs bees from the PyTorch transfer-learning tutorial.

Pool: 100 ants (target) + 130 bees (other), drawn with a fixed seed from all 398 photos, the
study's pool shape; split 60/20/20 stratified. The 168 photos left over become the OOD set after
the seeded synthetic covariate shift below (`apply_shift`).

These photos come from ImageNet, so ImageNet-pretrained models have seen photos like them: results
on this set overstate what transfer gives on a truly new domain. Every report says so.

Where the data is looked for, in order: $FEATURE_REUSE_DATA/hymenoptera_data,
../shared/data/hymenoptera_data beside the project root, ~/.cache/feature-reuse/hymenoptera_data;
if absent everywhere, it is downloaded from the tutorial's public URL and its 398 images are
checked against a content checksum before use.

The shift is ImageNet-C style (Hendrycks & Dietterich, 2019), severity 3: each image gets one
corruption, chosen together with its parameters by a generator seeded from (shift seed, image
path), so the shifted set is identical on every machine and in every trial:

  gaussian_noise  additive N(0, 0.18) on [0, 1] pixels (the study also tested noisy inputs)
  gaussian_blur   Gaussian blur, radius 3 px at 300 px (scaled with image size)
  jpeg            re-encoded at JPEG quality 15
  contrast        contrast reduced to 0.3 of the original around the image mean

This is a *synthetic* shift on photos from the same source, not a new domain; results on it are
labelled "synthetic shift" everywhere. The study's real OOD set (other photos of other vehicles)
loads through --ood instead.

`prepare_data` is the CLIs' choice of images: the user's folders, or this set when none are given.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from trainables.data.folders import build_manifest, resolve_ood_root, stratified_split, validate_images
from trainables.data.images import encode_jpeg
from trainables.data.manifest import DataRoots, Entry, Manifest
from trainables.data.scan import scan_classes
from trainables.errors import DataError

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

PROJECT_ROOT = Path(__file__).resolve().parents[2]


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


# ----------------------------------------------------------------- the OOD shift
CORRUPTIONS = ("gaussian_noise", "gaussian_blur", "jpeg", "contrast")
SHIFT_LABEL = "synthetic shift (ImageNet-C style: noise, blur, JPEG, contrast; severity 3)"


def _rng(seed: int, key: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def apply_shift(img: Image.Image, seed: int, key: str) -> Image.Image:
    """Corrupt one RGB image deterministically from (seed, key)."""
    rng = _rng(seed, key)
    kind = CORRUPTIONS[int(rng.integers(len(CORRUPTIONS)))]
    if kind == "gaussian_noise":
        x = np.asarray(img, dtype=np.float32) / 255.0
        x = np.clip(x + rng.normal(0.0, 0.18, size=x.shape), 0.0, 1.0)
        return Image.fromarray((x * 255.0 + 0.5).astype(np.uint8), "RGB")
    if kind == "gaussian_blur":
        radius = 3.0 * min(img.size) / 300.0
        return img.filter(ImageFilter.GaussianBlur(radius=max(radius, 1.0)))
    if kind == "jpeg":
        return encode_jpeg(img, quality=15)
    x = np.asarray(img, dtype=np.float32)
    mean = x.mean(axis=(0, 1), keepdims=True)
    return Image.fromarray(np.clip((x - mean) * 0.3 + mean + 0.5, 0, 255).astype(np.uint8), "RGB")


def corruption_of(seed: int, key: str) -> str:
    return CORRUPTIONS[int(_rng(seed, key).integers(len(CORRUPTIONS)))]


def shift_for_manifest(manifest: Any) -> Callable[[Image.Image, str], Image.Image] | None:
    """The manifest's OOD shift as a function of (image, relative path), or None for real OOD."""
    if manifest.shift_seed is None or not str(manifest.ood_kind).startswith("synthetic"):
        return None
    seed = int(manifest.shift_seed)
    return lambda img, key: apply_shift(img, seed, key)


# ----------------------------------------------------------------- which images a run uses
def prepare_data(data: str | Path | None = None, ood: str | Path | None = None,
                 split_seed: int = 0, caps: dict[str, int] | None = None,
                 skip_bad: bool = False, allow_duplicates: bool = False
                 ) -> tuple[DataRoots, Manifest]:
    """The CLIs' entry point: no --data means the embedded demo set (with its shifted OOD).
    The manifest's `warnings` list what the scan left out or found suspicious."""
    if data is None:
        if ood is not None or caps:
            raise DataError("--ood and class caps need --data; the embedded default brings its "
                            "own pool and synthetic-shift OOD set")
        root, manifest = demo_manifest(skip_bad=skip_bad)
        return DataRoots(str(root)), manifest
    manifest = build_manifest(data, ood, split_seed=split_seed, caps=caps, skip_bad=skip_bad,
                              allow_duplicates=allow_duplicates)
    ood_root = resolve_ood_root(ood, manifest.classes) if ood is not None else None
    return DataRoots(str(Path(data).resolve()),
                     str(ood_root.resolve()) if ood_root else None), manifest
