"""Compaction (trainables/results/compaction.py, python -m sweep.compact): few files, same rows,
newest rows win, and every state a killed compaction can leave reads the same."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.fs as pafs
import pytest

from analysis.load import load_results, read_predictions
from sweep import compact as compact_cli
from sweep.layout import remove_stale_temporaries
from tests.synthetic import write_synthetic_trial
from trainables.results import compaction, tables

TABLES = tuple(tables.TABLES)


def _grid(root: Path, seeds: int = 3) -> list[str]:
    ids = []
    for arch, regime, seed in itertools.product(("resnet18", "vgg11_bn"), ("finetune", "scratch"),
                                                range(seeds)):
        ids.append(write_synthetic_trial(root, arch, regime, seed, val=[0.5, 0.6 + seed / 100, 0.7],
                                         test=[True, seed % 2 == 0, False], ood=[True, False]))
    return ids


def _rows(root: Path, table: str) -> list[tuple]:
    """The table's rows as sorted tuples (order is not part of the contract)."""
    t = tables.read_table(str(root), table)
    return sorted(tuple(r.values()) for r in t.to_pylist())


def _snapshot(root: Path) -> dict[str, list[tuple]]:
    return {t: _rows(root, t) for t in TABLES}


def _files(root: Path, table: str) -> list[str]:
    return sorted(p.name for p in (root / table).iterdir())


@pytest.mark.parametrize("files_per_scan", [compaction.FILES_PER_SCAN, 5])
def test_compaction_leaves_one_file_per_table_and_the_same_rows(tmp_path, monkeypatch, files_per_scan):
    monkeypatch.setattr(compaction, "FILES_PER_SCAN", files_per_scan)  # 12 files: several scans
    ids = _grid(tmp_path)
    before = _snapshot(tmp_path)
    loaded_before = load_results(str(tmp_path))
    done = compact_cli.compact_results(str(tmp_path))
    for table in TABLES:
        names = _files(tmp_path, table)
        assert len(names) == 1 and names[0].startswith(compaction.PART_PREFIX), names
    assert [r.merged_files for r in done] == [len(ids), len(ids), len(ids)]
    assert _snapshot(tmp_path) == before
    loaded = load_results(str(tmp_path))
    assert loaded.trials.sort_values("trial_id").reset_index(drop=True).equals(
        loaded_before.trials.sort_values("trial_id").reset_index(drop=True))
    assert len(loaded.epochs) == len(loaded_before.epochs) == 3 * len(ids)
    assert tables.finished_trial_ids(str(tmp_path)) == set(ids)
    preds = read_predictions(str(tmp_path), [ids[1]])
    assert len(preds) == 5 and set(preds["trial_id"]) == {ids[1]}
    # nothing new: a second compaction does nothing
    assert all(r.part is None for r in compact_cli.compact_results(str(tmp_path)))


def test_a_trial_written_again_after_compaction_replaces_its_compacted_rows(tmp_path):
    failed = write_synthetic_trial(tmp_path, "resnet18", "finetune", 0, status="failed", error="OOM")
    other = write_synthetic_trial(tmp_path, "resnet18", "scratch", 0)
    compact_cli.compact_results(str(tmp_path))
    assert tables.finished_trial_ids(str(tmp_path)) == {other}
    # the retry succeeds: fresh per-trial files next to the compacted part
    again = write_synthetic_trial(tmp_path, "resnet18", "finetune", 0, val=[0.9, 0.95],
                                  test=[True, True], ood=[False])
    assert again == failed
    trials = tables.read_table(str(tmp_path), "trials").to_pylist()
    assert sorted(r["trial_id"] for r in trials) == sorted([failed, other])  # no duplicate
    assert {r["trial_id"]: r["status"] for r in trials}[failed] == "ok"
    assert tables.finished_trial_ids(str(tmp_path)) == {failed, other}
    epochs = tables.read_table(str(tmp_path), "epochs", columns=["trial_id", "val_acc"]).to_pylist()
    assert [e["val_acc"] for e in epochs if e["trial_id"] == failed] == [0.9, 0.95]
    assert len(read_predictions(str(tmp_path), [failed])) == 3
    assert len(read_predictions(str(tmp_path), [failed, other])) == 3  # `other` has no image rows
    expect = _snapshot(tmp_path)
    compact_cli.compact_results(str(tmp_path))  # incremental: a second, newer part
    assert len(_files(tmp_path, "trials")) in (1, 2)
    assert _snapshot(tmp_path) == expect
    compact_cli.compact_results(str(tmp_path), full=True)
    assert all(len(_files(tmp_path, t)) == 1 for t in TABLES)
    assert _snapshot(tmp_path) == expect


def test_filters_apply_after_the_replace_rule(tmp_path):
    """Filters apply after the replace rule: a filter that drops a trial's fresh rows must not
    bring back its compacted ones."""
    tid = write_synthetic_trial(tmp_path, "resnet18", "finetune", 0, test=[True, True])
    compact_cli.compact_results(str(tmp_path))
    write_synthetic_trial(tmp_path, "resnet18", "finetune", 0, test=[False])
    got = tables.read_table(str(tmp_path), "predictions",
                             filter=pc.field("correct") == True)  # noqa: E712
    assert got.num_rows == 0  # the compacted rows (both correct) were replaced
    assert len(read_predictions(str(tmp_path), [tid])) == 1


