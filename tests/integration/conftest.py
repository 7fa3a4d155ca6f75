"""Fixtures the integration tests share: a small two-class pool, and one trial's fit over it
(the sweep CLI in this process, `sweep_main`, is in tests/conftest.py)."""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest

from trainables.archs import resolve
from trainables.data.dataset import load_trial_data
from trainables.data.folders import build_manifest
from trainables.data.manifest import DataRoots
from trainables.device import LOGICAL_GPUS_ENV, select_device
from trainables.engine import fit, seed_everything
from trainables.models import build_model
from trainables.results import tables as results


@pytest.fixture
def small_pool(make_pool):
    """Enough images for reproducibility checks, few enough to keep them fast."""
    pool = make_pool({"blue": 10, "red": 10})
    return pool, build_manifest(pool, split_seed=0)


def fit_on_pool(config, manifest, pool, state=None, on_epoch=None):
    """(FitState, model) of one trial's training on `pool`, on this machine's device."""
    data = load_trial_data(manifest, DataRoots(str(pool)), config.train_size)
    seed_everything(config.seed)
    model = build_model(config, len(data.classes))
    arch = resolve(config.arch, config.weights)
    return fit(model, arch, config, data, select_device(None), state, on_epoch), model


def sweep_on_logical_gpus(monkeypatch, pool: Path, storage: Path, name: str, *extra: str
                          ) -> tuple[int, list[dict], list[dict]]:
    """The real sweep CLI in this process (smoke preset, scratch, train size 4) on a Ray cluster
    whose GPUs are logical: trials train on the CPU and say so. Returns (exit code, the trials
    rows, each trial's last Ray result)."""
    from sweep.run import main

    monkeypatch.delenv("FEATURE_REUSE_FAULT", raising=False)
    monkeypatch.setenv(LOGICAL_GPUS_ENV, "1")
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code = main(["--preset", "smoke", "--data", str(pool), "--train-sizes", "4",
                     "--regimes", "scratch", "--storage", str(storage), "--name", name,
                     "--keep-models", "none", *extra])
    finally:
        signal.signal(signal.SIGTERM, previous)
    root = storage / name
    trials = (results.read_table(str(root / "results"), "trials").to_pylist()
              if (root / "results").exists() else [])
    finals = [json.loads(f.read_text().splitlines()[-1]) for f in (root / "ray").glob("*/result.json")]
    return code, trials, finals


@dataclass(frozen=True)
class KeptExperiment:
    root: Path
    """The experiment folder (sweep layout: manifest.json, results/ with models/)."""
    pool: Path
    ood: Path
    rows: dict[str, dict]
    """The trials row of each regime kept (finetune, linear_probe)."""


@pytest.fixture(scope="session")
def kept_experiment(tmp_path_factory, torch_home) -> KeptExperiment:
    """A tiny experiment with kept models, built once per session: smoke preset, mobilenet_v2
    with ImageNet weights, fine-tune (seed 0) and the linear probe, on a generated two-class pool
    with an OOD folder, in the sweep's layout (run_trial, no Ray: seconds, not a Ray start-up)."""
    from tests.conftest import write_image
    from trainables.data.demo import prepare_data
    from trainables.presets import PRESETS
    from trainables.train import run_trial

    base = tmp_path_factory.mktemp("kept_experiment")
    colours = {"blue": (40, 40, 200), "red": (200, 40, 40)}
    for folder, per_class, seed0 in (("pool", 10, 0), ("ood", 3, 500)):
        for ci, (cls, colour) in enumerate(colours.items()):
            for i in range(per_class):
                write_image(base / folder / cls / f"img_{i:03d}.jpg", colour, seed=seed0 + 50 * ci + i)
    roots, manifest = prepare_data(str(base / "pool"), str(base / "ood"))
    root = base / "exp"
    manifest.save(str(root / "manifest.json"))
    rows = {regime: run_trial(PRESETS["smoke"].trial("mobilenet_v2", regime, 0), manifest, roots,
                              str(root / "results"), keep_model=True)
            for regime in ("finetune", "linear_probe")}
    return KeptExperiment(root, base / "pool", base / "ood", rows)
