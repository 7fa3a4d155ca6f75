"""Grad-CAM as the study's Table I: where the ImageNet model and the transfer-trained model look.

    python -m analysis.gradcam --results runs/demo/results            # best fine-tuned model
    python -m analysis.gradcam --results runs/demo/results --arch vgg11_bn --layer features.11
    python -m analysis.gradcam --results runs/demo/results --trial 0b8fcb594117a265 --scratch

Columns: the test image (the trial's test transform); the unmodified ImageNet-pretrained model's map
for its own top-1 ImageNet class; the kept transfer model's map for the image's true class; with
--scratch, the kept from-scratch model of the same architecture and train size. Rows: N
seeded-random test images, half of the target class (default: the first class) and half of the
other classes. One colour bar: each map is scaled to [0, 1] within its image.

The default model is the best kept fine-tuned model (chosen on validation accuracy, full train
size), as in the study; --arch picks the architecture (default: the one whose best fine-tuned
model is best on validation), --regime another regime, --trial one trial. The target layer is
the architecture's default (docs/report.md lists each, and the study's VGG11 layer), or --layer.

Models must have been kept by the sweep (trials.model_path). Images are found as
analysis.image_roots says: --data/--ood, else the folders the sweep recorded, else the
embedded demo set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from analysis.cam import METHODS, heatmap, reshape_for, target_layer
from analysis.image_roots import ImageRoots, choose_images, find_roots, prepare
from analysis.load import Results, default_out_dir, load_results
from analysis.table_one import CamRow, TableOne, save
from trainables.archs import arch_slug
from trainables.errors import UserError
from trainables.regimes import FINETUNE, SCRATCH, TRANSFER_REGIMES, regime_label

KEEP_HINT = ("rerun with models kept (python -m sweep.run ... --keep-models best, the default; or "
             "python -m trainables.train ... --keep-model)")


# ------------------------------------------------------------------------------ kept models
def load_kept_model(results_root: str, model_path: str) -> tuple[nn.Module, Any, list[str]]:
    """(model in eval mode, TrialConfig, classes) from a trial's model_path (relative to the
    results root, or a URI): trainables/model_file.py. The regime's requires_grad flags are as
    in training."""
    from trainables.model_file import locate, read_model_file

    kept = read_model_file(locate(results_root, model_path))
    return kept.model, kept.config, kept.classes


# ------------------------------------------------------------------------------ which models
def _best(df: pd.DataFrame) -> pd.Series:
    from analysis.aggregate import rank

    return rank(df).iloc[0]


def _kept(res: Results, arch: str | None = None) -> pd.DataFrame:
    t = res.trials[res.trials["model_path"].notna()]
    return t if arch is None else t[t["arch"] == arch]


def pick_trial(res: Results, trial: str | None = None, arch: str | None = None,
               regime: str | None = None) -> pd.Series:
    """--trial ID; else the best kept trial (on validation, full train size when kept there) of
    --regime (default finetune) and --arch (default: the architecture whose best such trial is
    best on validation)."""
    t = res.trials
    if trial is not None:
        rows = t[t["trial_id"] == trial]
        if rows.empty:
            known = ", ".join(t["trial_id"].head(5))
            raise UserError(f"--trial {trial}: no finished trial with that id in {res.root} "
                            f"(e.g. {known})")
        row = rows.iloc[0]
        if pd.isna(row["model_path"]):
            raise UserError(f"trial {trial} kept no model; {KEEP_HINT}")
        return row
    regime = regime or FINETUNE
    pool = t[(t["regime"] == regime) & ((t["arch"] == arch) if arch else True)]
    what = f"{arch} {regime}" if arch else regime
    if pool.empty:
        have = ", ".join(sorted(set(t["arch"] + "/" + t["regime"])))
        raise UserError(f"no finished {what} trial in {res.root} (have: {have})")
    kept = pool[pool["model_path"].notna()]
    if kept.empty:
        raise UserError(f"no {what} trial in {res.root} kept its model; {KEEP_HINT}")
    full = kept[kept["train_size"] == res.full_size]
    return _best(full if not full.empty else kept)


def matching_scratch(res: Results, row: pd.Series) -> pd.Series | None:
    """The best kept scratch model of the same architecture and train size, or None."""
    kept = _kept(res, row["arch"])
    kept = kept[(kept["regime"] == SCRATCH) & (kept["train_size"] == row["train_size"])]
    return None if kept.empty else _best(kept)


def report_models(res: Results) -> list[tuple[pd.Series, str]]:
    """For the report, per architecture: (model, why this one). The best kept fine-tuned model
    at the full train size, as in the study; without one, the best kept transfer model."""
    out = []
    full = _kept(res)
    full = full[full["train_size"] == res.full_size]
    from analysis.load import arch_order

    for arch in arch_order(full["arch"].unique().tolist()):
        sub = full[full["arch"] == arch]
        ft = sub[sub["regime"] == FINETUNE]
        if not ft.empty:
            out.append((_best(ft), "the best fine-tuned model (chosen on validation), as in the study"))
            continue
        transfer = sub[sub["regime"].isin(TRANSFER_REGIMES)]
        if not transfer.empty:
            out.append((_best(transfer), "no fine-tuned model was kept; the best kept transfer model"))
    return out


# ------------------------------------------------------------------------------ the table
def compute(res: Results, row: pd.Series, roots: ImageRoots, n: int = 4, seed: int = 0,
            layer: str | None = None, target_class: str | None = None, method: str = "gradcam",
            scratch: pd.Series | None = None) -> TableOne:
    """The heatmaps of Table I for one kept transfer model (and optionally a scratch model)."""
    from trainables.archs import resolve
    from trainables.models import imagenet_categories, imagenet_model

    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    model, config, classes = load_kept_model(res.root, row["model_path"])
    target_class = target_class or classes[0]
    if target_class not in classes:
        raise UserError(f"--target-class {target_class!r} is not one of {', '.join(classes)}")
    arch = resolve(config.arch, config.weights)
    resize, crop = config.eval_transform("test")  # the transform the trial was tested with
    reference = imagenet_model(arch, crop=crop).eval()
    categories = imagenet_categories(arch)
    layer_t, name = target_layer(model, config.arch, layer)
    layer_r, _ = target_layer(reference, config.arch, layer)
    reshape = reshape_for(config.arch, model, layer)
    models: list[tuple[nn.Module, nn.Module]] = [(model, layer_t)]
    columns = ["Image", "ImageNet model\n(map for its top-1 ImageNet class)",
               f"{regime_label(config.regime)} model\n(map for the true class)"]
    if scratch is not None:
        s_model, s_config, s_classes = load_kept_model(res.root, scratch["model_path"])
        if s_classes != classes:
            raise UserError(f"scratch trial {scratch['trial_id']} has classes {s_classes}, the "
                            f"transfer trial {classes}")
        models.append((s_model, target_layer(s_model, s_config.arch, layer)[0]))
        columns.append("From-scratch model\n(map for the true class)")
    rows = []
    for image in choose_images(res, row["trial_id"], classes, target_class, n, seed, roots):
        rgb, x = prepare(image.path, resize, crop, config)
        true_idx = classes.index(image.label)
        with torch.no_grad():
            ref_probs = torch.softmax(reference(x), dim=1)[0]
        top = int(ref_probs.argmax())
        cams = [heatmap(reference, layer_r, x, top, method, reshape)]
        notes = [f"top-1: {categories[top]} (p={float(ref_probs[top]):.2f})"]
        for m, lay in models:
            with torch.no_grad():
                probs = torch.softmax(m(x), dim=1)[0]
            cams.append(heatmap(m, lay, x, true_idx, method, reshape))
            notes.append(f"predicts {classes[int(probs.argmax())]}, p({image.label})="
                         f"{float(probs[true_idx]):.2f}")
        rows.append(CamRow(image, rgb, cams, notes))
    info = {"arch": config.arch, "regime": config.regime, "seed": config.seed,
            "trial_id": row["trial_id"], "train_size": row["train_size"], "layer": name,
            "layer_default": layer is None, "target_class": target_class, "classes": classes,
            "method": method, "resize": resize, "crop": crop, "images_from": roots.origin,
            "scratch_trial": None if scratch is None else scratch["trial_id"],
            "scratch_seed": None if scratch is None else int(scratch["seed"])}
    return TableOne(config.arch, columns, rows, info)


def default_out(res: Results, info: dict[str, Any]) -> Path:
    name = f"gradcam_{arch_slug(info['arch'])}_{info['regime']}_{info['trial_id']}.png"
    return Path(default_out_dir(res.root)) / name


def run(res: Results, trial: str | None = None, arch: str | None = None, regime: str | None = None,
        n: int = 4, seed: int = 0, layer: str | None = None, target_class: str | None = None,
        method: str = "gradcam", out: str | Path | None = None, data: str | None = None,
        ood: str | None = None, with_scratch: bool = False) -> tuple[Path, dict[str, Any]]:
    """Draw and save one Table I figure; returns (path, info)."""
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    row = pick_trial(res, trial, arch, regime)
    scratch = None
    if with_scratch:
        scratch = matching_scratch(res, row)
        if scratch is None:
            raise UserError(f"--scratch: no kept {row['arch']} scratch model at train size "
                            f"{row['train_size']} in {res.root}; {KEEP_HINT}")
    roots = find_roots(res, data, ood)
    table = compute(res, row, roots, n, seed, layer, target_class, method, scratch)
    path = save(table, Path(out) if out else default_out(res, table.info))
    return path, table.info


def build_parser() -> argparse.ArgumentParser:
    from analysis.load import DEFAULT_RESULTS

    p = argparse.ArgumentParser(prog="python -m analysis.gradcam", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=DEFAULT_RESULTS,
                   help=f"results folder or URI (default {DEFAULT_RESULTS})")
    p.add_argument("--trial", default=None, help="trial id (trials.trial_id) with a kept model")
    p.add_argument("--arch", default=None, help="architecture (default: the one whose best model of "
                   "--regime is best on validation)")
    p.add_argument("--regime", default=None, help="regime of the model (default finetune)")
    p.add_argument("--scratch", action="store_true",
                   help="add a column for the kept from-scratch model (same arch and train size)")
    p.add_argument("--n", type=int, default=4, help="number of test images, half of them of "
                   "--target-class (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image draw (default 0)")
    p.add_argument("--layer", "--gradcam-layer", dest="layer", default=None,
                   help="target layer as a dotted path (default: the architecture's, e.g. "
                   "features.18 for mobilenet_v2, layer4 for ResNets; docs/report.md lists them)")
    p.add_argument("--target-class", default=None, help="the target class (default: the first)")
    p.add_argument("--method", default="gradcam", choices=METHODS, help="CAM method (default gradcam)")
    p.add_argument("--data", default=None, help="the data folder the sweep was given (default: the "
                   "folder the sweep recorded, or the embedded demo set)")
    p.add_argument("--ood", default=None, help="the OOD folder the sweep was given")
    p.add_argument("--out", default=None, help="output PNG (default <results>/../report/"
                   "gradcam_<arch>_<regime>_<trial>.png)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        res = load_results(args.results)
        path, info = run(res, args.trial, args.arch, args.regime, args.n, args.seed, args.layer,
                         args.target_class, args.method, args.out, args.data, args.ood, args.scratch)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Grad-CAM of {info['arch']} {info['regime']} seed {info['seed']} (trial {info['trial_id']}), "
          f"layer {info['layer']}, target class {info['target_class']}, images from "
          f"{info['images_from']} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
