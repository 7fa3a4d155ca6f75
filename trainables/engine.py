"""The training loop and everything a fit function shares: `train_one_epoch`, `evaluate`, `fit`
(the best epoch on validation kept), the loss, the metrics, and `fit_sgd`, the SGD regimes' fit.

Shaped like torchvision's references/classification/train.py: a DataLoader over the decoded
training images with the train preset (fresh augmentation per epoch), a DataLoader over the eval
crops, SGD with momentum and StepLR, cross-entropy (Inception: plus 0.4 x the auxiliary loss,
`training_loss`, also what every measurement of a training step's memory runs). Every setting
comes from the `TrialConfig`; nothing else changes how a trial computes.

Every regime fits behind one signature, `fit(config, data, device, state, on_epoch) -> Fitted`,
named by its record in trainables/regimes.py (`fit_sgd` here for finetune, feature_extract and
scratch; `trainables.linear_probe.fit_probe` for the probe). `trainables.train.run_trial` does
what all regimes share: the device, the data, evaluating test and OOD with `Fitted.evaluate`, and
the three tables.

Reproducibility: every epoch reseeds torch from (trial seed, epoch), so the shuffle order, the
augmentation draws and dropout depend only on the seed and the epoch number. A trial resumed from
its epoch-k checkpoint therefore continues exactly as an uninterrupted one would.

The device and the process-wide numeric switches (precision, determinism, memory cap) are set
by the caller, `trainables.train.run_trial`, through `trainables.device`.

On a GPU: batches arrive pinned and are copied without blocking; normalisation constants live on
the device; loss and accuracy are summed on the device and read once per epoch, so the step loop
never waits for the GPU.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from trainables import cached_features
from trainables.arch_record import Arch
from trainables.archs import resolve
from trainables.config import TrialConfig
from trainables.data.dataset import DecodedSplit, Normalize, TrialData, eval_loader, train_loader
from trainables.device import autocast, cpu_copy
from trainables.errors import UserError
from trainables.faults import maybe_inject
from trainables.models import build_model, count_params

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


class DeviceInputs:
    """uint8 image batches -> normalised float inputs on the device (a non-blocking copy)."""

    def __init__(self, device: torch.device, config: TrialConfig) -> None:
        self.device, self.channels_last = device, config.channels_last
        self.normalize = Normalize(device, config.mean, config.std)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = self.normalize(batch.to(self.device, non_blocking=True))
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def to_device(device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: x.to(device, non_blocking=True)


# ----------------------------------------------------------------- loss and metrics
def training_loss(outputs: Any, labels: torch.Tensor, aux_weight: float,
                  criterion: Criterion = nn.functional.cross_entropy
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, main logits). Inception in training returns (logits, aux_logits); the loss is
    criterion(logits) + aux_weight * criterion(aux_logits), as in the PyTorch fine-tuning tutorial
    the study's scripts follow (TrialConfig.aux_loss_weight, 0.4)."""
    if isinstance(outputs, tuple) or hasattr(outputs, "aux_logits"):
        logits, aux = outputs[0], outputs[1]
        loss = criterion(logits, labels)
        if aux is not None:
            loss = loss + aux_weight * criterion(aux, labels)
        return loss, logits
    return criterion(outputs, labels), outputs


@dataclass
class EvalResult:
    loss: float
    acc: float
    probs: torch.Tensor  # (N, C) softmax, on the CPU
    labels: torch.Tensor

    @property
    def preds(self) -> torch.Tensor:
        return self.probs.argmax(dim=1)

    def recall(self, class_index: int) -> float:
        """Sensitivity of one class (NaN when the split has none of it)."""
        mask = self.labels == class_index
        if not bool(mask.any()):
            return float("nan")
        return float((self.preds[mask] == class_index).float().mean())


class Meter:
    """An epoch's loss sum and correct count, kept on the device (one host sync per epoch)."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.seen = 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.loss += loss.detach().double() * len(labels)
        self.correct += (logits.detach().argmax(1) == labels).sum()
        self.seen += len(labels)

    def result(self) -> tuple[float, float]:
        seen = max(self.seen, 1)
        return float(self.loss) / seen, int(self.correct) / seen


def selection_score(result: EvalResult, config: TrialConfig, classes: list[str]) -> float:
    """What picks the kept epoch: val accuracy, or the val recall of `select_on`'s class."""
    target = config.select_class
    if target is None:
        return result.acc
    if target not in classes:
        raise UserError(f"select_on recall:{target}: no class {target!r}; classes are {classes}")
    score = result.recall(classes.index(target))
    return -1.0 if score != score else score  # NaN (no such images in val) never wins


