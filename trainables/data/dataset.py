"""A trial's images: each manifest entry decoded once, then transformed and served through
`torch.utils.data`.

`load_trial_data` decodes every image of the trial's splits once (EXIF, RGB, size cap:
trainables/data/images.py) and keeps them as PIL images in CPU memory; the synthetic OOD shift of
the embedded demo is applied at decode. `ImageDataset` applies a transform per access, so each
epoch's DataLoader draws fresh augmentations, as the study's ImageFolder did, without decoding
again.

The transforms are shaped like torchvision's references/classification/presets.py. Training:
RandomResizedCrop + horizontal flip. Evaluation: Resize + CenterCrop, with each split's sizes from
the config (the authors validated at Resize(256)/CenterCrop(224) but tested at
Resize(224)/CenterCrop(224)). Both presets take decoded PIL images and return uint8 CHW tensors;
normalisation with the config's mean/std (ImageNet's for the study; a derived model's weights'
own) happens once per batch on the trial's device (`Normalize`), so a batch crosses to the GPU as
uint8, a quarter of the bytes. Resampling is the config's `interpolation` (the study: bilinear,
torchvision's default, so passing it changes no bit).

`backend` picks the implementation of the geometric part, as in the torchvision references:
  - "pil": torchvision.transforms v1 on PIL images, the study's own operations: for the same RNG
    state the crops are bit-identical to the study's pipeline (`study_train_transform`).
  - "tensor": torchvision.transforms.v2 on uint8 tensors (antialiased). Resampling differs from
    Pillow's by about a grey level; the random draws are the same.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode, v2

from trainables.arch_record import IMAGENET_MEAN, IMAGENET_STD
from trainables.config import TrialConfig
from trainables.data.demo import shift_for_manifest
from trainables.data.images import decode_pil, pil_to_tensor
from trainables.data.manifest import Entry, Manifest, matches, read_entry, select_train
from trainables.errors import DataError


# ----------------------------------------------------------------- transforms
def _compose(backend: str, ops_v1: list, ops_v2: list) -> Callable[[Image.Image], torch.Tensor]:
    if backend == "pil":
        return T.Compose([*ops_v1, T.PILToTensor()])
    if backend == "tensor":
        return v2.Compose([v2.PILToTensor(), *ops_v2])
    raise ValueError(f"backend {backend!r}: use pil or tensor")


class ClassificationPresetTrain:
    """RandomResizedCrop(crop) + RandomHorizontalFlip: PIL image in, uint8 CHW tensor out."""

    def __init__(self, *, crop_size: int, backend: str = "pil",
                 interpolation: str = "bilinear") -> None:
        mode = InterpolationMode(interpolation)
        self.transforms = _compose(
            backend,
            [T.RandomResizedCrop(crop_size, interpolation=mode), T.RandomHorizontalFlip()],
            [v2.RandomResizedCrop(crop_size, interpolation=mode, antialias=True),
             v2.RandomHorizontalFlip()])

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.transforms(img)


class ClassificationPresetEval:
    """Resize(resize) + CenterCrop(crop): PIL image in, uint8 CHW tensor out."""

    def __init__(self, *, resize_size: int, crop_size: int, backend: str = "pil",
                 interpolation: str = "bilinear") -> None:
        mode = InterpolationMode(interpolation)
        self.transforms = _compose(
            backend,
            [T.Resize(resize_size, interpolation=mode), T.CenterCrop(crop_size)],
            [v2.Resize(resize_size, interpolation=mode, antialias=True), v2.CenterCrop(crop_size)])

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.transforms(img)


class Normalize:
    """uint8 (N, 3, H, W) -> float32 normalised with mean/std (ImageNet's unless given), on the
    batch's device. The constants live on `device` from construction: no host-to-device copy per
    batch."""

    def __init__(self, device: torch.device | str = "cpu",
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> None:
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)

    def __call__(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        x = batch_uint8.float().div_(255.0)
        return (x - self.mean) / self.std


normalize = Normalize("cpu")
"""For CPU batches outside a trial (Grad-CAM, tests)."""


def study_train_transform(crop_size: int) -> Callable[[Image.Image], torch.Tensor]:
    """The study's own training pipeline, float output (bench/baseline.py, equivalence tests)."""
    return T.Compose([T.RandomResizedCrop(crop_size), T.RandomHorizontalFlip(), T.ToTensor(),
                      T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def study_eval_transform(resize_size: int, crop_size: int) -> Callable[[Image.Image], torch.Tensor]:
    return T.Compose([T.Resize(resize_size), T.CenterCrop(crop_size), T.ToTensor(),
                      T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


# ----------------------------------------------------------------- decoded splits and loaders
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


def load_trial_data(manifest: Manifest, source: ImageSource, train_size: str = "all",
                    subset_seed: int | None = None) -> TrialData:
    """The trial's decoded splits; below train size "all" the training subset drawn with
    `subset_seed` (None: the split seed; trials pass `TrialConfig.subset_seed`)."""
    classes = manifest.classes
    train_entries = select_train(manifest.split_entries("train"), classes, train_size,
                                 manifest.split_seed if subset_seed is None else subset_seed)
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
