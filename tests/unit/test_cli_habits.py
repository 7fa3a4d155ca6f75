"""The command lines in the ecosystem's habits (issue 23): grouped --help, the --set hint for an
unknown option that is a trial setting, --seeds as a count or a list, the same names in both
CLIs, `feature-reuse X` as prog, banners from the settings used, -v for timing internals, and
the expected wall time before compute."""

from __future__ import annotations

import json
import sys

import pytest

from sweep import estimate
from sweep.grid import GridSpec, build_grid, seeds_option, with_ids
from sweep.resources import ClusterInfo, ResourcePlan, TrialResources
from sweep.run import build_parser as sweep_parser
from trainables.config import TrialConfig
from trainables.presets import PRESETS, PresetMessage, run_words, schedule_notes
from trainables.train import build_parser as train_parser

PARSERS = {"sweep": sweep_parser, "train": train_parser}
BASE = {"sweep": [], "train": ["--arch", "resnet18", "--regime", "scratch"]}


@pytest.mark.parametrize("cli", PARSERS)
@pytest.mark.parametrize("typed, hint", [
    (["--epochs", "5"], "error: unknown option --epochs; did you mean --set epochs=5?"),
    (["--lr=0.01"], "error: unknown option --lr; did you mean --set lr=0.01?"),
    (["--batch-size", "8"], "did you mean --set batch_size=8?"),
    (["--learning-rate", "0.1"], "did you mean --set lr=0.1?"),
    (["--momentm", "0.9"], "error: unknown option --momentm"),
])
def test_an_unknown_option_that_is_a_setting_names_the_set(cli, typed, hint, capsys):
    with pytest.raises(SystemExit) as exit_:
        PARSERS[cli]().parse_args([*BASE[cli], *typed])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert hint in err and "Traceback" not in err


def test_timm_model_option_names_ours(capsys):
    for cli, ours in (("sweep", "--archs resnet18"), ("train", "--arch resnet18")):
        with pytest.raises(SystemExit):
            PARSERS[cli]().parse_args(["--model", "resnet18", "--regime", "scratch"])
        assert f"did you mean {ours}?" in capsys.readouterr().err


def test_a_misspelled_option_gets_the_close_one(capsys):
    with pytest.raises(SystemExit):
        sweep_parser().parse_args(["--storge", "runs"])
    assert "did you mean --storage?" in capsys.readouterr().err


@pytest.mark.parametrize("typed, values", [
    (["--seeds", "5"], (0, 1, 2, 3, 4)),
    (["--seeds", "0", "1", "2"], (0, 1, 2)),
    (["--seeds", "3", "7"], (3, 7)),
    (["--seed", "4"], (4,)),
])
def test_seeds_are_a_count_or_the_seeds_themselves(typed, values):
    args = sweep_parser().parse_args(["--preset", "smoke", "--regimes", "scratch", *typed])
    seeds = (args.seed,) if args.seed is not None else seeds_option(args.seeds)
    spec = GridSpec(PRESETS["smoke"], regimes=("scratch",), seeds=seeds)
    assert tuple(c.seed for c in build_grid(spec)) == values
    assert spec.resolved_seeds == len(values)


def test_a_seed_out_of_range_is_a_problem():
    spec = GridSpec(PRESETS["smoke"], seeds=(0, -1))
    assert any("--seeds -1" in p for p in spec.problems())


def test_both_clis_take_the_same_names():
    for cli in PARSERS:
        options = {s for a in PARSERS[cli]()._actions for s in a.option_strings}
        assert {"--train-size", "--train-sizes", "--keep-models", "--preset", "--set", "--config",
                "--data", "--ood", "--split-seed", "--dry-run"} <= options, cli
    assert sweep_parser().get_default("preset") == train_parser().get_default("preset") == "demo"
    train = train_parser().parse_args([*BASE["train"], "--train-sizes", "10", "--keep-models",
                                       "best"])
    assert (train.train_size, train.keep_models) == ("10", "best")
    sweep = sweep_parser().parse_args(["--arch", "resnet18", "--regime", "scratch",
                                       "--train-size", "10"])
    assert (sweep.archs, sweep.regimes, sweep.train_sizes) == (["resnet18"], ["scratch"], ["10"])


def test_train_help_is_grouped_and_has_no_development_notes():
    text = train_parser().format_help()
    for group in ("data:", "trial (one point of the sweep's grid):", "training:", "resources:",
                  "output:", "examples:"):
        assert f"\n{group}\n" in text, group
    for shown in (text, sweep_parser().format_help()):
        assert "sweep/schedule.py" not in shown and "Ray trainable wraps" not in shown
        assert "Long because" not in shown


@pytest.mark.parametrize("command", ["sweep", "train", "report", "weights", "predict", "export"])
def test_feature_reuse_x_help_shows_feature_reuse_x(command, monkeypatch, capsys):
    from feature_reuse.cli import main

    monkeypatch.setattr(sys, "argv", ["feature-reuse"])
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: feature-reuse {command} ")


def config(**changes) -> TrialConfig:
    return PRESETS["demo"].trial("mobilenet_v2", "finetune", **changes)


