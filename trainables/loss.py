"""The training loss: cross-entropy, plus the study's weighted auxiliary term for Inception v3.

One definition for the training loop (trainables/engine.py) and for everything that measures a
training step's memory (bench/footprint.py, sweep/memory_check.py), so a measured step is the step
that trains.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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
