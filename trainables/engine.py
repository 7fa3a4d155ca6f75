"""The training loop: `train_one_epoch`, `evaluate`, `fit` (best-val-accuracy epoch kept).

Reproducibility: every epoch reseeds torch from (trial seed, epoch), so the shuffle order, the
augmentation draws and dropout depend only on the seed and the epoch number. A trial resumed from
its epoch-k checkpoint therefore continues exactly as an uninterrupted one would (on CPU).
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from trainables.config import TrialConfig
from trainables.data import SplitTensors
from trainables.faults import maybe_inject
from trainables.models import Arch, split_backbone_tail
from trainables.presets import ClassificationPresetEval, ClassificationPresetTrain, normalize

FEATURE_BATCH = 64
"""Batch size for forward-only passes (evaluation, cached features). In eval mode a forward pass
does not depend on the batch size, so this changes speed only, never a result."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class EvalResult:
    loss: float
    acc: float
    probs: torch.Tensor  # (N, C) softmax
    labels: torch.Tensor

    @property
    def preds(self) -> torch.Tensor:
        return self.probs.argmax(dim=1)


@dataclass
class FitState:
    """Everything needed to continue a trial after its last finished epoch."""

    epoch: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    best_acc: float = -1.0
    best_loss: float = float("inf")
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    model_state: dict[str, torch.Tensor] | None = None
    optimizer_state: dict[str, Any] | None = None
    scheduler_state: dict[str, Any] | None = None
    train_seconds: float = 0.0
    resumed_from_epoch: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FitState:
        return cls(**d)


def _autocast(device: torch.device, bf16: bool):
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def eval_crops(split: SplitTensors, crop: int) -> torch.Tensor:
    """The deterministic eval crops of a split, uint8 (N, 3, crop, crop)."""
    tf = ClassificationPresetEval(crop)
    return torch.stack([tf(split.image(i)) for i in range(len(split))])


def train_batches(split: SplitTensors, batch_size: int, crop: int) -> Iterator[tuple[torch.Tensor,
                                                                                     torch.Tensor]]:
    """Shuffled batches with fresh augmentation (global torch RNG, reseeded per epoch)."""
    tf = ClassificationPresetTrain(crop)
    order = torch.randperm(len(split))
    for chunk in order.split(batch_size):
        images = torch.stack([tf(split.image(int(i))) for i in chunk])
        yield normalize(images), split.labels[chunk]


def set_train_mode(model: nn.Module, config: TrialConfig) -> None:
    """train() everywhere, except BatchNorm in feature extraction with bn_mode="frozen"."""
    model.train()
    if config.regime == "feature_extract" and config.bn_mode == "frozen":
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def _loss(outputs: Any, labels: torch.Tensor, criterion: nn.Module, aux_weight: float
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, main logits). Inception in training returns (logits, aux_logits)."""
    if isinstance(outputs, tuple) or hasattr(outputs, "aux_logits"):
        logits, aux = outputs[0], outputs[1]
        loss = criterion(logits, labels)
        if aux is not None:
            loss = loss + aux_weight * criterion(aux, labels)
        return loss, logits
    return criterion(outputs, labels), outputs


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module,
                    batches: Iterator[tuple[torch.Tensor, torch.Tensor]], device: torch.device,
                    config: TrialConfig) -> tuple[float, float]:
    """One pass over the training batches; returns (mean loss, accuracy)."""
    set_train_mode(model, config)
    total_loss, correct, seen = 0.0, 0, 0
    for images, labels in batches:
        images = _to_device(images, device, config.channels_last)
        labels = labels.to(device)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, config.bf16):
            loss, logits = _loss(model(images), labels, criterion, config.aux_loss_weight)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(labels)
        correct += int((logits.argmax(1) == labels).sum())
        seen += len(labels)
    return total_loss / max(seen, 1), correct / max(seen, 1)


def evaluate(model: Callable[[torch.Tensor], torch.Tensor], criterion: nn.Module,
             crops: torch.Tensor, labels: torch.Tensor, device: torch.device,
             config: TrialConfig, normalized: bool = False) -> EvalResult:
    """Forward-only pass over uint8 crops (or precomputed inputs when `normalized`)."""
    if isinstance(model, nn.Module):
        model.eval()
    probs = []
    total_loss = 0.0
    with torch.inference_mode(), _autocast(device, config.bf16):
        for start in range(0, len(crops), FEATURE_BATCH):
            chunk = crops[start:start + FEATURE_BATCH]
            x = chunk.to(device) if normalized else _to_device(normalize(chunk), device,
                                                               config.channels_last)
            logits = model(x).float()
            y = labels[start:start + FEATURE_BATCH].to(device)
            total_loss += float(criterion(logits, y)) * len(y)
            probs.append(torch.softmax(logits, dim=1).cpu())
    probs_t = torch.cat(probs) if probs else torch.empty(0, 0)
    acc = float((probs_t.argmax(1) == labels).float().mean()) if len(labels) else float("nan")
    return EvalResult(total_loss / max(len(labels), 1), acc, probs_t, labels)


def _features(features_fn: Callable[[torch.Tensor], torch.Tensor], crops_uint8: torch.Tensor,
              device: torch.device, config: TrialConfig) -> torch.Tensor:
    out = []
    with torch.no_grad(), _autocast(device, config.bf16):
        for start in range(0, len(crops_uint8), FEATURE_BATCH):
            x = _to_device(normalize(crops_uint8[start:start + FEATURE_BATCH]), device,
                           config.channels_last)
            out.append(features_fn(x).float())
    return torch.cat(out)


def train_one_epoch_cached(model: nn.Module, arch: Arch, optimizer: torch.optim.Optimizer,
                           criterion: nn.Module, split: SplitTensors, device: torch.device,
                           config: TrialConfig, crop: int) -> tuple[float, float]:
    """Feature extraction with a frozen (eval-mode) backbone: one augmentation draw per image,
    its backbone features computed once without autograd in large batches, then the tail (which
    holds the new head) trains on them in the study's batch size."""
    features_fn, tail = split_backbone_tail(model, arch)
    tf = ClassificationPresetTrain(crop)
    order = torch.randperm(len(split))
    drawn = torch.stack([tf(split.image(int(i))) for i in order])
    labels_all = split.labels[order]
    model.eval()
    feats = _features(features_fn, drawn, device, config)
    model.get_submodule(arch.tail).train()
    total_loss, correct, seen = 0.0, 0, 0
    for idx in torch.arange(len(order)).split(config.batch_size):
        x, y = feats[idx], labels_all[idx].to(device)
        optimizer.zero_grad(set_to_none=True)
        logits = tail(x)
        loss = criterion(logits, y)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
    return total_loss / max(seen, 1), correct / max(seen, 1)


