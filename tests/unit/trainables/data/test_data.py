"""Split manifest: determinism, stratification, caps, train size, layouts, OOD, embedded demo."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import HYMENOPTERA, OOD_TEL, write_image
from trainables.data.dataset import load_trial_data
from trainables.data.demo import (
    CORRUPTIONS,
    POOL_CAPS,
    apply_shift,
    corruption_of,
    demo_manifest,
    prepare_data,
)
from trainables.data.folders import build_manifest
from trainables.data.images import decode_pil
from trainables.data.manifest import DataRoots, Manifest, select_train
from trainables.errors import DataError, UserError


def test_same_seed_gives_byte_identical_manifest(make_pool, tmp_path):
    pool = make_pool({"a": 20, "b": 25})
    first = build_manifest(pool, split_seed=7)
    second = build_manifest(pool, split_seed=7)
    first.save(tmp_path / "m1.json")
    second.save(tmp_path / "m2.json")
    assert (tmp_path / "m1.json").read_bytes() == (tmp_path / "m2.json").read_bytes()
    assert first.hash == second.hash
    assert Manifest.load(tmp_path / "m1.json").hash == first.hash
    other = build_manifest(pool, split_seed=8)
    assert other.hash != first.hash
    assert {e.path for e in other.split_entries("train")} != {
        e.path for e in first.split_entries("train")}


def test_manifest_hash_covers_file_contents(make_pool):
    pool = make_pool({"a": 10, "b": 10})
    before = build_manifest(pool).hash
    write_image(pool / "a" / "img_000.jpg", (0, 0, 0), seed=99)
    assert build_manifest(pool).hash != before


def test_stratified_60_20_20(make_pool):
    manifest = build_manifest(make_pool({"a": 50, "b": 30}), split_seed=1)
    counts = manifest.counts()
    assert counts["train"] == {"a": 30, "b": 18}
    assert counts["val"] == {"a": 10, "b": 6}
    assert counts["test"] == {"a": 10, "b": 6}
    paths = [e.path for e in manifest.entries]
    assert len(paths) == len(set(paths)), "an image must land in exactly one split"


def test_class_caps_like_the_study(make_pool):
    manifest = build_manifest(make_pool({"target": 40, "other": 50}), caps={"target": 20,
                                                                            "other": 26})
    totals = {c: sum(manifest.counts()[s][c] for s in ("train", "val", "test"))
              for c in manifest.classes}
    assert totals == {"target": 20, "other": 26}


def test_train_size_shrinks_only_train_and_is_nested(make_pool):
    manifest = build_manifest(make_pool({"a": 30, "b": 30}))
    train = manifest.split_entries("train")
    small = select_train(train, manifest.classes, "5", seed=0)
    half = select_train(train, manifest.classes, "0.5", seed=0)
    assert len(small) == 10 and len(half) == 18
    assert {e.path for e in small} <= {e.path for e in half}
    with pytest.raises(DataError, match="only 18 training images"):
        select_train(train, manifest.classes, "19", seed=0)


def test_each_seed_draws_its_own_training_subset_recorded_by_its_seed(make_pool):
    """Below "all", seed s trains on its own N-per-class subset (from the split seed and s), so
    which images were drawn is part of the seed noise; policy "split" keeps one subset for every
    seed (the rows written before the policy existed)."""
    from trainables.config import TrialConfig

    pool = make_pool({"a": 30, "b": 30})
    manifest = build_manifest(pool, split_seed=3)
    roots = DataRoots(str(pool))
    configs = [TrialConfig("resnet18", "scratch", seed=s, train_size="5") for s in range(3)]
    seeds = [c.subset_seed(manifest.split_seed) for c in configs]
    assert len(set(seeds)) == 3 and seeds == [c.subset_seed(3) for c in configs]  # same seed, same subset
    subsets = [load_trial_data(manifest, roots, "5", s).train.paths for s in seeds]
    assert all(len(p) == 10 for p in subsets) and len({tuple(sorted(p)) for p in subsets}) == 3
    assert configs[0].replace(train_size="all").subset_seed(3) is None
    fixed = [c.replace(subset_seed_policy="split").subset_seed(3) for c in configs]
    assert fixed == [3, 3, 3]
    assert load_trial_data(manifest, roots, "5", fixed[0]).train.paths == \
        load_trial_data(manifest, roots, "5").train.paths  # the split seed's subset, as before
    # one seed's smaller sizes are prefixes of its permutation
    train = manifest.split_entries("train")
    small = select_train(train, manifest.classes, "3", seeds[1])
    assert {e.path for e in small} <= {e.path for e in select_train(train, manifest.classes, "5", seeds[1])}


def test_subset_policy_counts_in_the_trial_id_only_where_it_draws_a_subset():
    """Rows written before `subset_seed_policy` existed keep their ids: at "all" and under policy
    "split" the legacy id is the hash of the config without the field, and a row without the
    field is the "split" trial; per-seed subsets below "all" are new trials."""
    import hashlib
    import json

    from trainables.config import TrialConfig, legacy_trial_id, trial_id, trial_id_of

    def legacy_id(config: TrialConfig) -> str:
        fields = {k: v for k, v in config.to_dict().items() if k != "subset_seed_policy"}
        payload = json.dumps({"config": fields, "manifest": "m"}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    full = TrialConfig("resnet18", "scratch", seed=1)
    small = full.replace(train_size="10")
    assert trial_id(full, "m") == trial_id(full.replace(subset_seed_policy="split"), "m")
    assert legacy_trial_id(full, "m") == legacy_id(full)
    assert legacy_trial_id(small.replace(subset_seed_policy="split"), "m") == legacy_id(small)
    assert trial_id(small, "m") != trial_id(small.replace(subset_seed_policy="split"), "m")
    old_row = {k: v for k, v in json.loads(small.to_json()).items() if k != "subset_seed_policy"}
    assert trial_id_of(old_row, "m") == trial_id(small.replace(subset_seed_policy="split"), "m")
    with pytest.raises(UserError, match="subset_seed_policy 'each' is unknown; choose from per_seed, split"):
        small.replace(subset_seed_policy="each")


def test_presplit_layout_used_as_given(tmp_path):
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        for ci, cls in enumerate(("x", "y")):
            for i in range(n):
                write_image(tmp_path / "d" / split / cls / f"{i}.png", (ci * 200, 50, 50), seed=i)
    manifest = build_manifest(tmp_path / "d")
    assert manifest.layout == "presplit"
    assert manifest.counts() == {"train": {"x": 6, "y": 6}, "val": {"x": 2, "y": 2},
                                 "test": {"x": 3, "y": 3}}


def test_real_ood_folder_loads_alpha_beta(tmp_path):
    """The study's OOD set (alpha/beta, .jpg and .jpeg) loads beside a pool with the same names."""
    for ci, cls in enumerate(("alpha", "beta")):
        for i in range(6):
            write_image(tmp_path / "pool" / cls / f"{i}.jpg", (ci * 200, 80, 80), seed=i)
    roots, manifest = prepare_data(tmp_path / "pool", OOD_TEL)
    assert manifest.ood_kind == "real"
    assert manifest.counts()["ood"] == {"alpha": 31, "beta": 34}
    assert any(e.path.endswith(".jpeg") for e in manifest.split_entries("ood"))
    data = load_trial_data(manifest, roots)
    assert len(data.ood) == 65 and data.ood.images[0].mode == "RGB"


