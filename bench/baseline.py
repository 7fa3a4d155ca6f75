"""The study's own style of training loop: the project's speed and accuracy reference.

As the PyTorch transfer-learning tutorial (which the study followed) writes it: an ImageFolder-
style dataset decoding every image with PIL on every access, torchvision.transforms v1, a
DataLoader with batch 6, one `for phase in ("train", "val")` loop per epoch, SGD + StepLR, the
best-val-accuracy weights kept (the earliest epoch on ties). Only the model builder, the
tutorial's Inception loss (`training_loss`), the fixed configuration and the split are the
project's, so that both loops train the same experiment. bench/trial_speed.py times it against
trainables.train.run_trial.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision.datasets import VisionDataset
from torchvision.datasets.folder import default_loader

from trainables.config import TrialConfig
from trainables.data.dataset import study_eval_transform, study_train_transform
from trainables.data.demo import shift_for_manifest
from trainables.data.manifest import DataRoots, Entry, Manifest, select_train
from trainables.engine import seed_everything, training_loss
from trainables.models import build_model


class ManifestImageFolder(VisionDataset):
    """torchvision's ImageFolder over a manifest's entries instead of a folder walk: `samples`,
    `targets`, `classes`, `class_to_idx` and `loader` as there, the file opened with PIL on every
    access (the demo's OOD split with its seeded synthetic shift, also on every access)."""

    def __init__(self, root: str, entries: list[Entry], classes: list[str], roots: DataRoots,
                 transform: Callable[[Any], torch.Tensor],
                 shift: Callable[[Any, str], Any] | None = None,
                 loader: Callable[[str], Any] = default_loader) -> None:
        super().__init__(root, transform=transform)
        self.classes = list(classes)
        self.class_to_idx = {c: i for i, c in enumerate(classes)}
        self.samples = [(str(roots.resolve(e)), self.class_to_idx[e.label]) for e in entries]
        self.keys = [e.path for e in entries]
        self.targets = [t for _, t in self.samples]
        self.loader = loader
        self.shift = shift

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, target = self.samples[index]
        img = self.loader(path)
        if self.shift is not None:
            img = self.shift(img, self.keys[index])
        return self.transform(img), target


@dataclass
class BaselineResult:
    best_val_acc: float
    best_epoch: int
    test_acc: float
    ood_acc: float | None
    train_seconds: float
    total_seconds: float
    rows: list[dict[str, Any]]


def datasets(manifest: Manifest, roots: DataRoots, config: TrialConfig
             ) -> dict[str, ManifestImageFolder]:
    """The four splits as ImageFolder-style datasets (train subset as the project selects it),
    each eval split with its own transform from the config."""
    classes = manifest.classes
    subset_seed = config.subset_seed(manifest.split_seed)  # None at "all": no subset drawn
    train = select_train(manifest.split_entries("train"), classes, config.train_size,
                         manifest.split_seed if subset_seed is None else subset_seed)
    out = {"train": ManifestImageFolder(roots.data, train, classes, roots,
                                        study_train_transform(config.train_crop))}
    for split in ("val", "test", "ood"):
        entries = manifest.split_entries(split)
        if entries:
            shift = shift_for_manifest(manifest) if split == "ood" else None
            out[split] = ManifestImageFolder(roots.data, entries, classes, roots,
                                             study_eval_transform(*config.eval_transform(split)),
                                             shift=shift)
    return out


def accuracy(model: nn.Module, loader: DataLoader, device: torch.device) -> float:
    model.eval()
    correct, seen = 0, 0
    with torch.no_grad():
        for inputs, labels in loader:
            preds = model(inputs.to(device)).argmax(1).cpu()
            correct += int((preds == labels).sum())
            seen += len(labels)
    return correct / max(seen, 1)


def run_baseline_trial(config: TrialConfig, manifest: Manifest, roots: DataRoots,
                       device: torch.device | None = None, pretrained: bool | None = None,
                       on_epoch: Callable[[dict[str, Any]], None] | None = None) -> BaselineResult:
    """One trial in the study's style. `pretrained=False` builds a transfer regime with random
    weights (timing only: architectures whose ImageNet weights are not available here).
    `on_epoch(row)` runs after each epoch, outside its timing (the benchmark's interleaving)."""
    t0 = time.perf_counter()
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = datasets(manifest, roots, config)
    seed_everything(config.seed)
    model = build_model(config, len(manifest.classes), pretrained=pretrained).to(device)
    loaders = {name: DataLoader(ds, batch_size=config.batch_size, shuffle=name == "train")
               for name, ds in data.items()}
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size,
                                                gamma=config.gamma)
    best_wts, best_acc, best_epoch = copy.deepcopy(model.state_dict()), -1.0, 0
    rows: list[dict[str, Any]] = []
    train_seconds = 0.0
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        row: dict[str, Any] = {"epoch": epoch}
        for phase in ("train", "val"):
            training = phase == "train"
            model.train() if training else model.eval()
            running_loss, running_correct = 0.0, 0
            for inputs, labels in loaders[phase]:
                inputs, labels = inputs.to(device), labels.to(device)
                optimizer.zero_grad()
                with torch.set_grad_enabled(training):
                    loss, logits = training_loss(model(inputs), labels, config.aux_loss_weight)
                    if training:
                        loss.backward()
                        optimizer.step()
                running_loss += loss.item() * inputs.size(0)
                running_correct += int((logits.argmax(1) == labels).sum())
            if training:
                scheduler.step()
            n = len(data[phase])
            row[f"{phase}_loss"], row[f"{phase}_acc"] = running_loss / n, running_correct / n
            if not training and row["val_acc"] > best_acc:
                best_acc, best_epoch = row["val_acc"], epoch
                best_wts = copy.deepcopy(model.state_dict())
        row["seconds"] = time.perf_counter() - start
        train_seconds += row["seconds"]
        rows.append(row)
        if on_epoch is not None:
            on_epoch(row)
    model.load_state_dict(best_wts)
    test_acc = accuracy(model, loaders["test"], device)
    ood_acc = accuracy(model, loaders["ood"], device) if "ood" in loaders else None
    return BaselineResult(best_acc, best_epoch, test_acc, ood_acc, train_seconds,
                          time.perf_counter() - t0, rows)
