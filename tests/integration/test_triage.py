"""`python -m sweep.run --triage` on a real local Ray: the linear probe of each requested
architecture (one seed), the ranking, the shortlist's command; a rerun ranks without training."""

from __future__ import annotations

import pytest

from trainables.results import tables as results

pytestmark = pytest.mark.slow


def test_triage_runs_the_probe_ranks_and_prints_the_next_command(sweep_main, make_pool, tmp_path,
                                                                 capsys):
    pool = make_pool({"a": 10, "b": 10})
    argv = ["--preset", "smoke", "--data", str(pool), "--storage", str(tmp_path / "runs"),
            "--name", "t", "--seeds", "3", "--progress-interval", "1", "--triage"]
    assert sweep_main(argv) == 0
    out = capsys.readouterr().out
    trials = results.read_table(str(tmp_path / "runs" / "t" / "results"), "trials").to_pylist()
    assert [(t["arch"], t["regime"], t["seed"], t["status"]) for t in trials] == [
        ("mobilenet_v2", "linear_probe", 0, "ok")], "one seed: the probe's seed changes nothing"
    assert "triage (linear probe), train size all:" in out
    assert "Val acc % [95% CI]" in out and "fine-tune mobilenet_v2" in out
    assert (f"next: python -m sweep.run --preset smoke --data {pool} --storage "
            f"{tmp_path / 'runs'} --name t --seeds 3 --progress-interval 1 --archs mobilenet_v2"
            ) in out
    assert sweep_main(argv) == 0, "a rerun skips the finished probe and ranks again"
    again = capsys.readouterr().out
    assert "grid: 1 trials (1 finished earlier, 0 to run)" in again
    assert "fine-tune mobilenet_v2" in again


def test_triage_refuses_other_regimes(sweep_main, make_pool, tmp_path, capsys):
    pool = make_pool({"a": 10, "b": 10})
    code = sweep_main(["--preset", "smoke", "--data", str(pool), "--storage", str(tmp_path),
                       "--triage", "--regimes", "finetune"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --triage runs the linear probe only")
