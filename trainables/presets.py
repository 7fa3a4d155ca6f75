"""Image transforms, as in torchvision's references/classification/presets.py.

Training: RandomResizedCrop + horizontal flip; evaluation: Resize(crop * 256/224) + CenterCrop;
both normalised with ImageNet mean/std. They run on uint8 CHW tensors (torchvision.transforms.v2),
so images decoded once can be augmented again every epoch without touching the disk.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from trainables.config import IMAGENET_MEAN, IMAGENET_STD
from trainables.models import resize_for


class ClassificationPresetTrain:
    """Geometric augmentation per image (uint8 in, uint8 out); normalisation is batched."""

    def __init__(self, crop_size: int) -> None:
        self.transforms = v2.Compose([
            v2.RandomResizedCrop(crop_size, antialias=True),
            v2.RandomHorizontalFlip(),
        ])

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return self.transforms(img)


class ClassificationPresetEval:
    """Deterministic: Resize(crop * 256/224) then CenterCrop(crop), uint8 in and out."""

    def __init__(self, crop_size: int) -> None:
        self.transforms = v2.Compose([
            v2.Resize(resize_for(crop_size), antialias=True),
            v2.CenterCrop(crop_size),
        ])

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return self.transforms(img)


_MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def normalize(batch_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 normalised with ImageNet mean/std, on the batch's device."""
    x = batch_uint8.float().div_(255.0)
    return (x - _MEAN.to(x.device)) / _STD.to(x.device)


def pil_train_transform(crop_size: int):
    """The study's own PIL pipeline (torchvision.transforms v1), used by the baseline loop."""
    from torchvision import transforms as T

    return T.Compose([T.RandomResizedCrop(crop_size), T.RandomHorizontalFlip(), T.ToTensor(),
                      T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def pil_eval_transform(crop_size: int):
    from torchvision import transforms as T

    return T.Compose([T.Resize(resize_for(crop_size)), T.CenterCrop(crop_size), T.ToTensor(),
                      T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
