"""The linear probe: fixed ImageNet features and an L2-regularised logistic regression.

The protocol of Kornblith, Shlens & Le, *Do Better ImageNet Models Transfer Better?* (CVPR 2019)
for fixed features, on this project's splits:

1. The pretrained backbone in eval mode (BatchNorm on its ImageNet statistics, dropout off), cut
   at its penultimate layer: the input of the registry entry's main head, spatially averaged when
   it is a feature map (SqueezeNet). `trainables.cached_features.frozen_extractor` builds it
   (torch.fx, BatchNorm folded into the convolutions).
2. Features of every image computed once, without augmentation, through ONE eval transform, the
   validation one (config val_resize / val_crop; `PROBE_TRANSFORM`, recorded in
   `probe_grid_json`): training, validation, test and OOD images alike. The regression is scored
   through the lens it was fitted and chosen through; with no augmentation it has no robustness
   to a change of zoom between splits (the study's test transform resizes to the crop itself,
   its validation transform to 8/7 of it), which would otherwise cost it tens of points on some
   data. The SGD regimes keep the study's per-split transforms (docs/linear_probe.md).
3. Optionally (config `probe_standardize`, default on) each feature standardised with the
   training split's mean and standard deviation.
4. scikit-learn's `LogisticRegression` (L-BFGS, L2 penalty; multinomial for three or more classes,
   the binary logistic model for two) fitted on the training features once per value of the
   config's `probe_c_grid` (C: the inverse regularisation strength). The value kept is the one with
   the best validation score (config `select_on`; ties: lower validation loss, then smaller C).
   Only validation features and labels take part in the choice; test and OOD are evaluated once,
   with the kept regression. It is not refitted on train + validation (as no regime is).

This is a different experiment from the study's feature extraction (regime feature_extract), which
trains a new head with SGD for 30 epochs on augmented crops while the whole model stays in train
mode, so BatchNorm statistics move although no weight trains. The probe has nothing random in it:
the seed changes nothing (its regime record is seedless, trainables/regimes.py), and one trial
gives the same numbers again.

Rows: one `epochs` row (the kept C's train and validation numbers, `lr` null); on the `trials`
row `probe_c` (the kept C), `probe_grid_json` (the validation curve over the grid, and which
validation images the kept regression gets right) and
`trainable_params` = the regression's coefficients and intercepts. --keep-model saves the backbone
and the regression as one torch module (trainables/model_file.py), which predict and export use
like any other kept model.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.utils.data import DataLoader

from trainables.arch_record import Arch
from trainables.archs import resolve
from trainables.cached_features import frozen_extractor
from trainables.config import TrialConfig
from trainables.data.dataset import DecodedSplit, TrialData, eval_loader
from trainables.device import autocast
from trainables.engine import (
    DeviceInputs,
    EvalResult,
    FitState,
    Fitted,
    OnEpoch,
    seed_everything,
    selection_score,
)
from trainables.errors import DataError
from trainables.model_file import probe_classifier, regression_linear
from trainables.models import build_model, count_params, set_submodule
from trainables.regimes import LINEAR_PROBE, REGIMES

PROBE_TRANSFORM = REGIMES[LINEAR_PROBE].eval_split
"""The one eval transform every split's features use (no augmentation): the validation one, which
the regression is fitted and its C chosen through (module docstring, step 2; the regime record's
`eval_split`, so `TrialConfig.eval_transform` gives it for "test" and "ood" too, and predict,
export and Grad-CAM see a kept probe's inputs as its trial did)."""


def penultimate_extractor(model: nn.Module, arch: Arch) -> nn.Module:
    """image -> the input of the main head (`arch.heads[0]`), eval mode, BatchNorm folded.

    The heads of `model` itself are swapped for nn.Identity (the probe's model is built for this
    alone), so the head's node outputs what the head would have received; fx drops what follows."""
    for path in arch.heads:
        set_submodule(model, path, nn.Identity())
    with warnings.catch_warnings():  # Inception: its train-mode graph has more nodes; eval is used
        warnings.filterwarnings("ignore", message="NOTE: The nodes obtained by tracing")
        return frozen_extractor(model, arch, node=arch.heads[0])


def features(extractor: nn.Module, loader: DataLoader, device: torch.device, config: TrialConfig
             ) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) float64 features and (N,) labels of a deterministic loader, in its order."""
    images = DeviceInputs(device, config)
    feats, labels = [], []
    with torch.inference_mode(), autocast(device, config.bf16):
        for batch, y in loader:
            f = extractor(images(batch))["features"].float()
            if f.ndim > 2:  # a feature map (SqueezeNet): global average pooling
                f = f.mean(dim=tuple(range(2, f.ndim)))
            feats.append(f.flatten(1).cpu())
            labels.append(y)
    if not feats:
        return np.zeros((0, 0)), np.zeros(0, dtype=np.int64)
    return torch.cat(feats).double().numpy(), torch.cat(labels).numpy()


@dataclass
class Probe:
    """A fitted regression with the standardisation it expects; `probs` on raw features."""

    clf: LogisticRegression
    scaler: StandardScaler | None
    num_classes: int

    def probs(self, x: np.ndarray) -> np.ndarray:
        z = self.scaler.transform(x) if self.scaler is not None else x
        out = np.zeros((len(x), self.num_classes))
        out[:, self.clf.classes_] = self.clf.predict_proba(z)
        return out

    @property
    def params(self) -> int:
        return int(self.clf.coef_.size + self.clf.intercept_.size)

    def classifier(self, model: nn.Module, arch: Arch) -> nn.Module:
        """The kept torch module: `model`'s backbone (heads replaced in place) and a Linear
        holding the regression and the standardisation (trainables/model_file.py)."""
        mean, scale = (self.scaler.mean_, self.scaler.scale_) if self.scaler is not None else (None, None)
        linear = regression_linear(self.clf.coef_, self.clf.intercept_, self.clf.classes_,
                                   self.num_classes, mean, scale)
        return probe_classifier(model, arch, linear)


def as_result(probs: np.ndarray, labels: np.ndarray) -> EvalResult:
    if len(labels) == 0:
        return EvalResult(float("nan"), float("nan"), torch.empty(0, 0),
                          torch.empty(0, dtype=torch.long))
    loss = float(log_loss(labels, np.clip(probs, 1e-15, 1.0), labels=range(probs.shape[1])))
    acc = float((probs.argmax(1) == labels).mean())
    return EvalResult(loss, acc, torch.from_numpy(probs), torch.from_numpy(labels).long())


def fit_one(c: float, x: np.ndarray, y: np.ndarray, scaler: StandardScaler | None,
            num_classes: int, config: TrialConfig) -> tuple[Probe, bool]:
    """The regression at one C; also whether L-BFGS converged within probe_max_iter."""
    clf = LogisticRegression(C=c, solver="lbfgs", max_iter=config.probe_max_iter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(scaler.transform(x) if scaler is not None else x, y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return Probe(clf, scaler, num_classes), converged


def choose(grid: list[dict[str, Any]]) -> int:
    """Index of the kept C: best validation score, then lower validation loss, then smaller C."""
    return min(range(len(grid)), key=lambda i: (-grid[i]["select_score"], grid[i]["val_loss"],
                                                grid[i]["c"]))


def fit_probe(config: TrialConfig, data: TrialData, device: torch.device,
              state: FitState | None = None, on_epoch: OnEpoch | None = None) -> Fitted:
    """The linear-probe trial up to test/OOD evaluation (`state`, `on_epoch`: unused, nothing
    to resume or report per epoch)."""
    start = time.perf_counter()
    arch = resolve(config.arch, config.weights)
    seed_everything(config.seed)
    classes = data.classes
    model = build_model(config, num_classes=len(classes))
    backbone_params = count_params(model)[1] - sum(
        p.numel() for path in arch.heads for p in model.get_submodule(path).parameters())
    extractor = penultimate_extractor(model, arch).to(device)

    def split_features(split: DecodedSplit) -> tuple[np.ndarray, np.ndarray]:
        return features(extractor, eval_loader(split, PROBE_TRANSFORM, config, device), device, config)

    x_train, y_train = split_features(data.train)
    x_val, y_val = split_features(data.val)
    if len(np.unique(y_train)) < 2:
        raise DataError("linear probe: the training split has images of one class only; a "
                        "classifier needs two or more")
    scaler = StandardScaler().fit(x_train) if config.probe_standardize else None
    grid, probes = [], []
    for c in config.probe_c_grid:
        probe, converged = fit_one(c, x_train, y_train, scaler, len(classes), config)
        train = as_result(probe.probs(x_train), y_train)
        val = as_result(probe.probs(x_val), y_val)
        grid.append({"c": c, "train_loss": train.loss, "train_acc": train.acc,
                     "val_loss": val.loss, "val_acc": val.acc,
                     "select_score": selection_score(val, config, classes), "converged": converged})
        probes.append(probe)
    best = choose(grid)
    probe, kept = probes[best], grid[best]
    seconds = time.perf_counter() - start
    epoch_row = {"epoch": 1, "train_loss": kept["train_loss"], "train_acc": kept["train_acc"],
                 "val_loss": kept["val_loss"], "val_acc": kept["val_acc"],
                 "select_score": kept["select_score"], "lr": None, "seconds": seconds}
    fit_state = FitState(epoch=1, rows=[epoch_row], best_score=kept["select_score"],
                         best_acc=kept["val_acc"], best_loss=kept["val_loss"], best_epoch=1,
                         train_seconds=seconds)
    curve = {"val_images": int(len(y_val)), "train_images": int(len(y_train)),
             "features": int(x_train.shape[1]), "kept": best,
             **{k: [g[k] for g in grid] for k in grid[0]},
             "transform": dict(zip(("split", "resize", "crop"),
                                   (PROBE_TRANSFORM, *config.eval_transform(PROBE_TRANSFORM)), strict=True)),
             # the kept regression on each validation image, in manifest order: what the triage's
             # paired comparison of architectures needs (analysis/probe_triage.py)
             "val_correct": (probe.probs(x_val).argmax(1) == y_val).astype(int).tolist()}

    def evaluate(split: DecodedSplit, name: str) -> EvalResult:
        """Any split ("test", "ood") through PROBE_TRANSFORM, whatever its own eval transform."""
        x, y = split_features(split)
        return as_result(probe.probs(x), y)

    return Fitted(fit_state, evaluate, trainable_params=probe.params,
                  total_params=backbone_params + probe.params,
                  row={"epochs": 1, "probe_c": kept["c"], "probe_grid_json": json.dumps(curve)},
                  weights=probe.classifier(model, arch).state_dict())


def grid_edge_note(c: float, grid: tuple[float, ...]) -> str | None:
    """A warning when the kept C is the grid's smallest or largest value (widen the grid)."""
    if len(grid) > 1 and c in (min(grid), max(grid)):
        side = "smallest" if c == min(grid) else "largest"
        return (f"the kept C={c:g} is the grid's {side} value: a better one may lie outside; "
                "widen it with --set probe_c_grid=...")
    return None
