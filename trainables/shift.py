"""The seeded synthetic covariate shift applied to the embedded demo's OOD images.

ImageNet-C style (Hendrycks & Dietterich, 2019), severity 3: each image gets one corruption,
chosen together with its parameters by a generator seeded from (shift seed, image path), so the
shifted set is identical on every machine and in every trial:

  gaussian_noise  additive N(0, 0.18) on [0, 1] pixels (the study also tested noisy inputs)
  gaussian_blur   Gaussian blur, radius 3 px at 300 px (scaled with image size)
  jpeg            re-encoded at JPEG quality 15
  contrast        contrast reduced to 0.3 of the original around the image mean

This is a *synthetic* shift on photos from the same source, not a new domain; results on it are
labelled "synthetic shift" everywhere. The study's real OOD set (other photos of other vehicles)
loads through --ood instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from trainables.images import encode_jpeg

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