def test_ood_class_mismatch_is_a_clear_error(make_pool):
    pool = make_pool({"ants": 6, "bees": 6})
    with pytest.raises(DataError, match=r"do not match the training classes"):
        build_manifest(pool, OOD_TEL)


def test_bad_files_listed_together_or_skipped(make_pool):
    pool = make_pool({"a": 8, "b": 8})
    (pool / "a" / "broken.jpg").write_bytes(b"not really a jpeg")
    (pool / "b" / "empty.png").write_bytes(b"")
    jpg = (pool / "a" / "img_001.jpg").read_bytes()
    (pool / "b" / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    with pytest.raises(DataError) as info:
        build_manifest(pool)
    message = str(info.value)
    for name in ("broken.jpg", "empty.png", "truncated.jpg"):
        assert name in message
    assert "--skip-bad-images" in message
    manifest = build_manifest(pool, skip_bad=True)
    assert sorted(s["path"].rsplit("/", 1)[-1] for s in manifest.skipped) == [
        "broken.jpg", "empty.png", "truncated.jpg"]
    assert len(manifest.entries) == 16


def test_palette_image_decodes_to_rgb():
    img = decode_pil(HYMENOPTERA / "train" / "ants" / "imageNotFound.gif")
    assert img.mode == "RGB"


def test_embedded_demo_pool_and_shifted_ood():
    root, manifest = demo_manifest(HYMENOPTERA)
    counts = manifest.counts()
    pool_totals = {c: sum(counts[s][c] for s in ("train", "val", "test")) for c in POOL_CAPS}
    assert pool_totals == POOL_CAPS
    assert sum(counts["ood"].values()) == 398 - sum(POOL_CAPS.values())
    assert manifest.ood_kind.startswith("synthetic shift")
    assert demo_manifest(HYMENOPTERA)[1].to_json() == manifest.to_json()


def test_synthetic_shift_is_seeded_and_uses_every_corruption():
    img = decode_pil(HYMENOPTERA / "val" / "bees" / "10870992_eebeeb3a12.jpg")
    a = torch.tensor(list(apply_shift(img, 0, "k1").getdata()))
    b = torch.tensor(list(apply_shift(img, 0, "k1").getdata()))
    assert torch.equal(a, b)
    assert {corruption_of(0, f"img{i}") for i in range(40)} == set(CORRUPTIONS)


def test_images_are_decoded_once_to_rgb_and_checked_against_the_manifest(make_pool):
    pool = make_pool({"a": 5, "b": 5})
    manifest = build_manifest(pool)
    data = load_trial_data(manifest, DataRoots(str(pool)))
    assert all(img.mode == "RGB" for img in data.train.images)
    assert data.train.labels.dtype == torch.long and len(data.train) == len(data.train.paths)
    changed = pool / manifest.split_entries("train")[0].path
    write_image(changed, (1, 2, 3), seed=42)
    with pytest.raises(DataError, match="content changed after the split manifest was built"):
        load_trial_data(manifest, DataRoots(str(pool)))


def test_manifest_read_back_feeds_images_in_the_same_order(tmp_path):
    """Sweep trials read the manifest from JSON; the CLI uses the one it built. Both must give
    the same image order, or one seed shuffles different batches in the two entry points."""
    root, built = demo_manifest(HYMENOPTERA)
    built.save(tmp_path / "m.json")
    loaded = Manifest.load(tmp_path / "m.json")
    roots = DataRoots(str(root))
    for split in ("train", "val", "test", "ood"):
        assert [e.path for e in built.split_entries(split)] == [
            e.path for e in loaded.split_entries(split)]
    assert load_trial_data(built, roots).train.paths == load_trial_data(loaded, roots).train.paths
