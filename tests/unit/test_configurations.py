"""The report never averages trials of different configurations as seeds
(analysis/configurations.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from analysis.load import load_results
from analysis.report import main as report_main
from tests.synthetic import write_synthetic_trial
from trainables.errors import UserError
from trainables.presets import PRESETS
from trainables.results import tables as results


def results_folder(root, epochs: int, seeds: range, **overrides) -> str:
    for regime in ("finetune", "scratch"):
        for seed in seeds:
            config = PRESETS["smoke"].trial("mobilenet_v2", regime, seed, "all", epochs=epochs,
                                            **overrides)
            write_synthetic_trial(root, "mobilenet_v2", regime, seed,
                                  config=json.loads(config.to_json()))
    return str(root)


@pytest.fixture
def two_folders(tmp_path):
    return (results_folder(tmp_path / "a" / "results", 2, range(3)),
            results_folder(tmp_path / "b" / "results", 3, range(3, 6)))


def test_two_folders_differing_in_epochs_are_never_pooled(two_folders, capsys):
    a, b = two_folders
    for folder in (a, b):  # each alone: one configuration, three seeds per regime
        assert load_results(folder, with_manifest=False).trials.groupby("regime").size().eq(3).all()
    for table in ("trials", "epochs", "predictions"):  # copied together
        for path in (Path(b) / table).iterdir():
            shutil.copy(path, f"{a}/{table}/{path.name}")
    with pytest.raises(UserError, match=r"epochs 2 \(6 trials\), 3 \(6 trials\).*--where epochs=2"):
        load_results(a, with_manifest=False)
    assert report_main(["--results", a, "--no-gradcam", "--out", f"{a}/../report"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "different configurations" in err
    assert "Traceback" not in err
    for epochs, seeds in ((2, {0, 1, 2}), (3, {3, 4, 5})):
        res = load_results(a, with_manifest=False, where={"epochs": epochs})
        assert set(res.trials["seed"]) == seeds and len(res.trials) == 6
        assert f"only the trials with epochs={epochs} (--where)" in res.notes


def test_a_setting_the_regime_does_not_read_is_no_other_configuration(tmp_path, capsys):
    root = tmp_path / "results"
    results_folder(root, 2, range(2))
    config = PRESETS["smoke"].trial("mobilenet_v2", "finetune", 2, "all", epochs=2,
                                    bn_mode="frozen", probe_max_iter=5)  # fine-tuning reads neither
    write_synthetic_trial(root, "mobilenet_v2", "finetune", 2, config=json.loads(config.to_json()))
    assert len(load_results(str(root), with_manifest=False).trials) == 5
    assert report_main(["--results", str(root), "--where", "probe_iters=5"]) == 2
    assert "error: --where probe_iters=5: 'probe_iters' is not a setting" in capsys.readouterr().err


def test_one_trial_written_under_two_ids_counts_once(tmp_path):
    root = results_folder(tmp_path / "results", 2, range(2))
    row = {**results.read_table(root, "trials").to_pylist()[0], "finished_at": "2026-01-01"}
    results.write_table_atomic(root, "trials", row["trial_id"], [row])
    results.write_table_atomic(root, "trials", "old-id", [{**row, "trial_id": "old-id",
                                                          "finished_at": "2025-01-01"}])
    res = load_results(root, with_manifest=False)
    assert len(res.trials) == 4 and "old-id" not in set(res.trials["trial_id"])
    assert any("written twice" in note for note in res.notes)
