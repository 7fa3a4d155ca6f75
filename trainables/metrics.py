"""What an evaluation measures: probabilities, accuracy, per-class recall, confusion matrices,
the selection score that picks a trial's kept epoch, and the on-device epoch meter."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainables.config import TrialConfig
from trainables.errors import UserError


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
