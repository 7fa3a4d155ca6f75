"""Where a results folder's images are on this machine, and which test images Grad-CAM draws.

The split manifest stores image paths relative to the data (or OOD) folder. The folders come
from, in this order:

1. ``--data`` / ``--ood`` given to the report or to ``python -m analysis.gradcam``;
2. the folders the sweep recorded in its experiment folder (``<experiment>/data_roots.json``,
   written by ``python -m sweep.run``; see trainables/data/manifest.py), when they exist here;
3. the embedded demo set, when the manifest says the trials used it.

Every image is checked against the manifest's content hash before it is drawn.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from analysis.load import Results
from trainables.data.manifest import DATA_ROOTS_FILE
from trainables.errors import DataError, UserError


@dataclass(frozen=True)
class ImageRoots:
    data: str
    ood: str | None
    origin: str
    """How the folders were found, in words (shown in the report)."""

    def resolve(self, root: str, rel_path: str) -> Path:
        base = self.data if root == "data" else self.ood
        if base is None:
            raise DataError(f"image {rel_path} is in the OOD folder, but no OOD folder is known; "
                            "pass --ood")
        return Path(base) / rel_path


def find_recorded(res: Results) -> tuple[str | None, dict[str, Any] | None]:
    """(path, content) of the data_roots.json beside the results (``<results>/`` or its parent,
    like the manifest), or (None, None)."""
    from trainables.results.storage import resolve

    fs, base = resolve(res.root)
    for candidate in (posixpath.join(base, DATA_ROOTS_FILE),
                      posixpath.join(posixpath.dirname(base.rstrip("/")), DATA_ROOTS_FILE)):
        if fs.get_file_info(candidate).type == pafs.FileType.File:
            with fs.open_input_stream(candidate) as f:
                try:
                    return candidate, json.loads(f.read().decode("utf-8"))
                except ValueError:
                    return candidate, None
    return None, None


def find_roots(res: Results, data: str | None = None, ood: str | None = None) -> ImageRoots:
    """The image folders of `res` (see the module docstring), or a UserError saying what is
    missing and what to pass."""
    if data is not None:
        return ImageRoots(str(Path(data).resolve()), str(Path(ood).resolve()) if ood else None,
                          "--data" + (" and --ood" if ood else ""))
    path, recorded = find_recorded(res)
    hashes = set(res.trials["split_manifest_hash"].dropna())
    if recorded is not None and recorded.get("data"):
        same_split = not recorded.get("manifest_hash") or not hashes or recorded["manifest_hash"] in hashes
        rec_ood = recorded.get("ood")
        if same_split and Path(recorded["data"]).is_dir():
            usable_ood = rec_ood if rec_ood and Path(rec_ood).is_dir() else None
            if ood is not None:
                usable_ood = str(Path(ood).resolve())
            return ImageRoots(recorded["data"], usable_ood, f"recorded by the sweep in {path}")
    layout = res.manifest_layout
    if layout == "embedded-demo":
        from trainables.data.demo import locate

        return ImageRoots(str(locate()), None, "the embedded demo set")
    if recorded is not None and recorded.get("data"):
        why = (f"the sweep recorded the data folder {recorded['data']} in {path}, but it does not "
               "exist on this machine" if not Path(recorded["data"]).is_dir() else
               f"{path} belongs to another split (manifest {recorded.get('manifest_hash')})")
    elif path is not None:
        why = f"{path} is unreadable"
    else:
        why = (f"no {DATA_ROOTS_FILE} beside {res.root} (sweeps record their folders there; "
               "results from trainables.train or older sweeps do not)")
    raise UserError(f"the images of {res.root} cannot be found: {why}; pass --data with the data "
                    "folder the sweep was given (and --ood for OOD images)")


@dataclass(frozen=True)
class ChosenImage:
    path: Path
    rel_path: str
    label: str


def choose_images(res: Results, trial_id: str, classes: list[str], target_class: str, n: int,
                  seed: int, roots: ImageRoots) -> list[ChosenImage]:
    """`n` seeded-random test images of the trial: ceil(n/2) of `target_class`, the rest spread
    over the other classes (the study's Table I shows both). Each is checked against the
    manifest's content hash."""
    from trainables.data.images import file_hash

    preds = res.predictions([trial_id])
    test = preds[preds["split"] == "test"]
    if test[test["true_label"] == target_class].empty:
        raise UserError(f"trial {trial_id} has no test predictions of class {target_class!r} "
                        f"(classes: {', '.join(classes)}); pick another --target-class")
    others = [c for c in classes if c != target_class]
    counts = {target_class: (n + 1) // 2}
    for i in range(n - counts[target_class]):
        if others:
            cls = others[i % len(others)]
            counts[cls] = counts.get(cls, 0) + 1
    rng = np.random.default_rng(seed)
    by_path = {}
    if res.manifest is not None:
        by_path = {e.path: e for e in res.manifest.entries if e.split == "test"}
    out = []
    for cls, k in counts.items():
        rel = sorted(test.loc[test["true_label"] == cls, "path"].unique().tolist())
        if not rel:
            continue
        for i in sorted(rng.choice(len(rel), size=min(k, len(rel)), replace=False).tolist()):
            entry = by_path.get(rel[i])
            path = roots.resolve(entry.root if entry else "data", rel[i])
            if not path.is_file():
                raise DataError(f"test image {path} not found (images from {roots.origin}); pass "
                                "--data with the folder the sweep was given")
            if entry is not None and entry.sha256 and file_hash(path) != entry.sha256:
                raise DataError(f"{path} differs from the image the trial was tested on (content "
                                f"hash {entry.sha256} in {res.manifest_path}; images from "
                                f"{roots.origin}); pass --data with the original data folder")
            out.append(ChosenImage(path, rel[i], cls))
    return out


def prepare(path: Path, resize: int, crop: int, config: Any = None) -> tuple[np.ndarray, Any]:
    """(RGB float image (H, W, 3) in [0, 1], normalised input (1, 3, H, W)): the trial's test
    transform, Resize(resize) + CenterCrop(crop) (TrialConfig.eval_transform("test")), with the
    config's interpolation and mean/std when given (a derived model's may differ from the study's)."""
    from trainables.data.dataset import ClassificationPresetEval, Normalize
    from trainables.data.images import decode_pil

    interpolation = config.interpolation if config is not None else "bilinear"
    crop_u8 = ClassificationPresetEval(resize_size=resize, crop_size=crop,
                                       interpolation=interpolation)(decode_pil(path))
    rgb = crop_u8.permute(1, 2, 0).numpy().astype(np.float32) / 255.0
    norm = Normalize("cpu", config.mean, config.std) if config is not None else Normalize()
    return rgb, norm(crop_u8.unsqueeze(0))