def test_incremental_compactions_leave_large_parts_alone_and_stay_few(tmp_path):
    _grid(tmp_path, seeds=10)  # 40 trials
    compact_cli.compact_results(str(tmp_path))
    [big] = _files(tmp_path, "predictions")
    for round_ in range(12):
        write_synthetic_trial(tmp_path, "squeezenet1_0", "finetune", round_, test=[True, False])
        compact_cli.compact_results(str(tmp_path))
    parts = _files(tmp_path, "predictions")
    assert big in parts  # never rewritten for a few new trials
    assert 2 <= len(parts) <= 4, parts  # size-tiered: the small parts merge among themselves
    expect = _snapshot(tmp_path)
    assert len(expect["trials"]) == 52
    compact_cli.compact_results(str(tmp_path), full=True)
    assert len(_files(tmp_path, "predictions")) == 1 and big not in _files(tmp_path, "predictions")
    assert _snapshot(tmp_path) == expect


@pytest.mark.parametrize("table", TABLES)
def test_every_state_a_killed_compaction_leaves_reads_the_same(tmp_path, table):
    """A compaction writes its part, then deletes what it merged. Killed after the part exists,
    any subset of the merged files may remain; killed before, a hidden temporary may."""
    root = tmp_path / "r"
    _grid(root, seeds=1)
    compact_cli.compact_results(str(root))
    write_synthetic_trial(root, "resnet18", "finetune", 0, val=[0.1, 0.2], test=[False], ood=[True])
    write_synthetic_trial(root, "squeezenet1_0", "finetune", 0)
    expect = _snapshot(root)
    before = tmp_path / "before"
    shutil.copytree(root, before)
    compact_cli.compact_results(str(root), full=True)
    merged = sorted((before / table).iterdir())
    assert len(merged) == 3  # one older part + two fresh files
    for k in range(len(merged) + 1):
        for left in itertools.combinations(merged, k):
            state = tmp_path / f"state-{k}-{'-'.join(p.stem[:6] for p in left)}"
            shutil.copytree(root, state)
            for p in left:
                shutil.copy2(p, state / table / p.name)
            assert _snapshot(state) == expect, [p.name for p in left]
    # killed while writing the part: a hidden temporary, ignored, removed at the next sweep start
    crashed = tmp_path / "crashed"
    shutil.copytree(before, crashed)
    (crashed / table / ".tmp-compacted-0000000009-00000000.parquet-1234abcd.tmp").write_bytes(b"PAR1")
    assert _snapshot(crashed) == expect
    assert remove_stale_temporaries(str(crashed)) == 1
    compact_cli.compact_results(str(crashed))
    assert _snapshot(crashed) == expect


def test_a_file_rewritten_during_compaction_is_kept_and_wins(tmp_path):
    tid = write_synthetic_trial(tmp_path, "resnet18", "finetune", 0, val=[0.5, 0.6])
    plan = compaction.plan_compaction(str(tmp_path / "epochs"))
    # a trial rewrites its file between the compaction's listing and its deletes
    write_synthetic_trial(tmp_path, "resnet18", "finetune", 0, val=[0.7, 0.8, 0.9])
    done = compaction.apply_compaction(plan, tables.EPOCHS_SCHEMA)
    assert done.kept_changed == [f"{tmp_path}/epochs/{tid}.parquet"]
    assert len(_files(tmp_path, "epochs")) == 2
    assert [r["val_acc"] for r in tables.read_table(str(tmp_path), "epochs").to_pylist()] == [0.7, 0.8, 0.9]


class _WriterInTheWindow(pafs.LocalFileSystem):
    """The local disk, where a trial rewrites its file at the worst moment: just before the
    compaction's first delete (after every check it makes)."""

    def __init__(self, write) -> None:
        super().__init__()
        self.write, self.fired = write, False

    def delete_file(self, path: str) -> None:
        if not self.fired:
            self.fired = True
            self.write()
        super().delete_file(path)


def test_a_file_rewritten_just_before_the_delete_is_never_lost(tmp_path):
    """Only files whose names, sizes and times were read into the new part are deleted: a
    concurrent writer's rows survive, even in the window between the check and the delete."""
    from trainables.results import storage

    write_synthetic_trial(tmp_path, "resnet18", "finetune", 0, val=[0.5, 0.6])
    racing = _WriterInTheWindow(lambda: write_synthetic_trial(tmp_path, "resnet18", "finetune", 0,
                                                              val=[0.7, 0.8, 0.9]))
    storage.mount(str(tmp_path), racing)
    try:
        done = compaction.compact_folder(str(tmp_path / "epochs"), tables.EPOCHS_SCHEMA)
    finally:
        storage.mount(str(tmp_path), None)
    assert racing.fired and done.part is not None
    rows = tables.read_table(str(tmp_path), "epochs").to_pylist()
    assert [r["val_acc"] for r in rows] == [0.7, 0.8, 0.9], "the newer write must win"
    assert not [p for p in (tmp_path / "epochs").iterdir() if p.name.endswith(".tmp")]


def test_hidden_and_foreign_files_are_not_read_as_parts(tmp_path):
    write_synthetic_trial(tmp_path, "resnet18", "finetune", 0)
    (tmp_path / "trials" / "_SUCCESS").write_text("")
    (tmp_path / "trials" / "notes.txt").write_text("x")
    listing = compaction.list_folder(pafs.LocalFileSystem(), str(tmp_path / "trials"))
    assert len(listing.fresh) == 1 and not listing.parts
    compact_cli.compact_results(str(tmp_path))
    names = _files(tmp_path, "trials")
    assert names[0] == "_SUCCESS" and names[2:] == ["notes.txt"]
    assert names[1].startswith("compacted-0000000001-")
    assert len(tables.read_table(str(tmp_path), "trials")) == 1


def test_cli_compacts_and_names_a_missing_folder(tmp_path, capsys):
    _grid(tmp_path, seeds=1)
    assert compact_cli.main(["--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "4 file(s) + 0 part(s) -> 1 part" in out and "compacted in" in out
    assert compact_cli.main(["--results", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --results") and "nope" in err and "Traceback" not in err