def test_the_banner_says_what_will_run_not_the_presets_defaults():
    configs = [config(seed=s, train_size="all") for s in range(5)]
    words = run_words(configs, "--data mine")
    assert "5 seeds (0, 1, 2, 3, 4)" in words and "on --data mine" in words
    assert "embedded" not in words and "3 seeds" not in words
    assert "drops x0.1 after epochs 7, 14" in words
    line = PresetMessage(PRESETS["demo"], runs=words).lines()[0]
    assert line == f"preset demo: {words}"


def test_a_note_when_the_learning_rate_never_drops():
    short = [config(epochs=5)]
    assert "never drops" in run_words(short, "x") and "drops x" not in run_words(short, "x")
    notes = schedule_notes(short)
    assert len(notes) == 1 and "epochs=5 <= step_size=7" in notes[0]
    assert schedule_notes([config(epochs=8)]) == []
    assert schedule_notes([PRESETS["demo"].trial("mobilenet_v2", "linear_probe", epochs=5)]) == []
    assert "note: " + notes[0] in PresetMessage(PRESETS["demo"], notes=notes).lines()


def test_verbose_is_an_option():
    assert sweep_parser().parse_args(["-v"]).verbose
    assert not sweep_parser().parse_args([]).verbose


COUNTS = {"train": {"a": 60, "b": 78}, "val": {"a": 20, "b": 26}, "test": {"a": 20, "b": 26}}


def test_expected_wall_time_is_the_longest_slot_at_the_stated_rate(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    points = with_ids(build_grid(GridSpec(PRESETS["demo"], regimes=("finetune",),
                                          train_sizes=("all",))), "h")
    plan = ResourcePlan({"mobilenet_v2": TrialResources(1.0)}, "cpu")
    rates = estimate.throughput("here")
    assert "stated rate" in rates.source["cpu"]
    gflop = estimate.expected_gflop(points[0].config, COUNTS)
    one = estimate.expected_wall_s(points, COUNTS, plan, 1, rates)
    assert one == pytest.approx(3 * gflop / rates.gflops["cpu"])
    three = estimate.expected_wall_s(points, COUNTS, plan, 3, rates)
    assert three == pytest.approx(one / 3)
    line = estimate.estimate_line(points, COUNTS, plan, ClusterInfo(2.0, 0.0))
    assert "2 concurrent slots" in line and "stated rate" in line


def test_a_measured_throughput_is_cached_and_then_used(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    points = with_ids(build_grid(GridSpec(PRESETS["demo"], regimes=("scratch",))), "h")
    gflop = estimate.expected_gflop(points[0].config, COUNTS)
    assert gflop >= estimate.MIN_RECORDED_GFLOP
    rows = [{"trial_id": points[0].trial_id, "status": "ok", "total_seconds": 4.0,
             "device": "cpu:x86_64 (2 threads)"},
            {"trial_id": "other", "status": "ok", "total_seconds": 1.0, "device": "cpu"}]
    estimate.record_throughput(rows, points, COUNTS, 2.0, None, host="here")
    cached = json.loads(estimate.cache_file().read_text())
    assert cached["here"]["cpu"] == {"gflops": pytest.approx(gflop / 8.0), "trials": 1}
    rates = estimate.throughput("here")
    assert rates.gflops["cpu"] == pytest.approx(gflop / 8.0)
    assert "measured here" in rates.source["cpu"]
    assert "stated rate" in estimate.throughput("elsewhere").source["cpu"]


def test_the_readme_states_the_paper_presets_estimate_the_model_gives():
    """README's hours come from the same cost model and stated rates the dry run uses (a pool of
    the study's shape: 100 + 130 images, 60/20/20; all trials CPU at 1 CPU, or 4 per GPU)."""
    from tests.conftest import PROJECT_ROOT

    points = with_ids(build_grid(GridSpec(PRESETS["paper"])), "h")
    rates = estimate.Throughput(estimate.STATED_GFLOPS, {})
    archs = PRESETS["paper"].archs
    cpu = ResourcePlan({a: TrialResources(1.0) for a in archs}, "cpu")
    gpu = ResourcePlan({a: TrialResources(1.0, 0.25) for a in archs}, "gpu")
    cpu_h = estimate.expected_wall_s(points, COUNTS, cpu, 2, rates) / 3600
    gpu_h = estimate.expected_wall_s(points, COUNTS, gpu, 4, rates) / 3600
    text = " ".join((PROJECT_ROOT / "README.md").read_text().split())
    assert f"about {round(cpu_h, -1):.0f} hours (nearly a week) on 2 CPU cores" in text
    assert f"about {gpu_h:.1f} hours on one GPU" in text
    assert f"stated rates {estimate.STATED_GFLOPS['cpu']:g} GFLOP/s per CPU core" in text


def test_smoke_trials_are_not_recorded_as_throughput(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    points = with_ids(build_grid(GridSpec(PRESETS["smoke"], regimes=("scratch",))), "h")
    assert estimate.expected_gflop(points[0].config, COUNTS) < estimate.MIN_RECORDED_GFLOP
    rows = [{"trial_id": points[0].trial_id, "status": "ok", "total_seconds": 4.0, "device": "cpu"}]
    estimate.record_throughput(rows, points, COUNTS, 1.0, None, host="here")
    assert not estimate.cache_file().exists()
