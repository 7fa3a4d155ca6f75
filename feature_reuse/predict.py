"""Classify images with a kept model: one CSV row per image.

    feature-reuse predict --experiment runs/demo photos/
    feature-reuse predict --experiment runs/demo --model 0b8fcb594117a265 a.jpg b.png --out preds.csv
    feature-reuse predict --model runs/demo/results/models/0b8fcb594117a265.pt photos/

--model: `best` (default: the experiment's best kept model, the report's rule, docs/predict.md),
a trial id (or a unique prefix), or a model file. Images: files (used whatever their extension)
and folders (their images, recursively). Each image gets the kept model's own test transform.
Output: CSV with `path,class,prob_<class>...` (probabilities in the model's class order), to
stdout unless --out FILE; what ran, and the accuracy over images in folders named after a class,
go to stderr. A file that is not an image stops the run before anything is written (exit 2,
every such file named), unless --skip-bad-images skips it with a warning.
Exit status: 0 ok, 2 bad options or input (nothing written), 1 a failing disk.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from feature_reuse.inference import ImageList, Predictor, list_images, not_an_image
from trainables import presets as options
from trainables.data.scan import shown
from trainables.errors import UserError
from trainables.model_file import BEST, choose, read_model_file
from trainables.results import storage

MAX_NAMED = 10
"""Bad files named in one message at most (the rest counted)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="feature-reuse predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGES_OR_FOLDER", help="image files or folders")
    p.add_argument("--experiment", default=None,
                   help="the sweep's folder (<storage>/<name>, e.g. runs/demo) or a results folder")
    p.add_argument("--model", default=BEST, help="best (default), a trial id, or a model file (.pt)")
    p.add_argument("--out", default=None, help="CSV file to write (default: stdout)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="skip files that are not images (each named in a warning) instead of failing")
    return p


def _bad_files_message(bad: list[tuple[Path, str]]) -> str:
    listed = "; ".join(f"{shown(p)}: {why}" for p, why in bad[:MAX_NAMED])
    more = f" (and {len(bad) - MAX_NAMED} more)" if len(bad) > MAX_NAMED else ""
    return f"{len(bad)} file(s) are not images: {listed}{more}"


def _folder_accuracy(paths: list[Path], predicted: list[str], classes: list[str]) -> str | None:
    """Accuracy over the images whose parent folder is named after a class (val/ants/x.jpg)."""
    pairs = [(p.parent.name, c) for p, c in zip(paths, predicted, strict=True)
             if p.parent.name in classes]
    if not pairs:
        return None
    right = sum(folder == c for folder, c in pairs)
    return (f"{len(pairs)} image(s) lie in folders named after a class: accuracy "
            f"{right / len(pairs):.3f} ({right}/{len(pairs)})")


def run(args: argparse.Namespace) -> int:
    options.whole("--batch-size", args.batch_size, 1)
    if args.out is not None:
        options.path_option("--out", args.out)
        storage.check_output_file("--out", args.out)
    images: ImageList = list_images(args.images)
    for note in images.notes:
        print(f"note: {note}", file=sys.stderr)
    bad = [(p, why) for p in images.paths if (why := not_an_image(p)) is not None]
    if bad and not args.skip_bad_images:
        raise UserError(f"{_bad_files_message(bad)}. Fix: remove them, or pass --skip-bad-images")
    paths = [p for p in images.paths if p not in {b for b, _ in bad}]
    if not paths:
        raise UserError("none of the files given is an image")
    choice = choose(args.experiment, args.model)
    predictor = Predictor(read_model_file(choice.path))
    if predictor.kept.note:
        print(f"note: {predictor.kept.note}", file=sys.stderr)
    rows, predicted, done = [], [], []
    for batch in predictor.batches(paths, args.batch_size):
        bad += batch.failed
        for path, probs in zip(batch.paths, batch.probs.tolist(), strict=True):
            cls = predictor.classes[max(range(len(probs)), key=probs.__getitem__)]
            rows.append([str(path), cls, *(format(p, ".6g") for p in probs)])
            predicted.append(cls)
            done.append(path)
    if bad and not args.skip_bad_images:  # found only when decoding (e.g. a truncated file)
        raise UserError(f"{_bad_files_message(bad)}; nothing written. Fix: remove them, or "
                        "pass --skip-bad-images")
    for path, why in bad:
        print(f"warning: skipped {shown(path)}: {why}", file=sys.stderr)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["path", "class", *(f"prob_{c}" for c in predictor.classes)])
    writer.writerows(rows)
    kept = predictor.kept
    tid = kept.trial_id or (choice.row or {}).get("trial_id")
    print(f"{len(rows)} image(s) classified by {kept.config.arch} {kept.config.regime} "
          f"(trial {tid}, {choice.path}) on {predictor.device.type}"
          + (f" -> {args.out}" if args.out else ""), file=sys.stderr)
    accuracy = _folder_accuracy(done, predicted, predictor.classes)
    if accuracy:
        print(accuracy, file=sys.stderr)
    if args.out is None:
        sys.stdout.write(text.getvalue())
    else:
        storage.write_text_atomic(args.out, text.getvalue())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {storage.os_error_message(exc, args.out or 'stdout')}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
