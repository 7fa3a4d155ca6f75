"""Synthetic results with known answers, written through the real schema and writer
(trainables.results), so analysis tests read exactly what a sweep would leave behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from trainables.results import tables as results

STEP_LR_15 = [1e-3] * 7 + [1e-4] * 7 + [1e-5]  # demo: StepLR(7) over 15 epochs


def write_synthetic_trial(root: Path | str, arch: str, regime: str, seed: int, *,
                          val: list[float] | None = None, lr: list[float] | None = None,
                          test: float | list[bool] = 0.8, ood: float | list[bool] | None = 0.7,
                          ood_kind: str = "real", train_size: str = "all", per_class: float = 60.0,
                          params: int | None = None, status: str = "ok", error: str | None = None,
                          classes: tuple[str, ...] = ("alpha", "beta"), best_val_loss: float = 0.3,
                          model_path: str | None = None, manifest_hash: str = "m0",
                          config: dict | None = None, row: dict | None = None) -> str:
    """One trial's three tables. `test`/`ood` are accuracies or per-image correctness lists (the
    predictions table then has one row per image, paths shared across trials). `config` becomes
    the trial's config_json; `row` adds or replaces trials columns."""
    val = val if val is not None else [0.5, 0.7, 0.8]
    lr = lr if lr is not None else [1e-3] * len(val)
    tid = f"{arch}-{regime}-{seed}-{train_size}"
    key = {"trial_id": tid, "arch": arch, "regime": regime, "seed": seed, "train_size": train_size}
    if status != "ok":
        results.write_table_atomic(str(root), "trials", tid, [{**key, "status": status, "error": error,
                                                                "ood_kind": ood_kind}])
        return tid
    epochs = [{**key, "epoch": i + 1, "train_loss": 0.5, "train_acc": 0.6, "val_loss": 0.4,
               "val_acc": v, "lr": r, "seconds": 1.0} for i, (v, r) in enumerate(zip(val, lr, strict=True))]
    best_epoch = int(np.argmax(val)) + 1
    preds = []

    def acc_and_rows(value: float | list[bool] | None, split: str) -> float | None:
        if value is None:
            return None
        if isinstance(value, (int, float)):
            return float(value)
        for i, ok in enumerate(value):
            true = classes[i % len(classes)]
            pred = true if ok else classes[(i + 1) % len(classes)]
            preds.append({**key, "split": split, "path": f"{true}/img_{i:03d}.jpg", "true_label": true,
                          "pred_label": pred, "prob": 0.9, "true_prob": 0.9 if ok else 0.1,
                          "correct": bool(ok)})
        return float(np.mean(value))

    test_acc = acc_and_rows(test, "test")
    ood_acc = acc_and_rows(ood if ood_kind != "none" else None, "ood")
    if params is None:
        params = 2_000 if regime == "feature_extract" else 1_000_000
    trial = {**key, "preset": "smoke", "status": "ok", "epochs": len(val), "best_epoch": best_epoch,
             "best_val_acc": max(val), "best_val_loss": best_val_loss, "test_acc": test_acc,
             "ood_acc": ood_acc, "ood_kind": ood_kind, "classes_json": json.dumps(list(classes)),
             "train_images": int(per_class * len(classes)), "train_images_per_class": per_class,
             "trainable_params": params, "total_params": 1_000_000, "model_path": model_path,
             "split_manifest_hash": manifest_hash,
             "config_json": json.dumps(config) if config is not None else None, **(row or {})}
    results.write_trial(str(root), tid, epochs, trial, preds)
    return tid
