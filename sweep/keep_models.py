"""--keep-models best: after the sweep, only the best seed's model of each group stays."""

from __future__ import annotations

from collections.abc import Sequence

from sweep.grid import GridPoint
from trainables.results import tables as results
from trainables.results.storage import delete_file, join


def prune_models(results_root: str, grid: Sequence[GridPoint], rows: dict[str, dict]) -> int:
    """--keep-models best: in each (arch, regime, train size) group whose trials are all ok,
    keep only the model of the best trial (`trainables.results.BEST_TRIAL_ORDER`, the report's
    rule); delete the others' files and clear their model_path. Returns how many models were
    deleted."""
    groups: dict[tuple[str, str, str], list[GridPoint]] = {}
    for p in grid:
        groups.setdefault((p.config.arch, p.config.regime, p.config.train_size), []).append(p)
    deleted = 0
    for points in groups.values():
        group_rows = [rows.get(p.trial_id) for p in points]
        if any(r is None or r["status"] != "ok" for r in group_rows):
            continue
        best = min(group_rows, key=results.best_trial_key)
        for row in group_rows:
            if row is best or not row["model_path"]:
                continue
            # run_trial saves every kept model here, whatever form model_path takes
            delete_file(join(results_root, "models", f"{row['trial_id']}.pt"))
            results.write_table_atomic(results_root, "trials", row["trial_id"],
                                       [{**row, "model_path": None}])
            deleted += 1
    return deleted
