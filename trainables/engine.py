"""The training loop: `train_one_epoch`, `evaluate`, `fit` (best-val-accuracy epoch kept).

Reproducibility: every epoch reseeds torch from (trial seed, epoch), so the shuffle order, the
augmentation draws and dropout depend only on the seed and the epoch number. A trial resumed from
its epoch-k checkpoint therefore continues exactly as an uninterrupted one would (on CPU).

Fast paths (docs/performance.md has the measurements and the equivalence tests). Per trial, in
TrialConfig: decode_once, cache_eval, feature_cache, channels_last, bf16. Engine-wide, in
`FastPaths` (environment variable FEATURE_REUSE_FASTPATHS, e.g. "augment=pil,fuse_frozen=0"),
because they change speed but not the experiment: where augmentation runs (Pillow on the CPU,
bit-identical to the study's transforms; or tensor kernels on the GPU), conv+BatchNorm folding in
the frozen feature-extraction backbone, the forward-only batch size, and keeping per-step
metrics on the device (no host synchronisation per step).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
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
from trainables.errors import UserError
from trainables.faults import maybe_inject
from trainables.models import Arch, split_backbone_tail
from trainables.transforms import (
    ClassificationPresetEval,
    ClassificationPresetTrain,
    PilEvalCrop,
    PilTrainCrop,
    normalize,
    to_pil,
)

FEATURE_BATCH = 64
"""Batch size for forward-only passes (evaluation, cached features) on a GPU. In eval mode a
forward pass does not depend on the batch size, so this changes speed only, never a result."""
CPU_FEATURE_BATCH = 8
"""The same on a CPU, where large batches are slower per image: their activations fall out of
the cache (measured: MobileNetV2 at 160 px, ~9 ms per image at batch 6, ~28 at batch 46)."""

FASTPATHS_ENV = "FEATURE_REUSE_FASTPATHS"
AUGMENT_BACKENDS = ("auto", "pil", "tensor")


@dataclass(frozen=True)
class FastPaths:
    """Engine-wide speed switches. None of them changes the experiment; each can be turned off."""

    augment: str = "auto"
    """Where the training crops and eval crops are made: "pil" (Pillow on the CPU, the study's
    transforms bit for bit), "tensor" (torchvision.transforms.v2 kernels on the trial's device),
    or "auto": tensor on CUDA, pil on CPU."""
    fuse_frozen: bool = True
    """In the cached-feature path, fold each BatchNorm into its conv in a copy of the frozen
    eval-mode backbone (the same function, fewer passes over memory)."""
    feature_batch: int = 0
    """Forward-only batch size; 0: FEATURE_BATCH on GPU, CPU_FEATURE_BATCH on CPU."""
    device_metrics: bool = True
    """Sum per-step loss and accuracy on the device and read them once per epoch, instead of
    synchronising with the GPU twice per step."""

    def backend(self, device: torch.device) -> str:
        if self.augment == "auto":
            return "tensor" if device.type == "cuda" else "pil"
        return self.augment

    def forward_batch(self, device: torch.device) -> int:
        if self.feature_batch:
            return self.feature_batch
        return FEATURE_BATCH if device.type == "cuda" else CPU_FEATURE_BATCH

    @classmethod
    def parse(cls, text: str) -> FastPaths:
        """"augment=pil,fuse_frozen=0,feature_batch=16,device_metrics=1" (any subset)."""
        values: dict[str, Any] = {}
        kinds = {f.name: f.type for f in dataclasses.fields(cls)}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or name not in kinds:
                raise UserError(f"{FASTPATHS_ENV}: {item!r} is not NAME=VALUE with NAME one of "
                                f"{', '.join(kinds)}")
            value = value.strip().lower()
            if name == "augment":
                if value not in AUGMENT_BACKENDS:
                    raise UserError(f"{FASTPATHS_ENV}: augment={value!r}; use one of "
                                    f"{', '.join(AUGMENT_BACKENDS)}")
                values[name] = value
            elif name == "feature_batch":
                if not value.isdigit():
                    raise UserError(f"{FASTPATHS_ENV}: feature_batch={value!r}; use a whole number "
                                    "(0: automatic)")
                values[name] = int(value)
            else:
                if value not in ("0", "1", "true", "false", "on", "off"):
                    raise UserError(f"{FASTPATHS_ENV}: {name}={value!r}; use 1/0 (on/off)")
                values[name] = value in ("1", "true", "on")
        return cls(**values)


_FAST_OVERRIDE: FastPaths | None = None


def current_fast_paths() -> FastPaths:
    """The override set by `fast_paths(...)`, else $FEATURE_REUSE_FASTPATHS, else defaults."""
    if _FAST_OVERRIDE is not None:
        return _FAST_OVERRIDE
    return FastPaths.parse(os.environ.get(FASTPATHS_ENV, ""))


@contextlib.contextmanager
def fast_paths(**changes: Any) -> Iterator[FastPaths]:
    """Run a block with some engine fast paths changed (tests, the benchmark)."""
    global _FAST_OVERRIDE
    previous = _FAST_OVERRIDE
    _FAST_OVERRIDE = dataclasses.replace(current_fast_paths(), **changes)
    try:
        yield _FAST_OVERRIDE
    finally:
        _FAST_OVERRIDE = previous


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


def eval_crops(split: SplitTensors, crop: int, backend: str = "pil") -> torch.Tensor:
    """The deterministic eval crops of a split, uint8 (N, 3, crop, crop), on the CPU."""
    if backend == "pil":
        tf = PilEvalCrop(crop)
        return torch.stack([tf(to_pil(split.image(i))) for i in range(len(split))])
    tf_t = ClassificationPresetEval(crop)
    return torch.stack([tf_t(split.image(i)) for i in range(len(split))])


def _decoded(split: SplitTensors) -> bool:
    return all(isinstance(item, torch.Tensor) for item in split.images)


class TrainImages:
    """A training split made ready for a fresh augmentation draw every epoch.

    backend "pil": the decoded images are kept as PIL images, and each draw is the study's own
    transforms v1 RandomResizedCrop + flip (bit-identical crops for the same RNG state).
    backend "tensor": the uint8 tensors are moved to `device` once and cropped there with
    transforms v2. With decode_once off the split decodes from disk on every access, and so does
    this (nothing is kept)."""

    def __init__(self, split: SplitTensors, crop: int, device: torch.device, backend: str) -> None:
        self.split, self.device, self.backend = split, device, backend
        self.labels = split.labels
        self.tf: Callable[[Any], torch.Tensor]
        if backend == "pil":
            self.tf = PilTrainCrop(crop)
        else:
            self.tf = ClassificationPresetTrain(crop)
        self._kept = [self._convert(item) for item in split.images] if _decoded(split) else None

    def __len__(self) -> int:
        return len(self.split)

    def _convert(self, img: torch.Tensor) -> Any:
        return to_pil(img) if self.backend == "pil" else img.to(self.device)

    def _image(self, i: int) -> Any:
        return self._kept[i] if self._kept is not None else self._convert(self.split.image(i))

    def draw(self, indices: torch.Tensor) -> torch.Tensor:
        """uint8 (len(indices), 3, crop, crop) on the device: one fresh draw per image, in order."""
        batch = torch.stack([self.tf(self._image(int(i))) for i in indices])
        return batch.to(self.device, non_blocking=True)


def train_batches(images: TrainImages, batch_size: int) -> Iterator[tuple[torch.Tensor,
                                                                          torch.Tensor]]:
    """Shuffled batches with fresh augmentation (global torch RNG, reseeded per epoch)."""
    order = torch.randperm(len(images))
    for chunk in order.split(batch_size):
        yield normalize(images.draw(chunk)), images.labels[chunk]


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
    meter = _Meter(device)
    for images, labels in batches:
        images = _to_device(images, device, config.channels_last)
        labels = labels.to(device)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, config.bf16):
            loss, logits = _loss(model(images), labels, criterion, config.aux_loss_weight)
        loss.backward()
        optimizer.step()
        meter.add(loss, logits, labels)
    return meter.result()


class _Meter:
    """Running loss sum and correct count of an epoch. With FastPaths.device_metrics they stay
    on the device (float64 sums; one host sync per epoch), else they are read every step."""

    def __init__(self, device: torch.device) -> None:
        self.on_device = current_fast_paths().device_metrics
        self.loss: Any = torch.zeros((), dtype=torch.float64, device=device) if self.on_device else 0.0
        self.correct: Any = torch.zeros((), dtype=torch.long, device=device) if self.on_device else 0
        self.seen = 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        n = len(labels)
        if self.on_device:
            self.loss += loss.detach().double() * n
            self.correct += (logits.detach().argmax(1) == labels).sum()
        else:
            self.loss += loss.item() * n
            self.correct += int((logits.argmax(1) == labels).sum())
        self.seen += n

    def result(self) -> tuple[float, float]:
        seen = max(self.seen, 1)
        return float(self.loss) / seen, int(self.correct) / seen


def evaluate(model: Callable[[torch.Tensor], torch.Tensor], criterion: nn.Module,
             crops: torch.Tensor, labels: torch.Tensor, device: torch.device,
             config: TrialConfig, normalized: bool = False) -> EvalResult:
    """Forward-only pass over uint8 crops (or precomputed inputs when `normalized`)."""
    if isinstance(model, nn.Module):
        model.eval()
    probs = []
    total_loss = 0.0
    step = current_fast_paths().forward_batch(device)
    with torch.inference_mode(), _autocast(device, config.bf16):
        for start in range(0, len(crops), step):
            chunk = crops[start:start + step]
            x = chunk.to(device) if normalized else _to_device(normalize(chunk), device,
                                                               config.channels_last)
            logits = model(x).float()
            y = labels[start:start + step].to(device)
            total_loss += float(criterion(logits, y)) * len(y)
            probs.append(torch.softmax(logits, dim=1).cpu())
    probs_t = torch.cat(probs) if probs else torch.empty(0, 0)
    acc = int((probs_t.argmax(1) == labels).sum()) / len(labels) if len(labels) else float("nan")
    return EvalResult(total_loss / max(len(labels), 1), acc, probs_t, labels)


def _features(features_fn: Callable[[torch.Tensor], torch.Tensor], crops_uint8: torch.Tensor,
              device: torch.device, config: TrialConfig) -> torch.Tensor:
    out = []
    step = current_fast_paths().forward_batch(device)
    with torch.no_grad(), _autocast(device, config.bf16):
        for start in range(0, len(crops_uint8), step):
            x = _to_device(normalize(crops_uint8[start:start + step]), device,
                           config.channels_last)
            out.append(features_fn(x).float())
    return torch.cat(out)


def frozen_backbone(model: nn.Module, arch: Arch, fuse: bool
                    ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function image -> input of the architecture's tail, for a frozen eval-mode backbone.

    fuse=False: the model itself, with a hook capturing the tail's input. fuse=True: a copy of
    the model traced by torch.fx up to the tail's input, with every BatchNorm folded into the
    conv before it; in eval mode that is the same function with fewer passes over memory, equal
    up to float rounding (tests/test_fastpaths.py). The copy is taken now: the backbone must not
    change afterwards, which feature extraction with bn_mode="frozen" guarantees."""
    hooked = split_backbone_tail(model, arch)[0]
    if not fuse:
        return hooked
    try:
        return _fused_backbone(model, arch)
    except Exception:  # not traceable by torch.fx: the hooked model computes the same function
        return hooked


def _fused_backbone(model: nn.Module, arch: Arch) -> nn.Module:
    from torch import fx
    from torch.fx.experimental.optimization import fuse as fx_fuse

    tail_name = arch.tail

    class TailAsLeaf(fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return qualname == tail_name or super().is_leaf_module(m, qualname)

    backbone = copy.deepcopy(model).eval()
    for param in backbone.parameters():
        param.requires_grad_(False)
    graph = TailAsLeaf().trace(backbone)
    tail_node = next(n for n in graph.nodes if n.op == "call_module" and n.target == tail_name)
    output = next(n for n in graph.nodes if n.op == "output")
    output.args = (tail_node.args[0],)
    traced = fx.GraphModule(backbone, graph).eval()
    traced.graph.eliminate_dead_code()
    traced.recompile()
    traced.delete_all_unused_submodules()  # the tail (VGG: 120M parameters) is not needed
    fused = fx_fuse(traced, inplace=True, no_trace=True)
    return _ChannelsLast(fused.to(memory_format=torch.channels_last))


class _ChannelsLast(nn.Module):
    """Runs a forward-only module in channels_last (faster convolutions on CPU and GPU here; the
    memory layout changes float summation order only)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.contiguous(memory_format=torch.channels_last))


def train_one_epoch_cached(model: nn.Module, arch: Arch, optimizer: torch.optim.Optimizer,
                           criterion: nn.Module, images: TrainImages, device: torch.device,
                           config: TrialConfig,
                           features_fn: Callable[[torch.Tensor], torch.Tensor] | None = None
                           ) -> tuple[float, float]:
    """Feature extraction with a frozen (eval-mode) backbone: one augmentation draw per image,
    its backbone features computed once without autograd in forward-only batches, then the tail
    (which holds the new head) trains on them in the study's batch size."""
    hooked, tail = split_backbone_tail(model, arch)
    features_fn = features_fn or hooked
    order = torch.randperm(len(images))
    drawn = images.draw(order)
    labels_all = images.labels[order]
    model.eval()
    feats = _features(features_fn, drawn, device, config)
    model.get_submodule(arch.tail).train()
    meter = _Meter(device)
    for idx in torch.arange(len(order)).split(config.batch_size):
        x, y = feats[idx], labels_all[idx].to(device)
        optimizer.zero_grad(set_to_none=True)
        logits = tail(x)
        loss = criterion(logits, y)
        loss.backward()
        optimizer.step()
        meter.add(loss, logits, y)
    return meter.result()


def _state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def fit(model: nn.Module, arch: Arch, config: TrialConfig, train: SplitTensors,
        val: SplitTensors, device: torch.device, state: FitState | None = None,
        on_epoch: Callable[[dict[str, Any], FitState], None] | None = None) -> FitState:
    """Train for config.epochs, keeping the best-val-accuracy epoch (ties: the earliest).

    `state` resumes after its last finished epoch; `on_epoch(row, state)` runs after each epoch
    (the Ray trainable reports and checkpoints there)."""
    crop = config.input_size or arch.input_size
    fast = current_fast_paths()
    backend = fast.backend(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: pick the fastest kernels once
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
    train_images = TrainImages(train, crop, device, backend)
    val_crops = eval_crops(val, crop, backend) if config.cache_eval else None
    val_feats = None
    features_fn = None
    if use_cache:
        _, tail = split_backbone_tail(model, arch)
        model.eval()
        features_fn = frozen_backbone(model, arch, fast.fuse_frozen)
        val_feats = _features(features_fn, val_crops if val_crops is not None
                              else eval_crops(val, crop, backend), device, config)
    for epoch in range(state.epoch + 1, config.epochs + 1):
        seed_everything(epoch_seed(config.seed, epoch))
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        if use_cache:
            train_loss, train_acc = train_one_epoch_cached(model, arch, optimizer, criterion,
                                                           train_images, device, config,
                                                           features_fn)
        else:
            batches = train_batches(train_images, config.batch_size)
            train_loss, train_acc = train_one_epoch(model, optimizer, criterion, batches, device,
                                                    config)
        maybe_inject(config, epoch, where="train")
        if use_cache:
            model.eval()
            result = evaluate(tail, criterion, val_feats, val.labels, device, config,
                              normalized=True)
        else:
            crops = val_crops if val_crops is not None else eval_crops(val, crop, backend)
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
    backend = current_fast_paths().backend(device)
    return evaluate(model, nn.CrossEntropyLoss(), eval_crops(split, crop, backend), split.labels,
                    device, config)


def confusion_matrix(labels: torch.Tensor, preds: torch.Tensor, num_classes: int) -> list[list[int]]:
    """Rows = true label, columns = predicted label."""
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for t, p in zip(labels.tolist(), preds.tolist(), strict=False):
        cm[t, p] += 1
    return cm.tolist()


def per_class_recall(cm: list[list[int]], classes: list[str]) -> dict[str, float | None]:
    return {c: (row[i] / sum(row) if sum(row) else None) for i, (c, row) in enumerate(zip(classes,
                                                                                          cm, strict=False))}