def _state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def fit(model: nn.Module, arch: Arch, config: TrialConfig, train: SplitTensors,
        val: SplitTensors, device: torch.device, state: FitState | None = None,
        on_epoch: Callable[[dict[str, Any], FitState], None] | None = None) -> FitState:
    """Train for config.epochs, keeping the best-val-accuracy epoch (ties: the earliest).

    `state` resumes after its last finished epoch; `on_epoch(row, state)` runs after each epoch
    (the Ray trainable reports and checkpoints there)."""
    crop = config.input_size or arch.input_size
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size,
                                                gamma=config.gamma)
    criterion = nn.CrossEntropyLoss()
    state = state or FitState()
    if state.model_state is not None:
        model.load_state_dict(state.model_state)
        optimizer.load_state_dict(state.optimizer_state)
        scheduler.load_state_dict(state.scheduler_state)
        state.resumed_from_epoch = state.epoch
    use_cache = config.uses_feature_cache and arch.tail is not None
    val_crops = eval_crops(val, crop) if config.cache_eval else None
    val_feats = None
    if use_cache:
        features_fn, tail = split_backbone_tail(model, arch)
        model.eval()
        val_feats = _features(features_fn, val_crops if val_crops is not None
                              else eval_crops(val, crop), device, config)
    for epoch in range(state.epoch + 1, config.epochs + 1):
        seed_everything(epoch_seed(config.seed, epoch))
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        if use_cache:
            train_loss, train_acc = train_one_epoch_cached(model, arch, optimizer, criterion,
                                                           train, device, config, crop)
        else:
            batches = train_batches(train, config.batch_size, crop)
            train_loss, train_acc = train_one_epoch(model, optimizer, criterion, batches, device,
                                                    config)
        maybe_inject(config, epoch, where="train")
        if use_cache:
            model.eval()
            result = evaluate(tail, criterion, val_feats, val.labels, device, config,
                              normalized=True)
        else:
            crops = val_crops if val_crops is not None else eval_crops(val, crop)
            result = evaluate(model, criterion, crops, val.labels, device, config)
        scheduler.step()
        seconds = time.perf_counter() - start
        state.train_seconds += seconds
        row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
               "val_loss": result.loss, "val_acc": result.acc, "lr": lr, "seconds": seconds}
        state.rows.append(row)
        if result.acc > state.best_acc:
            state.best_acc, state.best_loss, state.best_epoch = result.acc, result.loss, epoch
            state.best_state = _state_copy(model)
        state.epoch = epoch
        if on_epoch is not None:
            state.model_state = _state_copy(model)
            state.optimizer_state = copy.deepcopy(optimizer.state_dict())
            state.scheduler_state = scheduler.state_dict()
            on_epoch(row, state)
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    return state


def evaluate_split(model: nn.Module, split: SplitTensors, crop: int, device: torch.device,
                   config: TrialConfig) -> EvalResult:
    return evaluate(model, nn.CrossEntropyLoss(), eval_crops(split, crop), split.labels, device,
                    config)


def confusion_matrix(labels: torch.Tensor, preds: torch.Tensor, num_classes: int) -> list[list[int]]:
    """Rows = true label, columns = predicted label."""
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for t, p in zip(labels.tolist(), preds.tolist(), strict=False):
        cm[t, p] += 1
    return cm.tolist()


def per_class_recall(cm: list[list[int]], classes: list[str]) -> dict[str, float | None]:
    return {c: (row[i] / sum(row) if sum(row) else None) for i, (c, row) in enumerate(zip(classes,
                                                                                          cm, strict=False))}
