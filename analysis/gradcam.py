"""Grad-CAM (the study's Table I): where the ImageNet model and the transfer-trained model look.

    python -m analysis.gradcam --results runs/demo/results --arch mobilenet_v2 --regime finetune
    python -m analysis.gradcam --results runs/demo/results --trial 0b8fcb594117a265 --n 6

For N seeded-random test images of the target class (default: the first class) it draws three
columns: the image; the heatmap of the unmodified ImageNet-pretrained model for its own top-1
ImageNet class; the heatmap of the trial's kept model for the true class. The default target
layer is the architecture's (trainables.registry.ARCHS[arch].gradcam_layer); --layer takes a
dotted path such as ``features.10`` or ``layer4``.

Models must have been kept by the sweep (trials.model_path). Feature-extraction models have a
frozen backbone (requires_grad False), so no gradient would reach the target layer: the CAM
pass switches gradients on for every parameter and restores the flags afterwards.

Long because it holds the CAM computation, the choice of images and the figure together (the
report rework splits them).

Image paths come from the split manifest beside the results; the embedded demo set is found by
itself, a user's folder is given again with --data (checked against the manifest's hashes).
"""

from __future__ import annotations

import argparse
import io
import posixpath
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from analysis.load import TRANSFER_REGIMES, Results, default_out_dir, load_results
from trainables.errors import DataError, UserError
from trainables.registry import arch_slug

METHODS = ("gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam")


def cam_class(method: str) -> type:
    import pytorch_grad_cam as pgc

    table = {"gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus, "xgradcam": pgc.XGradCAM,
             "hirescam": pgc.HiResCAM, "layercam": pgc.LayerCAM, "eigencam": pgc.EigenCAM}
    try:
        return table[method]
    except KeyError:
        raise UserError(f"--method {method!r} is unknown; choose from {', '.join(METHODS)}") from None


# ------------------------------------------------------------------------------ target layers
def resolve_layer(model: nn.Module, path: str) -> nn.Module:
    """A dotted module path, as `nn.Module.get_submodule` takes it: "features.10", "layer4",
    "Mixed_7c" (list the names with `model.named_modules()`)."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        parent, _, _ = path.rpartition(".")
        try:
            children = ", ".join(n for n, _ in model.get_submodule(parent).named_children())
        except AttributeError:
            children = ", ".join(n for n, _ in model.named_children())
        raise UserError(f"--layer {path!r}: no such module in {type(model).__name__} (children "
                        f"of {parent or 'the model'}: {children or 'none'})") from None


def default_layer(model: nn.Module, arch_name: str) -> nn.Module:
    from trainables.derived import resolve
    from trainables.models import gradcam_target

    return gradcam_target(model, resolve(arch_name))[0]


@contextmanager
def gradients_on(model: nn.Module) -> Iterator[nn.Module]:
    """Every parameter requires grad inside the block (a frozen backbone included); restored after."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(True)
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def heatmap(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: int,
            method: str = "gradcam", reshape=None) -> np.ndarray:
    """Class-activation map (H, W) in [0, 1] for one normalised input x of shape (1, 3, H, W).
    `reshape`: pytorch-grad-cam's reshape_transform (ViT tokens, NHWC maps), see
    trainables.models.gradcam_target."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model.eval()
    with gradients_on(model), cam_class(method)(model=model, target_layers=[layer],
                                                 reshape_transform=reshape) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(target))])
    model.zero_grad(set_to_none=True)
    return np.asarray(maps[0], dtype=np.float32)


# ------------------------------------------------------------------------------ kept models
def load_kept_model(results_root: str, model_path: str) -> tuple[nn.Module, Any, list[str]]:
    """(model in eval mode, TrialConfig, classes) from a trial's model_path (relative to the
    results root, or a URI). The regime's requires_grad flags are as in training."""
    from trainables.config import TrialConfig
    from trainables.models import build_model
    from trainables.storage import resolve

    if "://" in model_path:
        import pyarrow.fs as pafs

        fs, path = pafs.FileSystem.from_uri(model_path)
    else:
        fs, base = resolve(results_root)
        path = model_path if posixpath.isabs(model_path) else posixpath.join(base, model_path)
    try:
        with fs.open_input_stream(path) as f:
            blob = f.read()
    except (FileNotFoundError, OSError) as exc:
        raise UserError(f"kept model {path} cannot be read ({exc}); was the results folder moved "
                        "without its models/ folder?") from None
    ckpt = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    config = TrialConfig(**ckpt["config"])
    classes = list(ckpt["classes"])
    model = build_model(config, len(classes), pretrained=False)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), config, classes


