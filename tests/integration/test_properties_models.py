"""Properties of the commands that read kept models (issue 25): the Grad-CAM CLI
(`python -m analysis.gradcam`) and `feature-reuse predict` / `export`, driven with generated
options and folders, end in exit 0 or in one `error: ...` (exit 2), never in a traceback.

In-process, on the session's kept_experiment (tests/integration/conftest.py: mobilenet_v2, smoke
preset, fine-tuned and linear probe); few examples each, for 2 shared cores."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import write_image
from tests.integration.test_properties import _run, assert_clean_end, odd

FEW = settings(max_examples=8, deadline=None, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def odd_places(tmp_path_factory) -> dict[str, Path]:
    """Paths a user might pass: an empty folder, a text file, a file named .pt that is not a
    model, a broken JPEG, a folder of one good image."""
    base = tmp_path_factory.mktemp("odd_places")
    (base / "empty").mkdir()
    (base / "notes.txt").write_text("not an image\n")
    (base / "fake.pt").write_bytes(b"not a model")
    (base / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    write_image(base / "one" / "photo.jpg", (200, 40, 40), seed=3)
    return base


def _paths(kept, places: dict[str, Path] | Path) -> st.SearchStrategy[str]:
    base = places
    return st.sampled_from([str(kept.root), str(kept.root / "results"), str(kept.pool),
                            str(base / "empty"), str(base / "notes.txt"), str(base / "fake.pt"),
                            str(base / "missing"), "", "nosuch://x", "s3://bucket/none"])


@FEW
@given(data=st.data())
def test_gradcam_cli_ends_in_exit_0_or_one_error_line(data, kept_experiment, odd_places):
    from analysis.gradcam import main

    choice = data.draw
    kept = kept_experiment
    argv = ["--results", choice(st.sampled_from([str(kept.root / "results")] * 3 + [
        str(kept.root), str(odd_places / "empty"), str(odd_places / "missing"), ""]))]
    options = {
        "--trial": st.sampled_from([kept.rows["finetune"]["trial_id"], "nope", ""]),
        "--arch": st.one_of(st.sampled_from(["mobilenet_v2", "resnet18"]), odd()),
        "--regime": st.one_of(st.sampled_from(["finetune", "linear_probe", "scratch"]), odd()),
        "--n": st.sampled_from(["1", "2", "0", "-1", "1000", "x"]),
        "--seed": st.sampled_from(["0", "7", "-1", "nan"]),
        "--layer": st.sampled_from(["features.18", "features", "nope", ""]),
        "--target-class": st.sampled_from(["blue", "red", "green", ""]),
        "--method": st.sampled_from(["gradcam", "gradcam++", "nope"]),
        "--data": st.sampled_from([str(kept.pool), str(odd_places / "empty"), "/nonexistent"]),
        "--ood": st.sampled_from([str(kept.ood), str(odd_places / "notes.txt")]),
        "--out": st.sampled_from([str(odd_places / "cam.png"), str(odd_places / "notes.txt" / "x.png"),
                                  str(odd_places / "empty"), "s3://bucket/cam.png"]),
    }
    for flag, values in options.items():
        if choice(st.integers(0, 2)) == 0:
            argv += [flag, choice(values)]
    if choice(st.booleans()):
        argv.append("--scratch")
    code, err = _run(main, argv)
    assert_clean_end(code, err, argv)


@FEW
@given(data=st.data())
def test_predict_ends_in_exit_0_or_one_error_line(data, kept_experiment, odd_places):
    from feature_reuse.predict import main

    choice = data.draw
    kept = kept_experiment
    images = choice(st.lists(st.sampled_from([
        str(odd_places / "one"), str(odd_places / "one" / "photo.jpg"), str(kept.pool / "blue"),
        str(odd_places / "empty"), str(odd_places / "notes.txt"), str(odd_places / "broken.jpg"),
        str(odd_places / "missing.jpg"), ""]), min_size=1, max_size=3))
    argv = [*images]
    if choice(st.integers(0, 3)):
        argv += ["--experiment", choice(_paths(kept, odd_places))]
    if choice(st.booleans()):
        argv += ["--model", choice(st.sampled_from(["best", kept.rows["linear_probe"]["trial_id"],
                                                    "nope", str(odd_places / "fake.pt"), ""]))]
    if choice(st.booleans()):
        argv += ["--out", choice(st.sampled_from([str(odd_places / "p.csv"), str(odd_places / "empty"),
                                                  str(odd_places / "notes.txt" / "p.csv")]))]
    if choice(st.booleans()):
        argv += ["--batch-size", choice(st.sampled_from(["1", "0", "-3", "x", "100000"]))]
    if choice(st.booleans()):
        argv.append("--skip-bad-images")
    code, err = _run(main, argv)
    assert_clean_end(code, err, argv)


@FEW
@given(data=st.data())
def test_export_ends_in_exit_0_or_one_error_line(data, kept_experiment, odd_places):
    from feature_reuse.export import main

    choice = data.draw
    kept = kept_experiment
    argv = ["--format", choice(st.sampled_from(["torchscript", "torchscript", "onnx", "nope"])),
            "--out", choice(st.sampled_from([str(odd_places / "m.bin"), str(odd_places / "empty"),
                                             str(odd_places / "notes.txt" / "m.bin"), "",
                                             "s3://bucket/m.bin"]))]
    if choice(st.integers(0, 3)):
        argv += ["--experiment", choice(_paths(kept, odd_places))]
    if choice(st.booleans()):
        argv += ["--model", choice(st.sampled_from(["best", kept.rows["finetune"]["trial_id"],
                                                    "nope", str(odd_places / "fake.pt"), ""]))]
    code, err = _run(main, argv)
    assert_clean_end(code, err, argv)


@pytest.mark.parametrize("command", ["export", "predict"])
@pytest.mark.parametrize("where", ["folder", "under_a_file"])
def test_an_out_that_cannot_be_a_file_is_refused_first(command, where, odd_places, kept_experiment):
    """What the export property found: --out naming a folder ended in exit 1 after the export,
    with the temporary file's name."""
    from feature_reuse import export, predict

    out = str(odd_places / "empty") if where == "folder" else str(odd_places / "notes.txt" / "x")
    exp = ["--experiment", str(kept_experiment.root)]
    argv = ([*exp, "--format", "torchscript", "--out", out] if command == "export"
            else [str(odd_places / "one"), *exp, "--out", out])
    code, err = _run(export.main if command == "export" else predict.main, argv)
    assert code == 2 and "Traceback" not in err, err
    assert err.startswith(f"error: --out {out}") and "Fix:" in err, err
