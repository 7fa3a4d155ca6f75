"""feature-reuse predict on kept models (tests/integration/conftest.py's kept_experiment: a
fine-tuned and a linear-probe mobilenet_v2, smoke preset): the trial's own test transform
reproduces the probabilities the trial recorded, `best` is the project's rule among files that
exist, one CSV row per image, and every bad input ends in one `error:` line (exit 2) with nothing
written."""

from __future__ import annotations

import csv
import io
import shutil

import pytest
import torch

from feature_reuse.cli import main as cli_main
from feature_reuse.inference import Predictor
from feature_reuse.predict import main
from tests.conftest import write_image
from trainables.model_file import MODEL_FILE_FORMAT, UNKNOWN_VERSION, choose, read_model_file
from trainables.results import tables as results

TOL = {"finetune": 1e-6, "linear_probe": 1e-5}
"""The fine-tuned model is the same computation as the trial's test pass (same bits); the probe's
kept module keeps BatchNorm where the trial's features folded it into the convolutions."""


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("regime", ["finetune", "linear_probe"])
def test_the_kept_model_reproduces_the_trials_test_probabilities(kept_experiment, regime):
    row = kept_experiment.rows[regime]
    predictor = Predictor.load(str(kept_experiment.root / "results" / row["model_path"]))
    recorded = [r for r in results.read_table(str(kept_experiment.root / "results"),
                                              "predictions").to_pylist()
                if r["trial_id"] == row["trial_id"] and r["split"] == "test"]
    assert recorded
    probs = predictor.probs_of([kept_experiment.pool / r["path"] for r in recorded])
    for i, r in enumerate(recorded):
        assert predictor.classes[int(probs[i].argmax())] == r["pred_label"]
        assert abs(float(probs[i, predictor.classes.index(r["true_label"])]) - r["true_prob"]) < TOL[regime]


@pytest.mark.parametrize("regime", ["finetune", "linear_probe"])
def test_predict_crops_each_image_as_the_trials_test_split_did(kept_experiment, regime):
    """Pixel for pixel: the probabilities above saturate on these easy images, the crops do not."""
    from trainables.data.dataset import eval_crops, load_split
    from trainables.data.manifest import DataRoots, Manifest

    row = kept_experiment.rows[regime]
    predictor = Predictor.load(str(kept_experiment.root / "results" / row["model_path"]))
    manifest = Manifest.load(str(kept_experiment.root / "manifest.json"))
    split = load_split(manifest.split_entries("test"), manifest.classes, DataRoots(str(kept_experiment.pool)))
    want = eval_crops(split, "test", predictor.kept.config)
    got = torch.stack([predictor.transform(image) for image in split.images])
    assert got.dtype == torch.uint8 and torch.equal(got, want)


def test_predict_writes_one_row_per_image_with_the_best_kept_model(kept_experiment, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    code = cli_main(["predict", "--experiment", str(kept_experiment.root), str(kept_experiment.ood),
                     "--out", str(out), "--batch-size", "4"])
    err = capsys.readouterr().err
    assert code == 0, err
    rows = _csv(out.read_text())
    images = sorted(kept_experiment.ood.rglob("*.jpg"))
    assert [r["path"] for r in rows] == [str(p) for p in images]
    assert list(rows[0]) == ["path", "class", "prob_blue", "prob_red"]
    for r in rows:
        probs = {c: float(r[f"prob_{c}"]) for c in ("blue", "red")}
        assert abs(sum(probs.values()) - 1) < 1e-5 and r["class"] == max(probs, key=probs.get)
    best = min(kept_experiment.rows.values(), key=results.best_trial_key)
    assert f"trial {best['trial_id']}" in err
    right = sum(r["class"] == p.parent.name for r, p in zip(rows, images, strict=True))
    assert f"accuracy {right / len(images):.3f} ({right}/{len(images)})" in err


def test_predict_prints_csv_to_stdout_and_takes_a_trial_id_or_a_file(kept_experiment, capsys):
    probe = kept_experiment.rows["linear_probe"]
    image = next(kept_experiment.ood.rglob("*.jpg"))
    assert main(["--experiment", str(kept_experiment.root), "--model", probe["trial_id"][:8],
                 str(image)]) == 0
    by_id = capsys.readouterr()
    assert f"trial {probe['trial_id']}" in by_id.err
    model_file = kept_experiment.root / "results" / probe["model_path"]
    assert main(["--model", str(model_file), str(image)]) == 0
    assert capsys.readouterr().out == by_id.out and len(_csv(by_id.out)) == 1


def test_best_skips_trials_whose_model_file_is_gone(kept_experiment, tmp_path):
    copy = tmp_path / "exp"
    shutil.copytree(kept_experiment.root, copy)
    rows = sorted(kept_experiment.rows.values(), key=results.best_trial_key)
    assert choose(str(copy)).row["trial_id"] == rows[0]["trial_id"]
    (copy / "results" / rows[0]["model_path"]).unlink()
    assert choose(str(copy)).row["trial_id"] == rows[1]["trial_id"]
    assert choose(str(copy / "results")).row["trial_id"] == rows[1]["trial_id"]  # a results folder


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    return captured.err


def test_a_non_image_fails_naming_it_unless_skipped(kept_experiment, tmp_path, capsys):
    folder = tmp_path / "photos"
    write_image(folder / "red" / "a.jpg", (200, 40, 40))
    (folder / "red" / "notes.jpg").write_text("not a picture")
    (folder / "README.txt").write_text("ignored: not an image by its extension")
    out = tmp_path / "preds.csv"
    args = ["--experiment", str(kept_experiment.root), str(folder), "--out", str(out)]
    err = _error(capsys, args)
    assert err.startswith("error: 1 file(s) are not images: ") and "notes.jpg" in err
    assert "--skip-bad-images" in err and not out.exists()
    assert main([*args, "--skip-bad-images"]) == 0
    assert "warning: skipped" in capsys.readouterr().err
    assert [r["path"] for r in _csv(out.read_text())] == [str(folder / "red" / "a.jpg")]


def test_a_file_that_fails_to_decode_writes_nothing(kept_experiment, tmp_path, capsys):
    good = write_image(tmp_path / "good.png", (40, 40, 200), size=(200, 160))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:300])  # a valid header, then nothing
    out = tmp_path / "preds.csv"
    err = _error(capsys, ["--experiment", str(kept_experiment.root), str(good), str(truncated),
                          "--out", str(out)])
    assert "truncated.png: cannot be decoded" in err and "nothing written" in err
    assert not out.exists()


