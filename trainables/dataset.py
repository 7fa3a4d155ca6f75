"""A trial's images: each manifest entry decoded once, then served through `torch.utils.data`.

`load_trial_data` decodes every image of the trial's splits once (EXIF, RGB, size cap:
trainables/images.py) and keeps them as PIL images in CPU memory; the synthetic OOD shift of the
embedded demo is applied at decode. `ImageDataset` applies a transform per access, so each epoch's
DataLoader draws fresh augmentations, as the study's ImageFolder did, without decoding again.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, TensorDataset

from trainables.config import TrialConfig
from trainables.errors import DataError
from trainables.images import decode_pil, pil_to_tensor
from trainables.manifest import Entry, Manifest, matches, read_entry, select_train
from trainables.shift import shift_for_manifest
from trainables.transforms import ClassificationPresetEval, ClassificationPresetTrain


class ImageSource(Protocol):
    """Where an entry's bytes come from: `DataRoots` (folders on this machine) or anything else
    that serves them, e.g. bytes shipped to a worker with the trial."""

    def open(self, entry: Entry) -> Any: ...


@dataclass
class DecodedSplit:
    """One split: decoded RGB images (sizes vary), integer labels, relative paths."""

    images: list[Image.Image]
    labels: torch.Tensor
    paths: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def image(self, index: int) -> torch.Tensor:
        """One decoded image as a uint8 (3, H, W) tensor."""
        return pil_to_tensor(self.images[index])


@dataclass
class TrialData:
    classes: list[str]
    train: DecodedSplit
    val: DecodedSplit
    test: DecodedSplit
    ood: DecodedSplit | None
    ood_kind: str
    manifest_hash: str

    def split(self, name: str) -> DecodedSplit | None:
        return getattr(self, name)


class ImageDataset(Dataset):
    """(transform(image), label) for each image of a decoded split."""

    def __init__(self, split: DecodedSplit, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.split.images[index]), self.split.labels[index]


def _decode(source: ImageSource, entry: Entry) -> Image.Image:
    data = read_entry(source, entry)
    if not matches(data, entry):
        raise DataError(f"{entry.path}: its content changed after the split manifest was built "
                        "(sha256 differs). Fix: restore the file, or start a new experiment")
    try:
        return decode_pil(io.BytesIO(data))
    except (OSError, ValueError) as exc:
        raise DataError(f"{entry.path}: cannot be decoded ({exc})") from None


def load_split(entries: list[Entry], classes: list[str], source: ImageSource,
               shift: Callable[[Image.Image, str], Image.Image] | None = None) -> DecodedSplit:
    """Decode each entry once (checking its content hash); `shift(img, path)` for synthetic OOD."""
    index = {c: i for i, c in enumerate(classes)}
    images = []
    for e in entries:
        img = _decode(source, e)
        images.append(shift(img, e.path) if shift is not None else img)
    labels = torch.tensor([index[e.label] for e in entries], dtype=torch.long)
    return DecodedSplit(images, labels, [e.path for e in entries])


def load_trial_data(manifest: Manifest, source: ImageSource, train_size: str = "all") -> TrialData:
    classes = manifest.classes
    train_entries = select_train(manifest.split_entries("train"), classes, train_size,
                                 manifest.split_seed)
    ood_entries = manifest.split_entries("ood")
    return TrialData(
        classes=classes,
        train=load_split(train_entries, classes, source),
        val=load_split(manifest.split_entries("val"), classes, source),
        test=load_split(manifest.split_entries("test"), classes, source),
        ood=(load_split(ood_entries, classes, source, shift_for_manifest(manifest))
             if ood_entries else None),
        ood_kind=manifest.ood_kind,
        manifest_hash=manifest.hash,
    )


def train_loader(split: DecodedSplit, config: TrialConfig, device: torch.device) -> DataLoader:
    """Shuffled batches of fresh augmentation draws (the global torch RNG, reseeded per epoch)."""
    preset = ClassificationPresetTrain(crop_size=config.train_crop, backend=config.backend,
                                       interpolation=config.interpolation)
    return DataLoader(ImageDataset(split, preset), batch_size=config.batch_size, shuffle=True,
                      pin_memory=device.type == "cuda")


def eval_crops(split: DecodedSplit, name: str, config: TrialConfig) -> torch.Tensor:
    """A split's deterministic eval crops, uint8 (N, 3, crop, crop): computed once per trial."""
    resize, crop = config.eval_transform(name)
    preset = ClassificationPresetEval(resize_size=resize, crop_size=crop, backend=config.backend,
                                      interpolation=config.interpolation)
    if not len(split):
        return torch.empty(0, 3, crop, crop, dtype=torch.uint8)
    return torch.stack([preset(img) for img in split.images])


def eval_loader(split: DecodedSplit, name: str, config: TrialConfig,
                device: torch.device) -> DataLoader:
    return DataLoader(TensorDataset(eval_crops(split, name, config), split.labels),
                      batch_size=config.eval_batch_size, pin_memory=device.type == "cuda")
