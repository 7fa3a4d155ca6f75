"""Shared fixtures: the shared data folders, an isolated torch cache with the real MobileNetV2
ImageNet weights imported from the pip package, and small generated image folders."""

from __future__ import annotations

import os
import signal
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
HYMENOPTERA = SHARED_DATA / "hymenoptera_data"
OOD_TEL = SHARED_DATA / "ood_tel"


@pytest.fixture(scope="session")
def torch_home(tmp_path_factory) -> Path:
    """A fresh $TORCH_HOME holding only the bundled MobileNetV2 weights, imported through the
    project's own `weights import --bundled` path (the same step `make install` runs)."""
    home = tmp_path_factory.mktemp("torch_home")
    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(home)
    from trainables.weights import bundled_files, import_file

    for f in bundled_files():
        import_file(f)
    yield home
    if old is None:
        os.environ.pop("TORCH_HOME", None)
    else:
        os.environ["TORCH_HOME"] = old


def write_image(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (48, 40),
                seed: int = 0) -> Path:
    """A small noisy RGB JPEG/PNG whose mean colour carries its class. The noise depends on the
    seed and the last three parts of the path, so files at different places (train/a/0.jpg,
    test/a/0.jpg) differ: identical bytes in two splits are refused as leakage."""
    path.parent.mkdir(parents=True, exist_ok=True)
    where = zlib.crc32("/".join(path.parts[-3:]).encode("utf-8", "surrogateescape"))
    rng = np.random.default_rng([seed, where])
    arr = np.clip(rng.normal(0, 25, size=(size[1], size[0], 3)) + np.array(color), 0, 255)
    Image.fromarray(arr.astype(np.uint8), "RGB").save(path)
    return path


@pytest.fixture
def make_pool(tmp_path):
    """make_pool({"a": 10, "b": 12}) -> a pool folder with that many images per class."""

    def make(counts: dict[str, int], root: Path | None = None, ext: str = ".jpg") -> Path:
        root = root or tmp_path / "pool"
        colors = [(200, 40, 40), (40, 40, 200), (40, 200, 40), (200, 200, 40)]
        for ci, (cls, n) in enumerate(sorted(counts.items())):
            for i in range(n):
                write_image(root / cls / f"img_{i:03d}{ext}", colors[ci % len(colors)], seed=i)
        return root

    return make


@pytest.fixture
def sweep_main(monkeypatch, torch_home):
    """sweep.run.main in this process, restoring the SIGTERM handler and environment."""
    from sweep.run import main

    for var in ("RAY_AIR_NEW_OUTPUT", "RAY_USAGE_STATS_ENABLED", "TUNE_DISABLE_SIGINT_HANDLER",
                "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S",
                "FEATURE_REUSE_FAULT"):
        monkeypatch.delenv(var, raising=False)
    previous = signal.getsignal(signal.SIGTERM)
    yield main
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="module")
def tiny_pool(tmp_path_factory):
    """Two colours x 6 images: a 60/20/20 split of 4/1/1 per class, seconds per trial."""
    root = tmp_path_factory.mktemp("tiny") / "pool"
    for ci, cls in enumerate(("blue", "red")):
        for i in range(6):
            write_image(root / cls / f"{i}.jpg", ((200, 40, 40), (40, 40, 200))[ci], seed=i)
    return root


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """Classes a and b, 6 images each: a 60/20/20 split of 4/1/1 per class (a module's CLI
    tests share it; tests that need another pool define their own `pool`)."""
    root = tmp_path_factory.mktemp("ab") / "pool"
    for ci, cls in enumerate(("a", "b")):
        for i in range(6):
            write_image(root / cls / f"{i}.jpg", (200 * ci, 60, 60), seed=i)
    return root