def confusion_matrix(labels: torch.Tensor, preds: torch.Tensor, num_classes: int) -> list[list[int]]:
    """Rows = true label, columns = predicted label."""
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for t, p in zip(labels.tolist(), preds.tolist(), strict=True):
        cm[t, p] += 1
    return cm.tolist()


def per_class_recall(cm: list[list[int]], classes: list[str]) -> dict[str, float | None]:
    return {c: (row[i] / sum(row) if sum(row) else None)
            for i, (c, row) in enumerate(zip(classes, cm, strict=True))}


# ----------------------------------------------------------------- the loop
@dataclass
class FitState:
    """Everything needed to continue a trial after its last finished epoch."""

    epoch: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    best_score: float = -1.0
    """The selection metric of the best epoch (val accuracy, or a class's val recall)."""
    best_acc: float = -1.0
    best_loss: float = float("inf")
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    model_state: dict[str, torch.Tensor] | None = None
    optimizer_state: dict[str, Any] | None = None
    scheduler_state: dict[str, Any] | None = None
    train_seconds: float = 0.0
    resumed_from_epoch: int = 0
    frozen_keys: list[str] = field(default_factory=list)
    """model_state / best_state entries training never changes (frozen_state_keys): a
    checkpoint may leave them out, and resuming takes them from the freshly built model."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def fill_frozen(self, model: nn.Module) -> None:
        """Complete model_state and best_state read from a checkpoint that left the frozen
        entries out, with the model's own tensors (the ImageNet weights it was built with)."""
        base = model.state_dict()
        for name in ("model_state", "best_state"):
            part = getattr(self, name)
            if part is not None and part.keys() != base.keys():
                missing = base.keys() - part.keys()
                if not missing <= set(self.frozen_keys) or part.keys() - base.keys():
                    raise ValueError(f"checkpoint {name} does not match the model: missing "
                                     f"{sorted(missing - set(self.frozen_keys))[:5]}")
                setattr(self, name, {k: part[k] if k in part else base[k].detach().to("cpu", copy=True)
                                     for k in base})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FitState:
        return cls(**d)


def set_train_mode(model: nn.Module, config: TrialConfig) -> None:
    """train() everywhere, except BatchNorm when feature extraction freezes the backbone."""
    model.train()
    if config.frozen_backbone:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def train_one_epoch(model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    batches: Batches, prepare: Callable[[torch.Tensor], torch.Tensor],
                    device: torch.device, config: TrialConfig) -> tuple[float, float]:
    """One pass over the training batches; returns (mean loss, accuracy)."""
    set_train_mode(model, config)
    meter = Meter(device)
    for inputs, labels in batches:
        x, y = prepare(inputs), labels.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, config.bf16):
            loss, logits = training_loss(model(x), y, config.aux_loss_weight, criterion)
        loss.backward()
        optimizer.step()
        meter.add(loss, logits, y)
    return meter.result()


def evaluate(model: nn.Module, criterion: nn.Module, batches: Batches,
             prepare: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
             config: TrialConfig) -> EvalResult:
    """Forward-only pass in eval mode; probabilities and labels come back to the CPU."""
    model.eval()
    probs, labels_all = [], []
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    with torch.inference_mode(), autocast(device, config.bf16):
        for inputs, labels in batches:
            y = labels.to(device, non_blocking=True)
            logits = model(prepare(inputs)).float()
            total_loss += criterion(logits, y).double() * len(y)
            probs.append(torch.softmax(logits, dim=1))
            labels_all.append(labels)
    if not labels_all:
        return EvalResult(float("nan"), float("nan"), torch.empty(0, 0), torch.empty(0, dtype=torch.long))
    probs_t, labels_t = torch.cat(probs).cpu(), torch.cat(labels_all)
    acc = float((probs_t.argmax(1) == labels_t).float().mean())
    return EvalResult(float(total_loss) / len(labels_t), acc, probs_t, labels_t)


def frozen_state_keys(model: nn.Module, config: TrialConfig) -> list[str]:
    """state_dict entries that training never changes: parameters that do not train (feature
    extraction's backbone) and, where BatchNorm stays in eval mode (a frozen backbone,
    set_train_mode), BatchNorm's running statistics."""
    keys = [name for name, p in model.named_parameters() if not p.requires_grad]
    if config.frozen_backbone:
        for prefix, module in model.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                keys += [f"{prefix}.{b}" if prefix else b for b, _ in module.named_buffers(recurse=False)]
    return sorted(keys)


