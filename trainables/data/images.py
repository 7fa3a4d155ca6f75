"""Decoding an image once: EXIF orientation, any PIL mode to 8-bit RGB, huge images capped.

Every path that trains or draws pixels (the trial's datasets, Grad-CAM) goes through
`decode_pil`, so an image looks the same everywhere; validating a user's folders (`check_image`)
decodes each file fully once and hashes the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_ASPECT_RATIO = 20.0
"""Longer side / shorter side above this is refused at validation: resizing the short side of a
1x30000 px strip to 256 px would build a 7.7-megapixel-long, 2-gigapixel image. Panoramas are
~4-10:1."""
MAX_SHORT_SIDE = 1024
"""Images whose shorter side exceeds this are downscaled once at decode (antialiased) to save
memory; every crop is then resized to <= 342 px anyway. Smaller images are untouched."""


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


def decode_pil(source: str | Path | BinaryIO) -> Image.Image:
    """Open (a path or a binary file object), fully decode, apply EXIF orientation, convert to
    RGB, cap huge images."""
    with Image.open(source) as opened:
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


def check_image(path: Path) -> tuple[str | None, str | None]:
    """(None, content hash) if the file decodes fully to a usable image, else (the reason it does
    not, None). The file is read once: the bytes PIL decodes are the bytes hashed."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return ("its name is not valid UTF-8 (manifests and results store names as UTF-8). "
                "Fix: rename it, e.g. `convmv -f latin1 -t utf8 -r --notest FOLDER`"), None
    try:
        if path.is_symlink() and not path.exists():
            return f"broken symbolic link (points to {os.readlink(path)}, which does not exist)", None
        data = path.read_bytes()
        if not data:
            return "empty file (0 bytes)", None
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            width, height = img.size
        if min(width, height) < 1 or max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
            return (f"extreme aspect ratio ({width}x{height} px, more than "
                    f"{MAX_ASPECT_RATIO:g}:1): resizing its short side for the model would "
                    "build a huge image. Fix: crop it to the object, or remove it"), None
        return None, bytes_hash(data)
    except UnidentifiedImageError:
        return "not an image (unrecognised format)", None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"cannot be decoded ({exc})", None


def bytes_hash(data: bytes) -> str:
    """The content hash a manifest records: a SHA-256 prefix."""
    return hashlib.sha256(data).hexdigest()[:16]


def file_hash(path: Path) -> str:
    return bytes_hash(path.read_bytes())


def encode_jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")
