"""One trial of the study without Ray (`run_trial`, which the sweep's Ray trainable also
calls), and the single-trial CLI (`DESCRIPTION`, `EXAMPLES`)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

from trainables import presets
from trainables.archs import ARCHS, resolve, source_of
from trainables.config import TrialConfig, trial_id
from trainables.data.dataset import ImageSource, load_trial_data
from trainables.data.demo import prepare_data
from trainables.data.folders import layout_words
from trainables.data.manifest import Manifest, other_split, select_train
from trainables.device import (
    apply_determinism,
    check_precision,
    describe_device,
    peak_memory,
    release_memory,
    reset_peak_memory,
    select_device,
    set_memory_fraction,
)
from trainables.engine import EvalResult, FitFunction, FitState, confusion_matrix, per_class_recall
from trainables.errors import CommandParser, UserError
from trainables.linear_probe import grid_edge_note
from trainables.model_file import model_file_bytes
from trainables.presets import PRESETS, PresetMessage, deviations, get_preset, user_overrides
from trainables.provenance import code_version, hostname, library_versions, ray_node
from trainables.regimes import REGIMES, get_regime
from trainables.results import storage, tables

DESCRIPTION = """\
One trial of the study (one point of the sweep's grid), without Ray.

Writes the trial's rows to OUT/{epochs,trials,predictions}/<trial_id>.parquet (the same tables
the sweep writes, docs/results.md), the split manifest to OUT/manifest.json, and prints a
one-line summary. One OUT holds one experiment: a run on a different split is refused. Exit
status: 0 ok, 2 bad options or data (nothing trained), 130 interrupted."""
EXAMPLES = """\
examples:
  python -m trainables.train --arch mobilenet_v2 --regime finetune --seed 0 --out runs/one
  python -m trainables.train --arch resnet18 --regime scratch --set epochs=10 --out runs/one --dry-run
  python -m trainables.train --arch mobilenet_v2 --regime linear_probe --out runs/probe --keep-models best"""
MAX_SEED = 2**32 - 1
"""Seeds and split seeds above this overflow NumPy's and torch's seeding."""



def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _key(config: TrialConfig, tid: str) -> dict[str, Any]:
    return {"trial_id": tid, "arch": config.arch, "regime": config.regime, "seed": config.seed,
            "train_size": config.train_size}


def base_trial_row(config: TrialConfig, manifest: Manifest, tid: str) -> dict[str, Any]:
    changed = user_overrides(config, get_preset(config.preset)) if config.preset in PRESETS else {}
    return {**_key(config, tid), "preset": config.preset, "source": source_of(config.arch),
            "config_json": config.to_json(),
            "overrides_json": json.dumps(changed, sort_keys=True),
            "epochs": config.epochs, "classes_json": json.dumps(manifest.classes),
            "ood_kind": manifest.ood_kind, "split_manifest_hash": manifest.hash,
            "code_version": code_version(), "library_versions_json": library_versions(),
            "hostname": hostname(), "node": ray_node(), "schema_version": tables.SCHEMA_VERSION}


def failed_trial_row(config: TrialConfig, manifest: Manifest, tid: str, error: BaseException,
                     started_at: str, device: str | None) -> dict[str, Any]:
    """The row of a trial that raised; `device` is None when choosing the device failed."""
    text = "".join(traceback.format_exception_only(type(error), error)).strip()
    return {**base_trial_row(config, manifest, tid), "status": "failed", "error": text,
            "device": device, "started_at": started_at, "finished_at": _now()}


def _prediction_rows(key: dict[str, Any], split_name: str, paths: list[str], result: EvalResult,
                     classes: list[str]) -> list[dict[str, Any]]:
    rows = []
    preds = result.preds.tolist()
    for i, path in enumerate(paths):
        t, p = int(result.labels[i]), preds[i]
        rows.append({**key, "split": split_name, "path": path, "true_label": classes[t],
                     "pred_label": classes[p], "prob": float(result.probs[i, p]),
                     "true_prob": float(result.probs[i, t]), "correct": t == p})
    return rows


def run_trial(config: TrialConfig, manifest: Manifest, source: ImageSource, out: str,
              state: FitState | None = None,
              on_epoch: Callable[[dict[str, Any], FitState], None] | None = None,
              keep_model: bool = False, gpu_ids: list[str] | None = None,
              gpu_share: float | None = None) -> dict[str, Any]:
    """Train, keep the best epoch on validation, evaluate it on test and OOD, write all three
    tables. `source` serves the manifest's images (`DataRoots` for folders on this machine).
    `gpu_ids`/`gpu_share`: what Ray gave the trial (None outside Ray: CUDA if it works here).

    Returns the `trials` row. On an exception, a failed row is written and the error re-raised
    (so Ray can retry; a later success replaces the failed row)."""
    tid = trial_id(config, manifest.hash)
    started_at = _now()
    t0 = time.perf_counter()
    device_label = None
    device = None
    try:
        device = select_device(gpu_ids)
        device_label = describe_device(device, gpu_ids)
        check_precision(device, config.bf16)
        apply_determinism(config.deterministic, config.tf32, config.cudnn_benchmark)
        set_memory_fraction(device, gpu_share)
        reset_peak_memory(device)
        subset_seed = config.subset_seed(manifest.split_seed)
        data = load_trial_data(manifest, source, config.train_size, subset_seed)
        fit: FitFunction = get_regime(config.regime).fit_function()
        fitted = fit(config, data, device, state, on_epoch)
        state = fitted.state
        key = _key(config, tid)
        test = fitted.evaluate(data.test, "test")
        test_cm = confusion_matrix(test.labels, test.preds, len(data.classes))
        predictions = _prediction_rows(key, "test", data.test.paths, test, data.classes)
        ood_acc = ood_cm = ood_recall = ood_one_class = None
        if data.ood is not None:
            ood = fitted.evaluate(data.ood, "ood")
            ood_acc = ood.acc
            ood_cm = confusion_matrix(ood.labels, ood.preds, len(data.classes))
            ood_recall = per_class_recall(ood_cm, data.classes)
            predictions += _prediction_rows(key, "ood", data.ood.paths, ood, data.classes)
            ood_one_class = tables.one_class_label(ood.preds.tolist(), data.classes)
        model_path = None
        if keep_model and fitted.weights is not None:
            model_path = save_model(out, tid, config, data.classes, fitted.weights)
        counts = torch.bincount(data.train.labels, minlength=len(data.classes))
        peak = peak_memory(device)
        trial = {
            **base_trial_row(config, manifest, tid), "status": "ok", "error": None,
            "best_epoch": state.best_epoch, "best_val_acc": state.best_acc,
            "best_val_loss": state.best_loss, "test_acc": test.acc, "ood_acc": ood_acc,
            "test_recall_json": json.dumps(per_class_recall(test_cm, data.classes)),
            "ood_recall_json": json.dumps(ood_recall) if ood_recall else None,
            "test_confusion_json": json.dumps(test_cm),
            "ood_confusion_json": json.dumps(ood_cm) if ood_cm else None,
            "one_class_test": tables.one_class_label(test.preds.tolist(), data.classes),
            "one_class_ood": ood_one_class,
            "train_images": len(data.train), "train_images_per_class": float(counts.float().mean()),
            "train_subset_seed": subset_seed,
            "trainable_params": fitted.trainable_params, "total_params": fitted.total_params,
            "train_seconds": state.train_seconds, "total_seconds": time.perf_counter() - t0,
            **peak, "peak_memory_mb": peak["peak_allocated_mb"],
            "resumed_from_epoch": state.resumed_from_epoch, "model_path": model_path,
            "device": device_label, "started_at": started_at, "finished_at": _now(),
            **fitted.row,
        }
        epochs = [{**key, **row} for row in state.rows]
        tables.write_trial(out, tid, epochs, trial, predictions)
        return trial
    except BaseException as exc:
        if not isinstance(exc, KeyboardInterrupt):
            row = failed_trial_row(config, manifest, tid, exc, started_at, device_label)
            tables.write_table_atomic(out, "trials", tid, [row])
        raise
    finally:
        if device is not None:
            release_memory(device)


def save_model(out: str, tid: str, config: TrialConfig, classes: list[str],
               state_dict: dict[str, torch.Tensor]) -> str:
    """The kept model (with what is needed to rebuild it) at OUT/models/: trainables/model_file.py."""
    final = storage.join(out, "models", f"{tid}.pt")
    storage.write_bytes_atomic(final, model_file_bytes(tid, config, classes, state_dict))
    return final if "://" in out else os.path.relpath(final, os.path.abspath(out))


def parse_caps(items: list[str] | None) -> dict[str, int]:
    caps = {}
    for item in items or []:
        name, sep, value = item.rpartition("=")
        if not sep or not value.isdigit() or int(value) < 1:
            raise UserError(f"--cap {item!r}: use CLASS=N with N a positive whole number")
        caps[name] = int(value)
    return caps


def check_same_experiment(out: str, manifest: Manifest) -> None:
    """One OUT, one split: refuse to pool trials of different data into one results folder."""
    old = other_split(storage.join(out, "manifest.json"), out, manifest.hash,
                      "delete it if the folder holds no results you need (a run writes it "
                      "again), or pick a new --out")
    if old is not None:
        raise UserError(f"--out {out} holds trials of a different split (manifest {old}, now "
                        f"{manifest.hash}): the data, --ood, --cap or --split-seed changed. "
                        "Fix: pick a new --out")


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="python -m trainables.train", description=DESCRIPTION, epilog=EXAMPLES,
                      settings=presets.FIELD_TYPES, renames={"model": "--arch"},
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--data", default=None, help="pool folder (DATA/<class>/...) or pre-split "
                   "folder (DATA/{train,val,test}/<class>/...; train/ + val/ alone: each class's val/ "
                   "split half validation, half test by --split-seed); default: the embedded "
                   "demo set")
    g.add_argument("--ood", default=None, help="OOD folder with the same class subfolders")
    g.add_argument("--split-seed", type=int, default=0, help="seed of the 60/20/20 split")
    g.add_argument("--cap", action="append", metavar="CLASS=N",
                   help="keep at most N images of CLASS in the pool (repeatable)")
    g.add_argument("--skip-bad-images", action="store_true",
                   help="skip unreadable files (recorded in the manifest) instead of failing")
    g.add_argument("--allow-duplicates", action="store_true",
                   help="run although byte-identical images are in train and in val/test/OOD "
                        "(they are recorded in the manifest); refused by default")
    g = p.add_argument_group("trial (one point of the sweep's grid)")
    g.add_argument("--arch", required=True,
                   help=f"the study's {', '.join(ARCHS)}; any torchvision classifier "
                        "(convnext_tiny); any timm model as timm/NAME (needs feature-reuse[timm])")
    g.add_argument("--regime", required=True, help=f"one of: {', '.join(REGIMES)}")
    g.add_argument("--seed", type=int, default=0, help="trial seed (default 0)")
    g.add_argument("--train-size", "--train-sizes", default="all", dest="train_size",
                   help="images per class (e.g. 20), a fraction (e.g. 0.5) or 'all' (default)")
    g.add_argument("--preset", default="demo", help=f"one of: {', '.join(PRESETS)} "
                   "(default demo, as in the sweep; paper: the study's protocol)")
    presets.add_arguments(p.add_argument_group("training"))
    g = p.add_argument_group("resources")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    g = p.add_argument_group("output")
    g.add_argument("--out", help="results folder or URI (e.g. s3://bucket/run); needed unless "
                   "--dry-run")
    g.add_argument("--keep-models", default="none", choices=("none", "best", "all"),
                   help="save the trial's kept model (the best epoch's weights; the linear "
                        "probe's backbone and regression) for predict and export: best or all "
                        "(one trial: the same), or none (default)")
    g.add_argument("--keep-model", action="store_const", const="all", dest="keep_models",
                   help="the same as --keep-models all")
    g.add_argument("--dry-run", action="store_true",
                   help="print the trial's full config and differences from the study; train nothing")
    return p


def prepare(args: argparse.Namespace) -> tuple[TrialConfig, Any, Manifest, PresetMessage]:
    """Options and data checked, nothing written: (config, image source, manifest, message)."""
    if args.seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {args.seed}")
    presets.whole("--seed", args.seed, 0, MAX_SEED)
    presets.whole("--split-seed", args.split_seed, 0, MAX_SEED)
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    if args.threads is not None:
        presets.whole("--threads", args.threads, 1, 4 * presets.cpu_count())
    if args.out is None and not args.dry_run:
        raise UserError("--out is required: the results folder (or URI) of this trial, e.g. "
                        "--out runs/one; --dry-run needs none")
    for flag, value in (("--data", args.data), ("--ood", args.ood), ("--out", args.out)):
        presets.path_option(flag, value)
    preset = get_preset(args.preset)
    config = preset.trial(args.arch, args.regime, args.seed, args.train_size,
                          **presets.collect(args.config_file, args.set_values))
    roots, manifest = prepare_data(args.data, args.ood, args.split_seed, parse_caps(args.cap),
                                   args.skip_bad_images, args.allow_duplicates)
    select_train(manifest.split_entries("train"), manifest.classes, config.train_size,
                 manifest.split_seed, manifest.set_aside())  # a too-large --train-size fails before training
    if config.select_class is not None and config.select_class not in manifest.classes:
        raise UserError(f"select_on {config.select_on}: no class {config.select_class!r}; "
                        f"classes are {', '.join(manifest.classes)}")
    data = "the embedded ants-vs-bees photos" if args.data is None else f"--data {args.data}"
    message = PresetMessage(preset, user_overrides(config, preset),
                            deviations([config], data=data, ood_kind=manifest.ood_kind, seeds=1,
                                       train_sizes=(config.train_size,)),
                            runs=presets.run_words([config], data),
                            notes=presets.schedule_notes([config]))
    return config, roots, manifest, message


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config, source, manifest, message = prepare(args)
        for warning in manifest.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        made = layout_words(manifest.layout, manifest.split_seed)
        for line in message.lines() + ([f"split: {made}"] if made else []):
            print(line)
        if args.dry_run:
            print(json.dumps(config.to_dict(), indent=1, sort_keys=True))
            return 0
        if args.threads:
            torch.set_num_threads(args.threads)
        storage.check_storage("--out", args.out)
        check_same_experiment(args.out, manifest)
        if config.pretrained:
            from trainables.weights import ensure_available

            ensure_available(resolve(config.arch, config.weights))
        manifest.save(storage.join(args.out, "manifest.json"))
        row = run_trial(config, manifest, source, args.out, keep_model=args.keep_models != "none")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: nothing of this trial was saved; run the same command again",
              file=sys.stderr)
        return 130
    except OSError as exc:  # a full or failing disk while training or writing
        print(f"error: {storage.os_error_message(exc, args.out)}", file=sys.stderr)
        return 1
    ood = "n/a" if row["ood_acc"] is None else f"{row['ood_acc']:.3f}"
    kept = (f"epoch {row['best_epoch']}/{config.epochs}" if row.get("probe_c") is None else
            f"C={row['probe_c']:g} of {len(config.probe_c_grid)} tried")
    print(f"{config.arch} {config.regime} seed={config.seed} train_size={config.train_size}: "
          f"best val {row['best_val_acc']:.3f} ({kept}) "
          f"test {row['test_acc']:.3f} OOD {ood} [{manifest.ood_kind}] "
          f"trainable {row['trainable_params']:,} params, {row['total_seconds']:.0f}s "
          f"-> {args.out} (trial {row['trial_id']})")
    note = grid_edge_note(row["probe_c"], config.probe_c_grid) if row.get("probe_c") else None
    if note:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
