"""Image transforms, as in torchvision's references/classification/presets.py.

Training: RandomResizedCrop + horizontal flip; evaluation: Resize(crop * 256/224) + CenterCrop;
both normalised with ImageNet mean/std (batched, after the geometric part).

Two interchangeable implementations of the geometric part, both uint8 in memory:
  - "pil": torchvision.transforms v1 on in-memory PIL images -- the study's own operations, so
    for the same RNG state the crops are bit-identical to the study's pipeline. The CPU default:
    Pillow's crop+resize costs ~0.7 ms per image here, against ~11 ms for the tensor kernels.
  - "tensor": torchvision.transforms.v2 on uint8 CHW tensors, which run where the tensors are
    (the GPU default: the images live on the GPU and are cropped there). Resampling differs
    from Pillow's by at most a grey level or so; the random draws are the same.
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import v2

from trainables.config import IMAGENET_MEAN, IMAGENET_STD
from trainables.data import pil_to_tensor
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


def to_pil(img: torch.Tensor) -> Image.Image:
    """uint8 CHW tensor (CPU) -> RGB PIL image with the same pixels. Merging the three planes
    is several times faster than transposing to HWC first."""
    planes = img.contiguous().numpy()
    return Image.merge("RGB", [Image.fromarray(plane, "L") for plane in planes])


class PilTrainCrop:
    """The study's RandomResizedCrop + flip (transforms v1, Pillow) -> uint8 CHW tensor.

    Consumes the torch RNG exactly as `pil_train_transform` does and returns the same pixels
    before ToTensor/Normalize, so `normalize(stack(crops))` equals the study's batch bit for bit."""

    def __init__(self, crop_size: int) -> None:
        self.transforms = T.Compose([T.RandomResizedCrop(crop_size), T.RandomHorizontalFlip()])

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return pil_to_tensor(self.transforms(img))


class PilEvalCrop:
    """The study's Resize + CenterCrop (transforms v1, Pillow) -> uint8 CHW tensor."""

    def __init__(self, crop_size: int) -> None:
        self.transforms = T.Compose([T.Resize(resize_for(crop_size)), T.CenterCrop(crop_size)])

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return pil_to_tensor(self.transforms(img))


_MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def normalize(batch_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 normalised with ImageNet mean/std, on the batch's device."""
    x = batch_uint8.float().div_(255.0)
    return (x - _MEAN.to(x.device)) / _STD.to(x.device)


def pil_train_transform(crop_size: int):
    """The study's own PIL pipeline (torchvision.transforms v1), used by the baseline loop."""
    return T.Compose([T.RandomResizedCrop(crop_size), T.RandomHorizontalFlip(), T.ToTensor(),
                      T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def pil_eval_transform(crop_size: int):
    return T.Compose([T.Resize(resize_for(crop_size)), T.CenterCrop(crop_size), T.ToTensor(),
                      T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
