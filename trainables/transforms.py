"""Image transforms, shaped like torchvision's references/classification/presets.py.

Training: RandomResizedCrop + horizontal flip. Evaluation: Resize + CenterCrop, with each split's
sizes from the config (the authors validated at Resize(256)/CenterCrop(224) but tested at
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

from collections.abc import Callable

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode, v2

from trainables.arch_record import IMAGENET_MEAN, IMAGENET_STD


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
