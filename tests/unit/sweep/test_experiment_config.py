"""One experiment folder, one configuration (sweep/experiment_config.py), and finished trials
recognised by what they read (trainables.config.trial_id), on rows written by older code too."""

from __future__ import annotations

import json

import pytest

from sweep.experiment_config import auto_name, config_problem
from sweep.grid import GridSpec
from sweep.layout import Experiment
from sweep.plan import DataChoice
from sweep.preflight import run_preflight
from tests.synthetic import write_synthetic_trial
from trainables.config import legacy_trial_id
from trainables.presets import PRESETS
from trainables.regimes import LINEAR_PROBE, REGIMES

ALL = list(REGIMES)


@pytest.fixture
def finished(pool, tmp_path, torch_home):
    """A smoke experiment (every regime, train size 4) whose trials all have ok rows, stored
    under the ids older code gave them (every field hashed)."""
    storage = tmp_path / "runs"
    exp = Experiment.at(str(storage), "smoke")
    spec = GridSpec(PRESETS["smoke"], regimes=tuple(ALL), train_sizes=("4",))
    ready = run_preflight(spec, exp, str(storage), DataChoice(str(pool)))
    ready.release()
    for p in ready.grid:
        c = p.config
        tid = write_synthetic_trial(exp.results, c.arch, c.regime, c.seed, train_size="4",
                                    manifest_hash=ready.manifest.hash,
                                    config=json.loads(c.to_json()))
        assert tid != legacy_trial_id(c, ready.manifest.hash) != p.trial_id  # an old stored id
    return storage, exp, spec


def sweep_args(pool, storage, *extra: str) -> list[str]:
    return ["--preset", "smoke", "--regimes", *ALL, "--train-sizes", "4", "--data", str(pool),
            "--storage", str(storage), *extra]


def test_a_setting_only_the_probe_reads_leaves_the_sgd_trials_finished(finished, pool, sweep_main,
                                                                       capsys):
    storage, exp, _ = finished
    code = sweep_main(sweep_args(pool, storage, "--set", "probe_max_iter=500", "--dry-run"))
    out = capsys.readouterr().out
    assert code == 0, out
    sgd = len(ALL) - 1
    assert f"grid: {len(ALL)} trials ({sgd} finished earlier, 1 to run)" in out
    assert "warning (a real run stops here)" in out and "probe_max_iter 1000 there, 500 now " \
        f"(read by {LINEAR_PROBE})" in out
    code = sweep_main(sweep_args(pool, storage, "--set", "probe_max_iter=500"))
    err = capsys.readouterr().err
    assert code == 2 and "error:" in err and "--name auto (here: smoke-probemaxiter500)" in err
    # the unchanged sweep finds every SGD trial finished, by the ids it has today; the probe's
    # old row runs again: its computation changed in the release that changed the ids
    # (Regime.legacy_rows: one eval transform for every split)
    assert sweep_main(sweep_args(pool, storage, "--dry-run")) == 0
    out = capsys.readouterr().out
    assert f"({sgd} finished earlier, 1 to run)" in out and "warning" not in out
    assert not REGIMES[LINEAR_PROBE].legacy_rows


def test_other_settings_are_refused_by_name_or_land_in_their_own_experiment(finished, pool,
                                                                             sweep_main, capsys):
    storage, exp, _ = finished
    before = sorted(p.name for p in (storage / "smoke" / "results" / "trials").iterdir())
    code = sweep_main(sweep_args(pool, storage, "--set", "epochs=10", "--set", "bn_mode=frozen"))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "error:" in err and "Traceback" not in err
    assert "epochs 2 there, 10 now" in err and "bn_mode train there, frozen now (read by " \
        "feature_extract)" in err and "--name NEW" in err
    assert sorted(p.name for p in (storage / "smoke" / "results" / "trials").iterdir()) == before
    code = sweep_main(sweep_args(pool, storage, "--set", "epochs=10", "--set", "bn_mode=frozen",
                                 "--name", "auto", "--dry-run"))
    out = capsys.readouterr().out
    assert code == 0 and "warning" not in out
    assert f"0 finished earlier, {len(ALL)} to run) -> {storage / 'smoke-epochs10-bnfrozen'}" in out
    # the grid's axes may grow: another seed and train size in the same experiment
    assert sweep_main(sweep_args(pool, storage, "--seeds", "2", "--train-sizes", "4", "2",
                                 "--dry-run")) == 0
    assert "warning" not in capsys.readouterr().out


def test_an_experiment_without_a_record_adopts_its_trials_settings_or_refuses_a_mix(finished):
    storage, exp, spec = finished
    (storage / "smoke" / "experiment.json").unlink()
    assert config_problem(exp, spec) is None
    other = GridSpec(PRESETS["smoke"], regimes=tuple(ALL), overrides={"epochs": 3})
    assert "epochs 2 there, 3 now" in config_problem(exp, other)
    finetune_only = GridSpec(PRESETS["smoke"], regimes=("finetune",),
                             overrides={"probe_max_iter": 5})  # fine-tuning never reads it
    assert config_problem(exp, finetune_only) is None
    config = PRESETS["smoke"].trial("mobilenet_v2", "scratch", 0, "4", epochs=3)
    write_synthetic_trial(exp.results, "mobilenet_v2", "scratch", 5, train_size="4",
                          config=json.loads(config.to_json()))
    problem = config_problem(exp, spec)
    assert "several configurations (they differ in epochs)" in problem and "--name" in problem


def test_auto_names_read_like_the_overrides():
    spec = GridSpec(PRESETS["demo"], overrides={"epochs": 10, "bn_mode": "frozen", "lr": 0.01,
                                                 "channels_last": True})
    assert auto_name(spec) == "demo-epochs10-bnfrozen-lr0.01-channelslast"
    assert auto_name(GridSpec(PRESETS["demo"])) == "demo"