# ------------------------------------------------------------------------------ images
def data_roots(res: Results, data: str | None = None, ood: str | None = None):
    """Where the manifest's relative paths live: --data/--ood if given, else the embedded set."""
    from trainables.manifest import DataRoots

    if data is not None:
        return DataRoots(str(Path(data).resolve()), str(Path(ood).resolve()) if ood else None)
    manifest = res.manifest
    if manifest is not None and manifest.layout == "embedded-demo":
        from trainables.embedded import locate

        return DataRoots(str(locate()))
    where = f"the manifest {res.manifest_path}" if manifest is not None else "no split manifest"
    raise UserError(f"the images of {res.root} are not the embedded demo set ({where}); pass "
                    "--data with the data folder the sweep was given (and --ood for OOD images)")


def choose_images(res: Results, trial_id: str, target_class: str, n: int, seed: int,
                data: str | None = None, ood: str | None = None) -> list[tuple[Path, str]]:
    """N seeded-random test images of `target_class` (path on disk, relative path)."""
    from trainables.images import file_hash
    from trainables.manifest import Entry

    preds = res.predictions([trial_id])
    rows = preds[(preds["split"] == "test") & (preds["true_label"] == target_class)]
    if rows.empty:
        raise UserError(f"trial {trial_id} has no test predictions of class {target_class!r} "
                        f"(classes: {', '.join(res.classes)}); pick another --target-class")
    rel = sorted(rows["path"].unique().tolist())
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(rel), size=min(n, len(rel)), replace=False).tolist())
    roots = data_roots(res, data, ood)
    by_path = {}
    if res.manifest is not None:
        by_path = {e.path: e for e in res.manifest.entries if e.split == "test"}
    out = []
    for i in chosen:
        entry = by_path.get(rel[i]) or Entry("data", rel[i], target_class, "test", "")
        path = roots.resolve(entry)
        if not path.is_file():
            raise DataError(f"test image {path} not found; pass --data with the folder the sweep "
                            "was given")
        if entry.sha256 and file_hash(path) != entry.sha256:
            raise DataError(f"{path} differs from the image the trial was tested on (content hash "
                            f"{entry.sha256} in {res.manifest_path}); pass --data with the original "
                            "data folder")
        out.append((path, rel[i]))
    return out


def prepare(path: Path, resize: int, crop: int, config=None) -> tuple[np.ndarray, torch.Tensor]:
    """(RGB float image (H, W, 3) in [0, 1], normalised input (1, 3, H, W)): the test transform
    (with the config's interpolation and mean/std when given; else the study's)."""
    from trainables.images import decode_pil
    from trainables.transforms import ClassificationPresetEval, Normalize, normalize

    interpolation = config.interpolation if config is not None else "bilinear"
    crop_u8 = ClassificationPresetEval(resize_size=resize, crop_size=crop,
                                       interpolation=interpolation)(decode_pil(path))
    rgb = crop_u8.permute(1, 2, 0).numpy().astype(np.float32) / 255.0
    norm = Normalize("cpu", config.mean, config.std) if config is not None else normalize
    return rgb, norm(crop_u8.unsqueeze(0))


# ------------------------------------------------------------------------------ the figure
@dataclass
class CamRow:
    rel_path: str
    image: np.ndarray
    imagenet_cam: np.ndarray
    imagenet_label: str
    imagenet_prob: float
    trained_cam: np.ndarray
    trained_pred: str
    true_prob: float


