"""The Ray Tune function trainable: one trial = trainables.train.run_trial, reported every epoch
and checkpointed by time (sweep/checkpoints.py).

A trial's Tune config is {"point": {"trial_id": ..., "trial": TrialConfig as a dict}}, one of
the points still to run (sweep/tuner.py, GridPoints). Everything shared by all trials (the split manifest,
the images, where results go) is passed once through tune.with_parameters, so every trial
reads the manifest the driver built and the images the driver read (sweep/datastore.py), and
writes into the experiment folder from any node (sweep/served_storage.py when it is a local
folder of the driver's machine).
"""

from __future__ import annotations

import os
import time
from typing import Any

import ray
import torch
from ray import tune

from sweep.checkpoints import checkpoint_due, load_state, previous_checkpoint, report_epoch
from sweep.datastore import ShippedImages, ShippedSource
from sweep.gpu_spread import spread_trial_gpu, trial_gpu_share
from sweep.layout import Experiment
from trainables.archs import resolve
from trainables.config import TrialConfig, trial_id
from trainables.data.manifest import Manifest
from trainables.device import LOGICAL_GPUS_ENV
from trainables.results import storage
from trainables.train import run_trial
from trainables.weights import weights_file as imagenet_weights_file

FORWARDED_ENV = ("TORCH_HOME", "FEATURE_REUSE_FAULT", LOGICAL_GPUS_ENV)
"""Driver environment that trials must see, also when Ray was started elsewhere: the torch
weights cache, the reliability tests' fault-injection hook (trainables/faults.py) and the
simulated-cluster marker for logical GPUs (trainables/device.py). Not the data's location: trials
get the images from the driver. None of them changes how a trial computes: that is all in
TrialConfig."""


def forwarded_env() -> dict[str, str]:
    return {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}


def apply_env(env: dict[str, str]) -> None:
    """Set the driver's variables; a fault spec the driver does not have must not linger in a
    reused worker process."""
    os.environ.update(env)
    if "FEATURE_REUSE_FAULT" not in env:
        os.environ.pop("FEATURE_REUSE_FAULT", None)


def _threads(default: int = 1) -> int:
    try:
        cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", default)
    except Exception:
        cpus = default
    return max(1, int(round(cpus)))


def run_tune_trial(param: dict[str, Any], *, manifest_json: str, images: ShippedImages,
                   experiment_root: str, storage_fs: Any, keep_model: bool,
                   env: dict[str, str], checkpoint_every_s: float = 0.0) -> None:
    """`storage_fs`: the driver's experiment folder served through Ray (None when the
    experiment is on shared storage, which every node writes directly)."""
    apply_env(env)
    if storage_fs is not None:
        storage.mount(experiment_root, storage_fs)
    torch.set_num_threads(_threads())
    config = TrialConfig(**param["point"]["trial"])
    manifest = Manifest.from_json(manifest_json)
    tid = trial_id(config, manifest.hash)
    if tid != param["point"]["trial_id"]:
        raise RuntimeError(f"trial id mismatch: driver {param['point']['trial_id']}, worker {tid} "
                           "(different code versions on driver and worker?)")
    experiment = Experiment(experiment_root)
    weights_file = imagenet_weights_file(resolve(config.arch, config.weights)) if config.pretrained else None
    checkpoint = tune.get_checkpoint() or previous_checkpoint(experiment, tid)
    state = load_state(checkpoint, tid, weights_file) if checkpoint is not None else None
    last_checkpoint = time.monotonic()

    def on_epoch(row: dict[str, Any], fit_state) -> None:
        nonlocal last_checkpoint
        metrics = {**row, "epochs": config.epochs, "best_val_acc": fit_state.best_acc,
                   "done": False}
        due = checkpoint_due(row["epoch"], config.epochs, time.monotonic() - last_checkpoint,
                             checkpoint_every_s)
        report_epoch(metrics, fit_state, tid, weights_file, checkpoint=due)
        if due:
            last_checkpoint = time.monotonic()

    # Fractional trials take the least loaded GPU of their node (Ray would pack them onto the
    # first GPUs); CUDA_VISIBLE_DEVICES points at it before CUDA starts.
    share = trial_gpu_share()
    with spread_trial_gpu(share) as gpu_ids:
        row = run_trial(config, manifest, ShippedSource(images), experiment.results,
                        state=state, on_epoch=on_epoch, keep_model=keep_model, gpu_ids=gpu_ids,
                        gpu_share=share)
    # One last report after the Parquet files are written: Ray sees the trial complete, and the
    # progress view gets its final numbers.
    tune.report({
        "epoch": config.epochs, "epochs": config.epochs, "done": True, "status": row["status"],
        "best_val_acc": row["best_val_acc"], "best_epoch": row["best_epoch"],
        "test_acc": row["test_acc"], "ood_acc": row["ood_acc"],
        "trial_seconds": row["total_seconds"], "resumed_from_epoch": row["resumed_from_epoch"],
        "node_id": ray.get_runtime_context().get_node_id(),
        "gpu_ids": ",".join(gpu_ids),
    })
