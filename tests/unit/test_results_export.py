"""feature-reuse results: each table's current rows as one Parquet file, where a glob over the
live folder counts a rewritten trial twice (docs/results.md shows both)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from feature_reuse.cli import main as cli_main
from tests.synthetic import write_synthetic_trial
from trainables.results import tables as results
from trainables.results.compaction import compact_folder

DUCKDB_LIVE = """
SELECT * FROM read_parquet('{root}/trials/*.parquet', filename = true)
QUALIFY filename = first_value(filename) OVER (
    PARTITION BY trial_id ORDER BY filename LIKE '%/compacted-%', filename DESC)
"""
POLARS_NEWEST = ('newest = pl.col("file").sort_by([pl.col("file").str.contains("/compacted-"), '
                 'pl.col("file")], descending=[False, True]).first().over("trial_id")')


@pytest.fixture
def rewritten(tmp_path) -> Path:
    """An experiment whose three trials were compacted, then one written again (a rerun)."""
    root = tmp_path / "runs" / "x" / "results"
    for seed in range(3):
        write_synthetic_trial(root, "mobilenet_v2", "scratch", seed, test=[True, False])
    for table, schema in results.TABLES.items():
        compact_folder(str(root / table), schema)
    write_synthetic_trial(root, "mobilenet_v2", "scratch", 1, test=[True, True, True])
    return root


def glob_rows(root: Path, table: str) -> int:
    return ds.dataset(sorted(str(p) for p in (root / table).glob("*.parquet"))).count_rows()


def test_the_export_holds_each_trials_newest_rows_once(rewritten, tmp_path, capsys):
    assert glob_rows(rewritten, "trials") == 4  # what a plain glob sees
    out = tmp_path / "export"
    assert cli_main(["results", str(rewritten.parent), "--out", str(out)]) == 0
    trials = pq.read_table(out / "trials.parquet").to_pandas()
    assert sorted(trials["seed"]) == [0, 1, 2]
    assert trials.set_index("seed")["test_acc"].to_dict() == {0: 0.5, 1: 1.0, 2: 0.5}
    predictions = pq.read_table(out / "predictions.parquet").to_pandas()
    assert predictions.groupby("seed").size().to_dict() == {0: 2, 1: 3, 2: 2}
    assert pq.read_table(out / "epochs.parquet").num_rows == 9
    assert sorted(p.name for p in out.iterdir()) == ["epochs.parquet", "predictions.parquet",
                                                     "trials.parquet"]
    assert cli_main(["results", str(rewritten), "--out", str(tmp_path / "again"),
                     "--tables", "trials"]) == 0  # the results folder itself works too
    assert [p.name for p in (tmp_path / "again").iterdir()] == ["trials.parquet"]


def test_a_folder_without_results_is_refused_by_name(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli_main(["results", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_the_documented_duckdb_and_polars_reads_of_the_live_folder(rewritten):
    duckdb = pytest.importorskip("duckdb")
    polars = pytest.importorskip("polars")
    docs = (Path(__file__).parents[2] / "docs" / "results.md").read_text()
    assert DUCKDB_LIVE.strip().splitlines()[1].strip() in docs
    rows = duckdb.sql(DUCKDB_LIVE.format(root=rewritten)).df()
    assert sorted(rows["seed"]) == [0, 1, 2] and rows.set_index("seed")["test_acc"][1] == 1.0
    pl = polars
    assert POLARS_NEWEST in docs
    newest = pl.col("file").sort_by([pl.col("file").str.contains("/compacted-"),
                                     pl.col("file")], descending=[False, True]).first().over("trial_id")
    lf = pl.scan_parquet(f"{rewritten}/predictions/*.parquet", include_file_paths="file")
    current = lf.filter(pl.col("file") == newest).collect()
    assert current.group_by("seed").len().sort("seed")["len"].to_list() == [2, 3, 2]
