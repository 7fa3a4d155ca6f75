"""What fitting a regime hands back to `trainables.train.run_trial`, and the SGD regimes' fit.

Every regime fits behind one signature, `fit(config, data, device, state, on_epoch) -> Fitted`;
run_trial looks the function up by regime (`trainables.train.FIT`) and does what all regimes
share: the device, the data, evaluating test and OOD with `Fitted.evaluate`, and the three tables.

- `fit_sgd`: the study's three regimes, the SGD loop of `trainables.engine.fit`.
- `trainables.linear_probe.fit_probe`: the linear probe (features once, logistic regression).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from trainables.archs import resolve
from trainables.config import TrialConfig
from trainables.dataset import DecodedSplit, TrialData
from trainables.engine import FitState, evaluate_split, fit, seed_everything
from trainables.metrics import EvalResult
from trainables.models import build_model, count_params

OnEpoch = Callable[[dict[str, Any], FitState], None]


@dataclass
class Fitted:
    """A fitted trial: its kept model as an evaluation function, and what goes on its rows."""

    state: FitState
    """The `epochs` rows and the kept model's validation numbers (best_epoch, best_acc, ...)."""
    evaluate: Callable[[DecodedSplit, str], EvalResult]
    """The kept model on a whole split ("test" or "ood"), with that split's eval transform."""
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