def pick_trial(res: Results, trial: str | None, arch: str | None, regime: str | None) -> pd.Series:
    """--trial ID, or the best kept trial (on validation) of --arch x --regime."""
    from analysis.aggregate import rank

    t = res.trials
    if trial is not None:
        rows = t[t["trial_id"] == trial]
        if rows.empty:
            known = ", ".join(t["trial_id"].head(5))
            raise UserError(f"--trial {trial}: no finished trial with that id in {res.root} "
                            f"(e.g. {known})")
        row = rows.iloc[0]
        if pd.isna(row["model_path"]):
            raise UserError(f"trial {trial} kept no model; rerun it with models kept "
                            "(python -m trainables.train ... --keep-model, or the sweep's keep-models "
                            "option)")
        return row
    if arch is None:
        raise UserError("pass --trial ID, or --arch (and --regime)")
    regime = regime or "finetune"
    pool = t[(t["arch"] == arch) & (t["regime"] == regime)]
    if pool.empty:
        have = ", ".join(sorted(set(t["arch"] + "/" + t["regime"])))
        raise UserError(f"no finished {arch} {regime} trial in {res.root} (have: {have})")
    kept = pool[pool["model_path"].notna()]
    if kept.empty:
        raise UserError(f"no {arch} {regime} trial in {res.root} kept its model; rerun with models "
                        "kept (python -m trainables.train ... --keep-model, or the sweep's keep-models "
                        "option)")
    full = kept[kept["train_size"] == res.full_size]
    return rank(full if not full.empty else kept).iloc[0]


def compute_rows(res: Results, row: pd.Series, n: int = 4, seed: int = 0, layer: str | None = None,
                 target_class: str | None = None, method: str = "gradcam", data: str | None = None,
                 ood: str | None = None) -> tuple[list[CamRow], dict[str, Any]]:
    """The heatmaps for the figure, plus a description of what was drawn."""
    from trainables.models import arch_of, gradcam_target, imagenet_categories, imagenet_model

    model, config, classes = load_kept_model(res.root, row["model_path"])
    target_class = target_class or classes[0]
    if target_class not in classes:
        raise UserError(f"--target-class {target_class!r} is not one of {', '.join(classes)}")
    arch = arch_of(config)
    resize, crop = config.eval_transform("test")
    reference = imagenet_model(arch, crop=crop).eval()
    categories = imagenet_categories(arch)
    if layer:  # a clear error for a wrong --layer first
        resolve_layer(model, layer)
        resolve_layer(reference, layer)
    layer_t, reshape = gradcam_target(model, arch, layer)
    layer_r, _ = gradcam_target(reference, arch, layer)
    target_idx = classes.index(target_class)
    rows = []
    for path, rel in choose_images(res, row["trial_id"], target_class, n, seed, data, ood):
        rgb, x = prepare(path, resize, crop, config)
        with torch.no_grad():
            ref_probs = torch.softmax(reference(x), dim=1)[0]
            probs = torch.softmax(model(x), dim=1)[0]
        top = int(ref_probs.argmax())
        rows.append(CamRow(
            rel_path=rel, image=rgb,
            imagenet_cam=heatmap(reference, layer_r, x, top, method, reshape),
            imagenet_label=categories[top], imagenet_prob=float(ref_probs[top]),
            trained_cam=heatmap(model, layer_t, x, target_idx, method, reshape),
            trained_pred=classes[int(probs.argmax())], true_prob=float(probs[target_idx])))
    info = {"arch": config.arch, "regime": config.regime, "seed": config.seed,
            "trial_id": row["trial_id"], "layer": layer or f"default ({_default_name(model, layer_t)})",
            "target_class": target_class, "method": method, "crop": crop}
    return rows, info


def _default_name(model: nn.Module, layer: nn.Module) -> str:
    for name, module in model.named_modules():
        if module is layer:
            return name
    return type(layer).__name__


