"""The sweep's end: --keep-models best keeps the model the report calls best."""

from __future__ import annotations

from sweep.grid import GridPoint
from sweep.keep_models import prune_models
from trainables.presets import PRESETS
from trainables.results import tables as results


def test_keep_models_best_breaks_ties_like_the_report_never_by_seed(tmp_path):
    """Equal best-val accuracy: the lower val loss wins, although its seed is higher."""
    root = str(tmp_path / "results")
    smoke = PRESETS["smoke"]
    grid, rows = [], {}
    for seed, loss in ((0, 0.5), (1, 0.2), (2, 0.2)):
        config = smoke.trial("resnet18", "scratch", seed)
        tid = f"t{seed}"
        model = tmp_path / "results" / "models" / f"{tid}.pt"
        model.parent.mkdir(parents=True, exist_ok=True)
        model.write_bytes(b"weights")
        row = {"trial_id": tid, "arch": "resnet18", "regime": "scratch", "seed": seed,
               "train_size": "all", "status": "ok", "best_val_acc": 0.9, "best_val_loss": loss,
               "best_epoch": 3 - seed, "model_path": f"models/{tid}.pt"}
        results.write_table_atomic(root, "trials", tid, [row])
        grid.append(GridPoint(config, tid))
        rows[tid] = row
    assert prune_models(root, grid, rows) == 2
    kept = {r["trial_id"]: r["model_path"] for r in results.read_table(root, "trials").to_pylist()}
    # seeds 1 and 2 tie on accuracy and loss; seed 2 stopped at an earlier epoch (1 < 2)
    assert kept == {"t0": None, "t1": None, "t2": "models/t2.pt"}
    assert sorted(p.name for p in (tmp_path / "results" / "models").iterdir()) == ["t2.pt"]
