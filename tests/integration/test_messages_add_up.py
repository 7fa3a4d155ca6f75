"""Messages that add up (issue 25): once byte-identical copies are set aside, every later
count says so, so the user who counts files in a folder can follow the numbers."""

from __future__ import annotations

import pytest

from tests.integration.test_bad_inputs import pool_of
from trainables.data.folders import build_manifest
from trainables.errors import DataError


def _with_copies(root, distinct: dict[str, int], copies: int):
    pool = pool_of(root, distinct)
    for i in range(copies):
        (pool / "ants" / f"copy_{i}.jpg").write_bytes((pool / "ants" / f"img_{i:03d}.jpg").read_bytes())
    return pool


def test_too_few_images_counts_the_copies_set_aside(tmp_path):
    pool = _with_copies(tmp_path / "pool", {"ants": 4, "bees": 8}, copies=4)
    with pytest.raises(DataError) as info:
        build_manifest(pool)
    assert ("'ants' has 4 distinct images (8 files; 4 byte-identical copies set aside)"
            in str(info.value)), str(info.value)
    assert "'bees'" not in str(info.value)


def test_a_train_size_too_large_counts_the_copies_set_aside(tmp_path, capsys):
    from trainables.train import main

    pool = _with_copies(tmp_path / "pool", {"ants": 8, "bees": 8}, copies=3)
    code = main(["--arch", "mobilenet_v2", "--regime", "scratch", "--preset", "smoke",
                 "--data", str(pool), "--out", str(tmp_path / "out"), "--train-size", "6",
                 "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert ("class 'ants' has only 5 training images (distinct images; 3 byte-identical copies "
            "of its images set aside, listed in the manifest)") in err, err