def figure(rows: list[CamRow], info: dict[str, Any]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 3, figsize=(8.4, 2.75 * len(rows) + 0.7), squeeze=False,
                             layout="constrained")
    for r, (ax_img, ax_ref, ax_tr) in zip(rows, axes, strict=True):
        ax_img.imshow(r.image)
        ax_img.set_title(f"{Path(r.rel_path).name}\ntrue: {info['target_class']}", fontsize=8)
        for ax, cam in ((ax_ref, r.imagenet_cam), (ax_tr, r.trained_cam)):
            ax.imshow(r.image)
            ax.imshow(cam, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
        ax_ref.set_title(f"ImageNet model: {r.imagenet_label}\n(top-1, p={r.imagenet_prob:.2f})",
                         fontsize=8)
        ax_tr.set_title(f"{info['regime']} model → {r.trained_pred}\n"
                        f"p({info['target_class']})={r.true_prob:.2f}", fontsize=8)
        for ax in (ax_img, ax_ref, ax_tr):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"Grad-CAM ({info['method']}), {info['arch']} {info['regime']} seed {info['seed']} "
                 f"(trial {info['trial_id']}), layer {info['layer']}", fontsize=9)
    return fig


def default_out(res: Results, info: dict[str, Any]) -> Path:
    name = f"gradcam_{arch_slug(info['arch'])}_{info['regime']}_{info['trial_id']}.png"
    return Path(default_out_dir(res.root)) / name


def run(res: Results, trial: str | None = None, arch: str | None = None, regime: str | None = None,
        n: int = 4, seed: int = 0, layer: str | None = None, target_class: str | None = None,
        method: str = "gradcam", out: str | Path | None = None, data: str | None = None,
        ood: str | None = None) -> tuple[Path, dict[str, Any]]:
    """Draw and save one Grad-CAM figure; returns (path, info)."""
    import matplotlib.pyplot as plt

    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    row = pick_trial(res, trial, arch, regime)
    rows, info = compute_rows(res, row, n, seed, layer, target_class, method, data, ood)
    path = Path(out) if out else default_out(res, info)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = figure(rows, info)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path, info


def transfer_candidates(res: Results) -> list[pd.Series]:
    """For the report: per architecture, the best kept transfer-trained model (full train size)."""
    from analysis.aggregate import rank

    t = res.full
    kept = t[t["regime"].isin(TRANSFER_REGIMES) & t["model_path"].notna()]
    return [rank(g).iloc[0] for _, g in kept.groupby("arch", sort=False)]


def build_parser() -> argparse.ArgumentParser:
    from analysis.load import DEFAULT_RESULTS

    p = argparse.ArgumentParser(prog="python -m analysis.gradcam", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=DEFAULT_RESULTS,
                   help=f"results folder or URI (default {DEFAULT_RESULTS})")
    p.add_argument("--trial", default=None, help="trial id (trials.trial_id) with a kept model")
    p.add_argument("--arch", default=None, help="architecture: its best kept trial of --regime")
    p.add_argument("--regime", default=None, help="with --arch (default finetune)")
    p.add_argument("--n", type=int, default=4, help="number of test images (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image draw (default 0)")
    p.add_argument("--layer", default=None, help="target layer as a dotted path (default: the "
                   "architecture's, e.g. features.18 for mobilenet_v2, layer4 for ResNets)")
    p.add_argument("--target-class", default=None, help="class of the images (default: the first)")
    p.add_argument("--method", default="gradcam", choices=METHODS, help="CAM method (default gradcam)")
    p.add_argument("--data", default=None, help="the data folder the sweep was given (not needed "
                   "for the embedded demo set)")
    p.add_argument("--ood", default=None, help="the OOD folder the sweep was given")
    p.add_argument("--out", default=None, help="output PNG (default <results>/../report/"
                   "gradcam_<arch>_<regime>_<trial>.png)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        res = load_results(args.results)
        path, info = run(res, args.trial, args.arch, args.regime, args.n, args.seed, args.layer,
                         args.target_class, args.method, args.out, args.data, args.ood)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Grad-CAM of {info['arch']} {info['regime']} seed {info['seed']} (trial {info['trial_id']}), "
          f"layer {info['layer']}, class {info['target_class']} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
