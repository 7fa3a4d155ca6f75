"""The regime table end to end: a regime added as docs/regimes.md shows (one record and its fit
function, the page's own code) goes through the grid, a trial, the results and the report."""

from __future__ import annotations

import re
import sys
import types

import pytest

from analysis.report import main as report_main
from sweep.grid import GridSpec, build_grid
from tests.conftest import PROJECT_ROOT
from trainables import regimes
from trainables.config import trial_id
from trainables.data.folders import build_manifest
from trainables.presets import PRESETS
from trainables.results.tables import read_table
from trainables.train import main as train_main

DOC = PROJECT_ROOT / "docs" / "regimes.md"
MODULE = "trainables.nearest_mean"
NAME = "nearest_mean"


def doc_code() -> tuple[str, str]:
    """The page's two Python blocks: the fit function's module, then the table's record."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 2, f"{DOC.name}: expected the module and the record, found {len(blocks)}"
    return blocks[0], blocks[1]


@pytest.fixture
def nearest_mean():
    """The page's regime, for this test only: its module importable as trainables.nearest_mean,
    its record registered in REGIMES the way trainables/regimes.py registers its own."""
    module_code, record_code = doc_code()
    assert NAME not in regimes.REGIMES and MODULE not in sys.modules
    module = types.ModuleType(MODULE)
    exec(compile(module_code, f"{DOC}:module", "exec"), module.__dict__)
    sys.modules[MODULE] = module
    try:
        table = dict(vars(regimes))  # the record is written as a line of trainables/regimes.py
        exec(compile(record_code, f"{DOC}:record", "exec"), table)
        yield regimes.REGIMES[NAME]
    finally:
        regimes.REGIMES.pop(NAME, None)
        sys.modules.pop(MODULE, None)


def test_a_regime_added_as_the_docs_show_runs_through_grid_trial_results_and_report(
        nearest_mean, tiny_pool, torch_home, tmp_path, capsys):
    assert nearest_mean.fit_function() is sys.modules[MODULE].fit_nearest_mean

    # the grid: seedless, so seed 0 only beside a seeded regime's three seeds
    smoke = PRESETS["smoke"]
    grid = build_grid(GridSpec(smoke, archs=("mobilenet_v2",), regimes=(NAME, "scratch"), seeds=3))
    assert [(c.regime, c.seed) for c in grid] == [(NAME, 0), ("scratch", 0), ("scratch", 1),
                                                  ("scratch", 2)]
    assert GridSpec(smoke, archs=("mobilenet_v2",), regimes=(NAME,)).pretrained_archs == ["mobilenet_v2"]

    # a trial, through the single-trial CLI in this process (the record lives in this process)
    out = tmp_path / "results"
    assert train_main(["--arch", "mobilenet_v2", "--regime", NAME, "--preset", "smoke",
                       "--data", str(tiny_pool), "--out", str(out)]) == 0
    assert "regimes outside the study: nearest_mean" in capsys.readouterr().out

    # the results: the same three tables as every trial's, keyed by the grid's trial id
    manifest = build_manifest(tiny_pool, split_seed=0)
    trials = read_table(str(out), "trials").to_pylist()
    assert len(trials) == 1
    row = trials[0]
    assert row["status"] == "ok" and row["regime"] == NAME and row["trial_id"] == trial_id(
        grid[0], manifest.hash)
    assert row["trainable_params"] == 2 * 1280, "two class means of MobileNetV2's 1280 features"
    assert row["total_params"] > 2_000_000 and row["best_epoch"] == row["epochs"] == 1
    assert 0.0 <= row["test_acc"] <= 1.0 and row["ood_acc"] is None
    epochs = read_table(str(out), "epochs").to_pylist()
    assert [e["epoch"] for e in epochs] == [1] and epochs[0]["val_acc"] == row["best_val_acc"]
    predictions = read_table(str(out), "predictions").to_pylist()
    assert {p["split"] for p in predictions} == {"test"}
    assert len(predictions) == sum(manifest.counts()["test"].values())

    # the report labels it from its record
    report = tmp_path / "report"
    assert report_main(["--results", str(out), "--out", str(report), "--no-gradcam"]) == 0
    html = (report / "report.html").read_text(encoding="utf-8")
    assert nearest_mean.label == "Nearest class mean" and nearest_mean.label in html