def test_bad_inputs_name_the_problem(kept_experiment, tmp_path, capsys):
    image = str(next(kept_experiment.ood.rglob("*.jpg")))
    (tmp_path / "empty").mkdir()
    err = _error(capsys, ["--experiment", str(kept_experiment.root), str(tmp_path / "empty")])
    assert "no images in this folder" in err
    err = _error(capsys, ["--experiment", str(tmp_path / "nope"), image])
    assert f"--experiment {tmp_path / 'nope'}: no such folder" in err
    err = _error(capsys, ["--experiment", str(tmp_path), image])
    assert "no finished trials here" in err
    err = _error(capsys, ["--experiment", str(kept_experiment.root), "--model", "ffff0000", image])
    assert "--model ffff0000 is not a trial id there" in err
    err = _error(capsys, ["--experiment", str(kept_experiment.root), str(tmp_path / "missing.jpg")])
    assert "missing.jpg: no such file or folder" in err


def _rewrite(source, dest, **changes):
    ckpt = torch.load(source, map_location="cpu", weights_only=True)
    ckpt.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del ckpt[key]
    torch.save(ckpt, dest)
    return dest


def test_a_model_file_of_another_code_version_names_both(kept_experiment, tmp_path, capsys):
    source = kept_experiment.root / "results" / kept_experiment.rows["finetune"]["model_path"]
    image = str(next(kept_experiment.ood.rglob("*.jpg")))
    assert read_model_file(str(source)).code_version  # this code's own file loads
    # format 1 (before predict existed) still loads, saying which code wrote it
    old = _rewrite(source, tmp_path / "old.pt", format=None, code_version=None, trial_id=None)
    assert main(["--model", str(old), image]) == 0
    err = capsys.readouterr().err
    assert f"note: model file {old} was written by code version {UNKNOWN_VERSION}; this is " in err
    future = _rewrite(source, tmp_path / "future.pt", format=MODEL_FILE_FORMAT + 1,
                      code_version="abc123def456")
    err = _error(capsys, ["--model", str(future), image])
    assert f"model file {future} was written by code version abc123def456; this is " in err
    assert f"it is model file format {MODEL_FILE_FORMAT + 1} where this code reads formats 1, 2" in err
    assert "Fix: rerun its trial" in err
    ckpt = torch.load(source, map_location="cpu", weights_only=True)
    newer = _rewrite(source, tmp_path / "newer.pt", code_version="abc123def456",
                     config={**ckpt["config"], "warmup_epochs": 3})
    err = _error(capsys, ["--model", str(newer), image])
    assert "written by code version abc123def456" in err and "warmup_epochs" in err
    other = _rewrite(source, tmp_path / "other.pt", code_version="abc123def456",
                     classes=["blue", "green", "red"])  # a head of another shape
    err = _error(capsys, ["--model", str(other), image])
    assert "abc123def456" in err and "weights do not fit the model this code builds" in err
    (tmp_path / "junk.pt").write_bytes(b"not torch")
    err = _error(capsys, ["--model", str(tmp_path / "junk.pt"), image])
    assert "is not a model file this project wrote" in err