def fit(model: nn.Module, arch: Arch, config: TrialConfig, data: TrialData, device: torch.device,
        state: FitState | None = None,
        on_epoch: Callable[[dict[str, Any], FitState], None] | None = None) -> FitState:
    """Train for config.epochs and keep the best epoch on validation (ties: the earliest).

    `state` resumes after its last finished epoch; `on_epoch(row, state)` runs after each epoch
    (the Ray trainable reports and checkpoints there)."""
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size,
                                                gamma=config.gamma)
    criterion = nn.CrossEntropyLoss()
    state = state or FitState()
    state.frozen_keys = frozen_state_keys(model, config)
    if state.model_state is not None:
        state.fill_frozen(model)  # a checkpoint without the frozen backbone
        model.load_state_dict(state.model_state)
        optimizer.load_state_dict(state.optimizer_state)
        scheduler.load_state_dict(state.scheduler_state)
        state.resumed_from_epoch = state.epoch
    images = DeviceInputs(device, config)
    train_images = train_loader(data.train, config, device)
    val_images = eval_loader(data.val, "val", config, device)
    if config.frozen_backbone and arch.tail is not None:
        path = cached_features.FrozenBackbone(model, arch, images, device, config)
        trained, prepare = path.head, to_device(device)
        val_batches: Batches = path.cached(val_images)

        def epoch_batches() -> Batches:
            return path.features(train_images)
    else:
        trained, prepare, val_batches = model, images, val_images

        def epoch_batches() -> Batches:
            return train_images

    for epoch in range(state.epoch + 1, config.epochs + 1):
        seed_everything(epoch_seed(config.seed, epoch))
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        train_loss, train_acc = train_one_epoch(trained, criterion, optimizer, epoch_batches(),
                                                prepare, device, config)
        maybe_inject(config, epoch, where="train")
        result = evaluate(trained, criterion, val_batches, prepare, device, config)
        score = selection_score(result, config, data.classes)
        scheduler.step()
        seconds = time.perf_counter() - start
        state.train_seconds += seconds
        row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
               "val_loss": result.loss, "val_acc": result.acc, "select_score": score, "lr": lr,
               "seconds": seconds}
        state.rows.append(row)
        if score > state.best_score:
            state.best_score, state.best_acc, state.best_loss = score, result.acc, result.loss
            state.best_epoch, state.best_state = epoch, cpu_copy(model.state_dict())
        state.epoch = epoch
        if on_epoch is not None:  # what a checkpoint needs: the frozen backbone never changes
            frozen = set(state.frozen_keys)
            state.model_state = cpu_copy({k: v for k, v in model.state_dict().items()
                                          if k not in frozen})
            state.optimizer_state = cpu_copy(optimizer.state_dict())
            state.scheduler_state = scheduler.state_dict()
            on_epoch(row, state)
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    return state


def evaluate_split(model: nn.Module, split: DecodedSplit, name: str, config: TrialConfig,
                   device: torch.device) -> EvalResult:
    """The kept model on a whole split ("test" or "ood"), with that split's eval transform."""
    return evaluate(model, nn.CrossEntropyLoss(), eval_loader(split, name, config, device),
                    DeviceInputs(device, config), device, config)


# ----------------------------------------------------------------- the SGD regimes' fit
OnEpoch = Callable[[dict[str, Any], FitState], None]


@dataclass
class Fitted:
    """A fitted trial: its kept model as an evaluation function, and what goes on its rows."""

    state: FitState
    """The `epochs` rows and the kept model's validation numbers (best_epoch, best_acc, ...)."""
    evaluate: Callable[[DecodedSplit, str], EvalResult]
    """The kept model on a whole split ("test" or "ood"), with that split's eval transform (the
    linear probe: the validation transform for every split, trainables/linear_probe.py)."""
    trainable_params: int
    total_params: int
    row: dict[str, Any] = field(default_factory=dict)
    """Regime-specific `trials` columns (they win over the shared ones)."""
    weights: dict[str, torch.Tensor] | None = None
    """What --keep-model saves (a state dict of the trial's torch model); None: nothing to save."""


FitFunction = Callable[[TrialConfig, TrialData, torch.device, FitState | None, OnEpoch | None],
                       Fitted]


def fit_sgd(config: TrialConfig, data: TrialData, device: torch.device,
            state: FitState | None = None, on_epoch: OnEpoch | None = None) -> Fitted:
    """finetune, feature_extract and scratch: SGD for config.epochs, the best epoch on
    validation kept (`trainables.engine.fit`); `state` resumes a trial after its last epoch."""
    seed_everything(config.seed)
    model = build_model(config, num_classes=len(data.classes))
    trainable, total = count_params(model)
    arch = resolve(config.arch, config.weights)
    state = fit(model, arch, config, data, device, state=state, on_epoch=on_epoch)

    def evaluate(split: DecodedSplit, name: str) -> EvalResult:
        return evaluate_split(model, split, name, config, device)

    return Fitted(state, evaluate, trainable, total, weights=state.best_state)
