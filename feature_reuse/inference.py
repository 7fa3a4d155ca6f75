"""A kept model on new images: the files, the trial's own eval transform, batched forward passes.

What `feature-reuse predict` (feature_reuse/predict.py) runs, usable from Python too:

    from feature_reuse.inference import Predictor
    predictor = Predictor.load("runs/demo/results/models/<trial_id>.pt")
    probs = predictor.probs_of(["ant.jpg", "bee.png"])          # (2, classes) tensor

Each image is decoded as in training (`trainables.images.decode_pil`: EXIF orientation, RGB,
huge images capped), then transformed exactly as the trial's test split was: Resize + CenterCrop
of `TrialConfig.eval_transform("test")` (test_resize/test_crop; the linear probe's validation
transform, which it sees every split through) with the config's interpolation and backend,
normalised with its mean and std. Forward passes in float32 and eval mode (a model trained under
bf16 autocast runs in float32 here), on CUDA when it works on this machine, else the CPU
(`trainables.device.select_device`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from trainables.config import TrialConfig
from trainables.data.dataset import ClassificationPresetEval
from trainables.data.images import decode_pil
from trainables.data.scan import Findings, shown, walk_images
from trainables.device import select_device
from trainables.engine import DeviceInputs
from trainables.errors import DataError
from trainables.model_file import KeptModel, read_model_file


def eval_transform(config: TrialConfig) -> Callable[[Image.Image], torch.Tensor]:
    """The trial's test transform: decoded PIL image -> uint8 (3, crop, crop)."""
    resize, crop = config.eval_transform("test")
    return ClassificationPresetEval(resize_size=resize, crop_size=crop, backend=config.backend,
                                    interpolation=config.interpolation)


@dataclass
class ImageList:
    """The files to classify, in order; what a folder held that is not used."""

    paths: list[Path]
    notes: list[str] = field(default_factory=list)


def list_images(inputs: Sequence[str]) -> ImageList:
    """Each input: a file (used whatever its extension) or a folder (its images, recursively,
    sorted; the extensions of `trainables.scan.IMAGE_EXTENSIONS`, hidden files and OS droppings
    skipped, image-like files it does not use named in a note). DataError for a missing path and
    for a folder without images."""
    paths: list[Path] = []
    notes: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            findings = Findings()
            found = walk_images(path, path, findings)
            if not found:
                raise DataError(f"{shown(path)}: no images in this folder or below (looked for "
                                "*.jpg, *.png, ... in every subfolder). Fix: name a folder or "
                                "files holding the images")
            paths += found
            notes += [f"{shown(path)}: {m}" for m in findings.messages()]
        elif path.exists():
            paths.append(path)
        else:
            raise DataError(f"{shown(path)}: no such file or folder")
    if not paths:
        raise DataError("no images given. Fix: name image files or folders")
    return ImageList(paths, notes)


def not_an_image(path: Path) -> str | None:
    """Why `path` is not an image Pillow recognises (its header only), or None."""
    try:
        with Image.open(path):
            return None
    except UnidentifiedImageError:
        return "not an image (unrecognised format)"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"cannot be read as an image ({exc})"


@dataclass
class Batch:
    """Probabilities of the images of one batch that decoded; the others with the reason."""

    paths: list[Path]
    probs: torch.Tensor
    failed: list[tuple[Path, str]]


class Predictor:
    """A kept model ready for images: its eval transform, its normalisation, a device."""

    def __init__(self, kept: KeptModel, device: torch.device | None = None) -> None:
        self.kept = kept
        self.device = device if device is not None else select_device(None)
        self.model = kept.model.to(self.device).eval()
        self.transform = eval_transform(kept.config)
        self.inputs = DeviceInputs(self.device, kept.config)

    @classmethod
    def load(cls, path: str, device: torch.device | None = None) -> Predictor:
        return cls(read_model_file(path), device)

    @property
    def classes(self) -> list[str]:
        return self.kept.classes

    def logits(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, crop, crop) eval crops -> float32 logits on the CPU."""
        with torch.inference_mode():
            return self.model(self.inputs(batch_uint8)).float().cpu()

    def probs_of(self, paths: Sequence[str | Path]) -> torch.Tensor:
        """(N, classes) probabilities of image files (any that fails to decode raises)."""
        crops = torch.stack([self.transform(decode_pil(p)) for p in paths])
        return torch.softmax(self.logits(crops), dim=1)

    def batches(self, paths: Sequence[Path], batch_size: int) -> Iterator[Batch]:
        """Probabilities batch by batch; a file that does not decode is reported, not raised."""
        for start in range(0, len(paths), batch_size):
            ok, crops, failed = [], [], []
            for path in paths[start:start + batch_size]:
                try:
                    crops.append(self.transform(decode_pil(path)))
                    ok.append(path)
                except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
                    failed.append((path, f"cannot be decoded ({exc})"))
            probs = (torch.softmax(self.logits(torch.stack(crops)), dim=1) if crops
                     else torch.empty(0, len(self.classes)))
            yield Batch(ok, probs, failed)
