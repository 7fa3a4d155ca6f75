"""Invalid options: each is refused with a message that names the option and lists the valid
choices, before any work starts (no manifest, no results, no Ray).

The CLIs run in-process here (`main(argv)`, as `python -m ...` calls it) for speed;
tests/integration/test_faults.py runs them as real processes.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from trainables.archs import ARCHS
from trainables.config import BN_MODES, TrialConfig
from trainables.errors import UserError
from trainables.presets import PRESETS, get_preset
from trainables.regimes import REGIMES
from trainables.results.storage import URI_SCHEMES

CHOICES = {"arch": list(ARCHS), "regime": list(REGIMES), "preset": list(PRESETS),
           "bn_mode": list(BN_MODES), "storage": list(URI_SCHEMES)}
TRAIN_SIZE_HELP = "use 'all', a whole number of images per class (e.g. 20) or a fraction"


@pytest.fixture
def file_not_folder(tmp_path) -> Path:
    path = tmp_path / "results.txt"
    path.write_text("a file where a folder is expected\n")
    return path


def assert_refused(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, f"{needle!r} missing from: {err}"


# ----------------------------------------------------------------------- TrialConfig itself
@pytest.mark.parametrize(("changes", "needles"), [
    ({"arch": "resnet1000"}, ["--arch 'resnet1000' is unknown", *CHOICES["arch"]]),
    ({"arch": "MobileNet_V2"}, ["--arch 'MobileNet_V2' is unknown", "mobilenet_v2"]),
    ({"regime": "transfer"}, ["--regime 'transfer' is unknown", *CHOICES["regime"]]),
    ({"bn_mode": "eval"}, ["bn_mode 'eval' is unknown", *CHOICES["bn_mode"]]),
    ({"seed": -1}, ["--seed must be a non-negative integer, got -1"]),
    ({"seed": "3"}, ["--seed must be a non-negative integer, got '3'"]),
    ({"seed": True}, ["--seed must be a non-negative integer, got True"]),
    ({"seed": 1.5}, ["--seed must be a non-negative integer, got 1.5"]),
    ({"epochs": 0}, ["epochs must be at least 1, got 0"]),
    ({"batch_size": -6}, ["batch_size must be at least 1, got -6"]),
    ({"step_size": 0}, ["step_size must be at least 1"]),
    ({"train_size": "0"}, ["'0' is invalid", TRAIN_SIZE_HELP]),
    ({"train_size": "-5"}, ["'-5' is invalid", TRAIN_SIZE_HELP]),
    ({"train_size": "1.5"}, ["'1.5' is invalid", TRAIN_SIZE_HELP]),
    ({"train_size": "0.0"}, ["'0.0' is invalid", TRAIN_SIZE_HELP]),
    ({"train_size": "twenty"}, ["'twenty' is invalid", TRAIN_SIZE_HELP]),
    ({"train_size": "nan"}, ["'nan' is invalid", TRAIN_SIZE_HELP]),
], ids=lambda v: str(v) if isinstance(v, dict) else "")
def test_trial_config_refuses_bad_values_listing_choices(changes, needles):
    base = {"arch": "mobilenet_v2", "regime": "finetune"}
    with pytest.raises(UserError) as info:
        TrialConfig(**{**base, **changes})
    for needle in needles:
        assert needle in str(info.value)


def test_trial_config_reports_every_problem_at_once():
    with pytest.raises(UserError) as info:
        TrialConfig(arch="nope", regime="nope", seed=-1, train_size="x", epochs=0)
    message = str(info.value)
    for option in ("--arch", "--regime", "--seed", "--train-sizes", "epochs"):
        assert option in message


def test_unknown_preset_lists_presets():
    with pytest.raises(UserError, match=r"--preset 'fast' is unknown; choose from paper, demo, "
                                        r"smoke"):
        get_preset("fast")


# -------------------------------------------------------------- python -m trainables.train
TRAIN_BASE = ["--arch", "mobilenet_v2", "--regime", "scratch", "--preset", "smoke"]


def _train(args: list[str], out: Path, capsys) -> tuple[int, str]:
    from trainables.train import main

    try:
        code = main([*args, "--out", str(out)] if "--out" not in args else args)
    except SystemExit as exc:  # argparse: usage + "error: ..." and status 2
        code = exc.code
    return code, capsys.readouterr().err


def _replace(base: list[str], flag: str, value: str) -> list[str]:
    args = list(base)
    if flag in args:
        args[args.index(flag) + 1] = value
        return args
    return [*args, flag, value]


TRAIN_CASES = {
    "unknown_arch": ("--arch", "alexnett", ["--arch 'alexnett' is unknown", *CHOICES["arch"]]),
    "unknown_regime": ("--regime", "sideways", ["--regime 'sideways'", *CHOICES["regime"]]),
    "unknown_preset": ("--preset", "quick", ["--preset 'quick' is unknown", *CHOICES["preset"]]),
    "negative_seed": ("--seed", "-1", ["--seed must be a non-negative integer, got -1"]),
    "seed_not_a_number": ("--seed", "one", ["argument --seed: invalid int value: 'one'"]),
    "train_size_zero": ("--train-size", "0", ["'0' is invalid", TRAIN_SIZE_HELP]),
    "train_size_fraction_above_1": ("--train-size", "2.5", ["'2.5' is invalid", TRAIN_SIZE_HELP]),
    "train_size_word": ("--train-size", "lots", ["'lots' is invalid", TRAIN_SIZE_HELP]),
    "train_size_larger_than_split": ("--train-size", "5", ["class 'a' has only 4 training images",
                                                           "use at most 4 or a fraction"]),
    "bn_mode": ("--set", "bn_mode=eval", ["bn_mode 'eval' is unknown", *CHOICES["bn_mode"]]),
    "threads_zero": ("--threads", "-2", ["--threads must be at least 1, got -2"]),
    "cap_malformed": ("--cap", "a:3", ["--cap 'a:3': use CLASS=N"]),
    "cap_unknown_class": ("--cap", "wasps=3", ["unknown classes ['wasps']; classes are ['a', 'b']"]),
    "unknown_storage_scheme": ("--out", "nosuch://bucket/run", ["unknown URI scheme 'nosuch'",
                                                               *CHOICES["storage"]]),
    "storage_is_a_file": ("--out", "FILE", ["--out: cannot write to", "Not a directory", "Fix:"]),
    "data_missing": ("--data", "/nonexistent/photos", ["--data folder /nonexistent/photos does "
                                                       "not exist"]),
}


@pytest.mark.parametrize("case", sorted(TRAIN_CASES))
def test_train_cli_refuses_before_any_work(case, pool, file_not_folder, tmp_path, capsys):
    flag, value, needles = TRAIN_CASES[case]
    out = tmp_path / "out"
    base = [*TRAIN_BASE, "--data", str(pool), "--out", str(out)]
    if value == "FILE":
        value = str(file_not_folder / "run")
    code, err = _train(_replace(base, flag, value), out, capsys)
    assert_refused(code, err, *needles)
    assert err.splitlines()[-1].startswith(("error:", "python -m trainables.train: error:"))
    assert not (out / "trials").exists() and not (out / "manifest.json").exists()


# ------------------------------------------------------------------------ python -m sweep.run
@pytest.fixture
def sweep_main(monkeypatch, torch_home):
    """sweep.run.main in this process; restores what it changes (SIGTERM handler, env)."""
    from sweep.run import main

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("TUNE_DISABLE_SIGINT_HANDLER", "1")
    previous = signal.getsignal(signal.SIGTERM)
    yield main
    signal.signal(signal.SIGTERM, previous)


SWEEP_CASES = {
    "unknown_arch": (["--archs", "mobilenet_v2", "alexnett"], ["alexnett", *CHOICES["arch"]]),
    "unknown_regime": (["--regimes", "finetune", "sideways"], ["sideways", *CHOICES["regime"]]),
    "unknown_preset": (["--preset", "quick"], ["--preset 'quick' is unknown", *CHOICES["preset"]]),
    "zero_seeds": (["--seeds", "0"], ["--seeds must be at least 1"]),
    "negative_seeds": (["--seeds", "-2"], ["--seeds must be at least 1"]),
    "seeds_not_a_number": (["--seeds", "three"], ["argument --seeds: invalid int value: 'three'"]),
    "train_size_zero": (["--train-sizes", "4", "0"], ["'0' is invalid", TRAIN_SIZE_HELP]),
    "train_size_negative": (["--train-sizes", "-3"], ["'-3' is invalid", TRAIN_SIZE_HELP]),
    "train_size_fraction_above_1": (["--train-sizes", "1.5"], ["'1.5' is invalid",
                                                               TRAIN_SIZE_HELP]),
    "train_size_word": (["--train-sizes", "half"], ["'half' is invalid", TRAIN_SIZE_HELP]),
    "train_size_larger_than_split": (["--train-sizes", "2", "9"],
                                     ["class 'a' has only 4 training images"]),
    "unknown_storage_scheme": (["--storage", "nosuch://bucket/runs"],
                               ["unknown URI scheme 'nosuch'", *CHOICES["storage"]]),
    "storage_is_a_file": (["--storage", "FILE"], ["--storage", "Not a directory", "Fix:"]),
    "gpus_per_trial": (["--gpus-per-trial", "2"], ["--gpus-per-trial '2'", "'auto'"]),
    "cpus_per_trial": (["--cpus-per-trial", "0"], ["--cpus-per-trial '0'"]),
    "keep_models": (["--keep-models", "some"], ["invalid choice: 'some'", "none", "best", "all"]),
    "name_with_slash": (["--name", "a/b"], ["--name 'a/b'"]),
    "max_failures": (["--max-failures", "-1"], ["--max-failures must be a whole number 0 or more"]),
    "data_missing": (["--data", "/nonexistent/photos"], ["/nonexistent/photos does not exist"]),
}


@pytest.mark.parametrize("case", sorted(SWEEP_CASES))
def test_sweep_cli_refuses_before_any_work(case, sweep_main, pool, file_not_folder, tmp_path,
                                           capsys):
    extra, needles = SWEEP_CASES[case]
    storage = tmp_path / "runs"
    extra = [str(file_not_folder) if a == "FILE" else a for a in extra]
    args = ["--preset", "smoke", "--data", str(pool), "--storage", str(storage), "--name", "x",
            *extra]
    try:
        code = sweep_main(args)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert_refused(code, err, *needles)
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized(), "Ray must not start for refused options"
    for what in ("manifest.json", "results", "ray"):
        assert not (storage / "x" / what).exists(), f"{what} written before the refusal"


def test_sweep_cli_reports_several_option_problems_in_one_message(sweep_main, pool, tmp_path,
                                                                  capsys):
    code = sweep_main(["--preset", "smoke", "--data", str(pool), "--storage", str(tmp_path),
                       "--regimes", "sideways", "--seeds", "0", "--train-sizes", "zero"])
    err = capsys.readouterr().err
    assert_refused(code, err, "sideways", "--seeds must be at least 1", "'zero' is invalid")


@pytest.mark.slow
def test_sweep_cli_refuses_an_unreachable_object_store(sweep_main, pool, tmp_path, monkeypatch,
                                                       capsys):
    """An S3 endpoint nobody listens on: refused by the storage probe (after the SDK's retries
    or the probe's timeout), before anything runs."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    storage = "s3://bucket/runs?endpoint_override=127.0.0.1:1&scheme=http&region=us-east-1"
    code = sweep_main(["--preset", "smoke", "--data", str(pool), "--storage", storage])
    err = capsys.readouterr().err
    assert_refused(code, err, f"--storage {storage}", "Fix:")
    assert "cannot write to" in err or "did not answer" in err
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()


# ------------------------------------------------------------ numbers, names, paths (issue 11)
NAN_AND_FRIENDS = {
    "cpus_nan": (["--cpus-per-trial", "nan"], ["--cpus-per-trial 'nan'"]),
    "cpus_inf": (["--cpus-per-trial", "inf"], ["--cpus-per-trial 'inf'"]),
    "cpus_negative": (["--cpus-per-trial", "-1"], ["--cpus-per-trial '-1'"]),
    "gpus_nan": (["--gpus-per-trial", "nan"], ["--gpus-per-trial 'nan'"]),
    "gpu_memory_nan": (["--gpu-memory-gb", "nan"], ["--gpu-memory-gb nan: use a finite number"]),
    "gpu_memory_negative": (["--gpu-memory-gb", "-8"], ["--gpu-memory-gb -8.0: use a finite"]),
    "progress_inf": (["--progress-interval", "inf"], ["--progress-interval inf: use a finite"]),
    "progress_zero": (["--progress-interval", "0"], ["--progress-interval 0.0: use a finite"]),
    "split_seed_negative": (["--split-seed", "-1"], ["--split-seed must be a whole number"]),
    "seeds_huge": (["--seeds", "1000000"], ["--seeds must be a whole number between 1 and 1000"]),
    "grid_huge": (["--seeds", "1000", "--train-sizes", *[str(n) for n in range(1, 68)]],
                  ["the grid has 201000 trials"]),
    "name_query": (["--name", "run?x=1"], ["--name 'run?x=1': use a plain folder name"]),
    "name_fragment": (["--name", "run#2"], ["--name 'run#2'"]),
    "name_dotdot": (["--name", ".."], ["--name '..'"]),
    "name_hidden": (["--name", ".x"], ["--name '.x'"]),
    "name_space": (["--name", "my run"], ["--name 'my run'"]),
    "name_percent": (["--name", "a%2Fb"], ["--name 'a%2Fb'"]),
    "storage_empty": (["--storage", ""], ["--storage is empty"]),
    "data_empty": (["--data", " "], ["--data is empty"]),
    "ood_empty": (["--ood", ""], ["--ood is empty"]),
    "address_empty": (["--address", ""], ["--address is empty"]),
    "data_not_utf8": (["--data", os.fsdecode(b"/tmp/caf\xe9")], ["is not valid UTF-8"]),
}


@pytest.mark.parametrize("case", sorted(NAN_AND_FRIENDS))
def test_sweep_cli_refuses_odd_numbers_names_and_paths(case, sweep_main, pool, tmp_path, capsys):
    extra, needles = NAN_AND_FRIENDS[case]
    storage = tmp_path / "runs"
    args = ["--preset", "smoke", "--data", str(pool), "--storage", str(storage), "--name", "x",
            *extra]
    code = sweep_main(args)
    err = capsys.readouterr().err
    assert_refused(code, err, *needles)
    assert err.strip().splitlines()[-1].startswith("error:"), err
    assert not (storage / "x" / "manifest.json").exists()


TRAIN_ODD = {
    "seed_huge": ("--seed", str(2**40), ["--seed must be a whole number between 0 and 4294967295"]),
    "split_seed_negative": ("--split-seed", "-3", ["--split-seed must be a whole number"]),
    "threads_huge": ("--threads", "100000", ["--threads must be a whole number between 1 and"]),
    "data_empty": ("--data", "", ["--data is empty"]),
    "ood_empty": ("--ood", "", ["--ood is empty"]),
    "out_empty": ("--out", "", ["--out is empty"]),
    "lr_nan": ("--set", "lr=nan", ["lr='nan' is not a finite number"]),
    "out_not_utf8": ("--out", os.fsdecode(b"/tmp/r\xe9sultats"), ["is not valid UTF-8"]),
}


@pytest.mark.parametrize("case", sorted(TRAIN_ODD))
def test_train_cli_refuses_odd_numbers_and_paths(case, pool, tmp_path, capsys):
    flag, value, needles = TRAIN_ODD[case]
    out = tmp_path / "out"
    base = [*TRAIN_BASE, "--data", str(pool), "--out", str(out)]
    code, err = _train(_replace(base, flag, value), out, capsys)
    assert_refused(code, err, *needles)
    assert not (out / "manifest.json").exists()


def test_a_local_out_folder_with_uri_characters_is_just_a_folder(pool, tmp_path, capsys):
    """`?` and `#` only mean query and fragment in a URI; locally they are characters."""
    from trainables.train import main

    out = tmp_path / "run?v=2#a"
    code = main([*TRAIN_BASE, "--set", "epochs=1", "--data", str(pool), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert (out / "manifest.json").is_file() and len(list((out / "trials").iterdir())) == 1


# ------------------------------------------------------------------ python -m analysis.report
@pytest.fixture
def synthetic_results(tmp_path) -> Path:
    from tests.synthetic import write_synthetic_trial

    root = tmp_path / "runs" / "exp" / "results"
    for seed in range(2):
        for regime in ("finetune", "scratch"):
            write_synthetic_trial(root, "resnet18", regime, seed)
    return root


def _report(args: list[str], capsys) -> tuple[int, str]:
    from analysis.report import main

    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def test_report_results_pointing_at_an_experiment_names_its_results(synthetic_results, capsys):
    exp = synthetic_results.parent
    code, err = _report(["--results", str(exp), "--no-gradcam"], capsys)
    assert_refused(code, err, f"--results {exp} is an experiment folder", f"--results {exp}/results")
    code, err = _report(["--results", str(exp.parent), "--no-gradcam"], capsys)
    assert_refused(code, err, "holds several experiments", f"{exp}/results")
    code, err = _report(["--results", str(synthetic_results / "trials"), "--no-gradcam"], capsys)
    assert_refused(code, err, "is the folder of one table", f"--results {synthetic_results}")
    some_file = synthetic_results / "trials" / next(iter(os.listdir(synthetic_results / "trials")))
    code, err = _report(["--results", str(some_file), "--no-gradcam"], capsys)
    assert_refused(code, err, "is a file, not a results folder")


@pytest.mark.parametrize("case", ["file", "under_a_file", "uri"])
def test_report_out_that_cannot_be_a_folder_is_refused(case, synthetic_results, tmp_path, capsys):
    blocker = tmp_path / "report.html"
    blocker.write_text("a file\n")
    out = {"file": str(blocker), "under_a_file": str(blocker / "sub"), "uri": "s3://bucket/rep"}[case]
    code, err = _report(["--results", str(synthetic_results), "--out", out, "--no-gradcam"], capsys)
    needle = {"file": "is a file, not a folder", "under_a_file": "is a file, not a folder",
              "uri": "written to a local folder"}[case]
    assert_refused(code, err, needle)


# ------------------------------------- the lead's round-one fixes, kept under test (issue 11)
def test_train_sizes_spelled_differently_are_one_trial_each():
    from sweep.grid import GridSpec, build_grid, with_ids

    spec = GridSpec(PRESETS["smoke"], archs=("mobilenet_v2",), regimes=("scratch",), seeds=1,
                    train_sizes=("all", "ALL", "0.5", ".5", "2", "02", " 2 "))
    assert spec.resolved_train_sizes == ("all", "0.5", "2")
    ids = [p.trial_id for p in with_ids(build_grid(spec), "m")]
    assert len(ids) == len(set(ids)) == 3


def test_a_second_single_trial_run_into_an_out_of_another_split_is_refused(pool, tmp_path,
                                                                           capsys):
    from trainables.data.folders import build_manifest
    from trainables.train import main

    out = tmp_path / "out"
    out.mkdir()
    other = build_manifest(pool, split_seed=1)
    (out / "manifest.json").write_text(other.to_json())
    code = main([*TRAIN_BASE, "--data", str(pool), "--out", str(out)])
    err = capsys.readouterr().err
    assert_refused(code, err, f"--out {out} holds trials of a different split", "pick a new --out")
    assert (out / "manifest.json").read_text() == other.to_json(), "the old manifest was replaced"
    assert not (out / "trials").exists()


def test_a_single_trial_run_into_an_out_whose_manifest_was_deleted_is_still_refused(
        pool, tmp_path, capsys):
    """The rows carry the split hash: without manifest.json, another split is still refused
    (the same rule as the sweep's, trainables/data/manifest.py)."""
    from tests.synthetic import write_synthetic_trial
    from trainables.train import main

    out = tmp_path / "out"
    write_synthetic_trial(out, "mobilenet_v2", "scratch", 0, manifest_hash="0123456789abcdef")
    before = sorted(p.name for p in (out / "trials").iterdir())
    code = main([*TRAIN_BASE, "--data", str(pool), "--out", str(out)])
    err = capsys.readouterr().err
    assert_refused(code, err, f"--out {out} holds trials of a different split (manifest "
                   "0123456789abcdef", "pick a new --out")
    assert sorted(p.name for p in (out / "trials").iterdir()) == before
    assert not (out / "manifest.json").exists()


def test_ctrl_c_in_the_single_trial_cli_exits_130_without_a_traceback(pool, tmp_path,
                                                                       torch_home):
    import subprocess
    import time

    from tests.conftest import PROJECT_ROOT

    marker = tmp_path / "training"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "TORCH_HOME": str(torch_home),
           "FEATURE_REUSE_FAULT": f"sleep@where=train,seconds=120,once={marker}"}
    proc = subprocess.Popen([sys.executable, "-m", "trainables.train", *TRAIN_BASE, "--data",
                             str(pool), "--out", str(tmp_path / "out")], cwd=PROJECT_ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        while not marker.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert marker.exists(), proc.communicate(timeout=30)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted: nothing of this trial was saved" in err and "Traceback" not in err
