"""Messy user folders: every case is either handled correctly or refused with a message that names
the path and the fix. All files are generated here, in temporary folders.

Most checks call trainables.data in-process (fast); two run the real CLI in a subprocess to prove
that users see one "error: ..." line and exit status 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
import unicodedata
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import PROJECT_ROOT, write_image
from trainables.data.dataset import load_trial_data
from trainables.data.demo import prepare_data
from trainables.data.folders import build_manifest
from trainables.data.images import MAX_SHORT_SIDE, decode_pil
from trainables.data.manifest import DataRoots, select_train
from trainables.errors import DataError
from trainables.presets import PRESETS
from trainables.results import tables as results

RED, BLUE = (200, 40, 40), (40, 40, 200)


def pool_of(root: Path, counts: dict[str, int], ext: str = ".jpg") -> Path:
    """A valid pool: `counts[class]` small noisy images per class, one colour per class."""
    colours = [RED, BLUE, (40, 200, 40), (200, 200, 40)]
    for ci, (cls, n) in enumerate(sorted(counts.items())):
        for i in range(n):
            write_image(root / cls / f"img_{i:03d}{ext}", colours[ci % 4], seed=i)
    return root


def jpeg_bytes(size: tuple[int, int] = (48, 40)) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", size, RED).save(buf, "JPEG")
    return buf.getvalue()


def png16_rgb(arr: np.ndarray) -> bytes:
    """A 48-bit (16 bits per channel) RGB PNG, written by hand: Pillow cannot write one."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) +
            chunk(b"IEND", b""))


# ------------------------------------------------------------------- broken or wrong files
def _truncated(p: Path) -> None:
    data = jpeg_bytes((120, 90))
    p.write_bytes(data[: len(data) // 2])


def _zero_bytes(p: Path) -> None:
    p.write_bytes(b"")


def _text_as_jpg(p: Path) -> None:
    p.write_text("these are my notes, not a photo\n")


def _html_as_jpg(p: Path) -> None:
    """What a failed web download saves under the image's name."""
    p.write_text("<!doctype html><html><body>403 Forbidden</body></html>")


def _broken_symlink(p: Path) -> None:
    p.symlink_to(p.parent / "gone" / "missing.jpg")


BROKEN: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated_jpeg": (_truncated, "cannot be decoded"),
    "zero_byte": (_zero_bytes, "empty file"),
    "text_named_jpg": (_text_as_jpg, "not an image"),
    "html_named_jpg": (_html_as_jpg, "not an image"),
    "broken_symlink": (_broken_symlink, "broken symbolic link"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_file_is_named_with_the_fix_or_skipped(case, tmp_path):
    pool = pool_of(tmp_path / "pool", {"a": 6, "b": 6})
    make, reason = BROKEN[case]
    bad = pool / "a" / "photo_bad.jpg"
    make(bad)
    with pytest.raises(DataError) as info:
        build_manifest(pool)
    message = str(info.value)
    assert str(bad) in message and reason in message
    assert "--skip-bad-images" in message and "Fix:" in message
    skipped = build_manifest(pool, skip_bad=True)
    assert [s["path"] for s in skipped.skipped] == [str(bad)]
    assert reason in skipped.skipped[0]["reason"]
    assert "a/photo_bad.jpg" not in {e.path for e in skipped.entries}
    assert len(skipped.entries) == 12


def test_skipping_bad_files_below_the_split_minimum_is_an_error(tmp_path):
    pool = pool_of(tmp_path / "pool", {"a": 5, "b": 6})
    (pool / "a" / "img_000.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"'a' has 4.*at least 5"):
        build_manifest(pool, skip_bad=True)


def test_unreadable_file_in_a_presplit_split_is_an_error_after_skipping(tmp_path):
    root = tmp_path / "d"
    for split, n in (("train", 3), ("val", 1), ("test", 1)):
        pool_of(root / split, {"x": n, "y": n})
    (root / "val" / "y" / "img_000.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"no readable images left in val/y"):
        build_manifest(root, skip_bad=True)


STRAY: dict[str, Callable[[Path], None]] = {
    ".DS_Store": lambda pool: (pool / "a" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1"),
    "Thumbs.db": lambda pool: (pool / "b" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" * 8),
    "desktop.ini": lambda pool: (pool / "b" / "desktop.ini").write_text("[.ShellClassInfo]\n"),
    "notes.txt": lambda pool: (pool / "a" / "notes.txt").write_text("shot on a phone\n"),
    "appledouble": lambda pool: (pool / "a" / "._img_000.jpg").write_bytes(b"\x00\x05\x16\x07"),
    "__MACOSX_folder": lambda pool: (pool / "__MACOSX" / "a").mkdir(parents=True)
    or (pool / "__MACOSX" / "a" / "._img_000.jpg").write_bytes(b"\x00\x05\x16\x07"),
    "hidden_folder": lambda pool: (pool / ".ipynb_checkpoints").mkdir(),
    "readme_at_root": lambda pool: (pool / "README.md").write_text("# my photos\n"),
}


@pytest.mark.parametrize("case", sorted(STRAY))
def test_stray_files_are_ignored_and_change_nothing(case, tmp_path):
    """The manifest with the stray file is byte-identical to the one without: same split,
    same hash, so a sweep over it resumes and compares as the same data."""
    pool = pool_of(tmp_path / "pool", {"a": 6, "b": 6})
    clean = build_manifest(pool)
    STRAY[case](pool)
    messy = build_manifest(pool)
    assert messy.skipped == [] and messy.classes == ["a", "b"]
    assert messy.to_json() == clean.to_json()


# ----------------------------------------------------------------- unusual image formats
def _save(mode: str, colour, fmt: str = "PNG", **kw) -> Callable[[Path], None]:
    def make(p: Path) -> None:
        Image.new(mode, (30, 20), colour).save(p, fmt, **kw)
    return make


def _palette(transparent: bool) -> Callable[[Path], None]:
    def make(p: Path) -> None:
        img = Image.new("P", (30, 20), 1 if transparent else 0)
        img.putpalette([200, 40, 40, 0, 255, 0] + [0] * 762)
        img.save(p, "PNG", **({"transparency": 1} if transparent else {}))
    return make


def _gray16(value: int) -> Callable[[Path], None]:
    def make(p: Path) -> None:
        Image.fromarray(np.full((20, 30), value, np.uint16)).save(p, "PNG")
        assert Image.open(p).mode.startswith("I"), "expected a 16-bit grayscale PNG"
    return make


def _rgb48(p: Path) -> None:
    arr = np.zeros((20, 30, 3), np.uint16)
    arr[..., 0], arr[..., 1], arr[..., 2] = 65535, 32896, 0
    p.write_bytes(png16_rgb(arr))


def _png_named_jpg(p: Path) -> None:
    Image.new("RGB", (30, 20), RED).save(p, "PNG")


# name -> (file name, writer, expected RGB of the decoded pixel)
FORMATS: dict[str, tuple[str, Callable[[Path], None], tuple[int, int, int]]] = {
    "grayscale_L": ("g.png", _save("L", 100), (100, 100, 100)),
    "grayscale_jpeg": ("g.jpg", _save("L", 100, "JPEG"), (100, 100, 100)),
    "bilevel_1bit": ("bw.png", _save("1", 1), (255, 255, 255)),
    "rgba_opaque": ("o.png", _save("RGBA", (200, 40, 40, 255)), RED),
    "rgba_transparent_on_white": ("t.png", _save("RGBA", (200, 40, 40, 0)), (255, 255, 255)),
    "gray_alpha_LA": ("la.png", _save("LA", (100, 255)), (100, 100, 100)),
    "cmyk_jpeg": ("c.jpg", _save("CMYK", (0, 255, 255, 0), "JPEG"), (255, 0, 0)),
    "gray_16bit_png": ("g16.png", _gray16(128 * 257), (128, 128, 128)),
    "gray_16bit_png_dark": ("g16d.png", _gray16(2 * 257), (2, 2, 2)),
    "rgb_48bit_png": ("rgb48.png", _rgb48, (255, 128, 0)),
    "palette_png": ("p.png", _palette(False), RED),
    "palette_transparent_png": ("pt.png", _palette(True), (255, 255, 255)),
    "palette_gif": ("p.gif", _save("RGB", RED, "GIF"), RED),
    "tiff": ("t.tif", _save("RGB", RED, "TIFF"), RED),
    "webp": ("w.webp", _save("RGB", RED, "WEBP", lossless=True), RED),
    "bmp": ("b.bmp", _save("RGB", RED, "BMP"), RED),
    "png_named_jpg": ("wrong_ext.jpg", _png_named_jpg, RED),
}


@pytest.mark.parametrize("case", sorted(FORMATS))
def test_unusual_format_decodes_to_8bit_rgb(case, tmp_path):
    name, make, expected = FORMATS[case]
    pool = pool_of(tmp_path / "pool", {"a": 6, "b": 6})
    path = pool / "a" / name
    make(path)
    img = decode_pil(path)
    assert img.mode == "RGB" and img.size == (30, 20)
    pixel = np.asarray(img)[10, 15].astype(int)
    assert np.abs(pixel - np.array(expected)).max() <= 6, (pixel, expected)
    # ... and it travels through the manifest into the trial's uint8 CHW tensors
    manifest = build_manifest(pool)
    assert f"a/{name}" in {e.path for e in manifest.entries} and manifest.skipped == []
    data = load_trial_data(manifest, DataRoots(str(pool)))
    for split in (data.train, data.val, data.test):
        for i in range(len(split)):
            t = split.image(i)
            assert t.dtype.is_floating_point is False and t.shape[0] == 3


# EXIF orientation -> how the stored pixels map to what a viewer shows (EXIF 2.32, tag 0x0112),
# written with numpy independently of Pillow's own table.
EXIF_DISPLAY: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored horizontally
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1, :],  # mirrored vertically
    5: lambda a: a.swapaxes(0, 1),  # transposed
    6: lambda a: np.rot90(a, k=-1),  # phone held upright: rotate 90 clockwise to view
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # transverse
    8: lambda a: np.rot90(a, k=1),  # rotate 90 counter-clockwise to view
}


def _quadrants(w: int = 64, h: int = 32) -> np.ndarray:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 2, : w // 2] = (220, 30, 30)
    arr[: h // 2, w // 2:] = (30, 220, 30)
    arr[h // 2:, : w // 2] = (30, 30, 220)
    arr[h // 2:, w // 2:] = (230, 230, 30)
    return arr


@pytest.mark.parametrize("orientation", sorted(EXIF_DISPLAY))
def test_exif_rotated_photo_decodes_as_displayed(orientation, tmp_path):
    stored = _quadrants()
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"phone_{orientation}.jpg"
    Image.fromarray(stored).save(path, "JPEG", quality=95, exif=exif.tobytes())
    expected = EXIF_DISPLAY[orientation](stored)
    decoded = np.asarray(decode_pil(path))
    assert decoded.shape == expected.shape
    assert np.abs(decoded.astype(int) - expected.astype(int)).mean() < 8


def test_exif_rotation_reaches_the_trial_tensors(tmp_path):
    pool = pool_of(tmp_path / "pool", {"a": 5, "b": 5})
    exif = Image.Exif()
    exif[0x0112] = 6
    for i in range(5):  # every image of class a is a portrait photo stored landscape
        pixels = _quadrants()
        pixels[:8, :8] = 60 * i  # five different photos: identical files would be set aside
        Image.fromarray(pixels).save(pool / "a" / f"img_{i:03d}.jpg", "JPEG",
                                           exif=exif.tobytes())
    manifest = build_manifest(pool)
    data = load_trial_data(manifest, DataRoots(str(pool)))
    shapes = {tuple(split.image(i).shape) for split in (data.train, data.val, data.test)
              for i in range(len(split)) if manifest.classes[int(split.labels[i])] == "a"}
    assert shapes == {(3, 64, 32)}  # C, H, W: upright, 32 wide and 64 tall


def test_very_large_image_is_downscaled_once_at_decode(tmp_path):
    pool = pool_of(tmp_path / "pool", {"a": 6, "b": 6})
    big = pool / "a" / "huge.jpg"
    ramp = np.linspace(0, 255, 8000, dtype=np.uint8)
    Image.fromarray(np.stack([np.broadcast_to(ramp, (8000, 8000))] * 3, axis=-1)).save(big,
                                                                                       "JPEG")
    img = decode_pil(big)
    assert img.size == (MAX_SHORT_SIDE, MAX_SHORT_SIDE)
    row = np.asarray(img)[MAX_SHORT_SIDE // 2, :, 0].astype(int)
    assert row[0] < 10 and row[-1] > 245 and np.all(np.diff(row) >= -2)  # still the same ramp
    manifest = build_manifest(pool)
    assert "a/huge.jpg" in {e.path for e in manifest.entries}


def test_decompression_bomb_is_refused_by_name(tmp_path):
    pool = pool_of(tmp_path / "pool", {"a": 6, "b": 6})
    bomb = pool / "b" / "bomb.png"
    Image.new("1", (14000, 14000)).save(bomb)  # 196 Mpx, a few kB on disk
    with pytest.raises(DataError) as info:
        build_manifest(pool)
    assert str(bomb) in str(info.value) and "decompression bomb" in str(info.value)


# ------------------------------------------------------------------ awkward folder layouts
def test_empty_class_folder_is_named_with_the_fix(tmp_path):
    pool = pool_of(tmp_path / "pool", {"a": 6, "b": 6})
    (pool / "wasps").mkdir()
    (pool / "wasps" / ".DS_Store").write_bytes(b"x")  # only a stray file: still empty
    with pytest.raises(DataError) as info:
        build_manifest(pool)
    assert str(pool / "wasps") in str(info.value)
    assert "add images" in str(info.value) and "remove the folder" in str(info.value)


def test_single_class_is_refused(tmp_path):
    pool = pool_of(tmp_path / "pool", {"ants": 8})
    with pytest.raises(DataError, match=r"only one class folder \('ants'\).*at least two"):
        build_manifest(pool)


def test_classes_one_level_down_suggest_the_right_folder(tmp_path):
    """Unzipping often adds a wrapper folder: pool/dataset/{ants,bees}."""
    pool = pool_of(tmp_path / "pool" / "dataset", {"ants": 6, "bees": 6}).parent
    with pytest.raises(DataError) as info:
        build_manifest(pool)
    assert f"pass --data {pool / 'dataset'}" in str(info.value)


def test_images_without_class_folders_are_refused(tmp_path):
    root = tmp_path / "flat"
    for i in range(6):
        write_image(root / f"{i}.jpg", RED, seed=i)
    with pytest.raises(DataError, match=r"no class subfolders; expected .*/<class name>/<images>"):
        build_manifest(root)


@pytest.mark.parametrize("what", ["missing", "a_file"])
def test_data_path_that_is_not_a_folder(what, tmp_path):
    path = tmp_path / "photos"
    if what == "a_file":
        path.write_text("x")
    with pytest.raises(DataError, match=rf"--data folder {path} does not exist or is not a folder"):
        build_manifest(path)


def test_the_tutorials_layout_splits_val_into_validation_and_test(tmp_path):
    """The PyTorch tutorial's own layout has train/ and val/ but no test/: val/ is split per
    class, half validation, half test, by the split seed."""
    root = tmp_path / "d"
    pool_of(root / "train", {"ants": 5, "bees": 5})
    pool_of(root / "val", {"ants": 4, "bees": 5})
    (root / "__MACOSX").mkdir()  # a stray folder must not turn train/ and val/ into classes
    manifest = build_manifest(root)
    counts = manifest.counts()
    assert counts["train"] == {"ants": 5, "bees": 5}
    assert counts["val"] == {"ants": 2, "bees": 3} and counts["test"] == {"ants": 2, "bees": 2}
    val_test = {e.path for e in manifest.entries if e.split in ("val", "test")}
    assert all(p.startswith("val/") for p in val_test) and len(val_test) == 9
    again, other = build_manifest(root), build_manifest(root, split_seed=1)
    assert again.hash == manifest.hash
    assert other.hash != manifest.hash  # another seed, another val/test split
    assert manifest.layout == "train+val"


def test_the_tutorials_layout_refuses_a_class_too_small_to_split(tmp_path):
    root = tmp_path / "d"
    pool_of(root / "train", {"ants": 5, "bees": 5})
    pool_of(root / "val", {"ants": 1, "bees": 4})
    with pytest.raises(DataError, match=r"val/ants has 1 image\(s\).*at least 2 per class"):
        build_manifest(root)
    one = tmp_path / "one"
    pool_of(one / "train", {"ants": 5})
    pool_of(one / "val", {"ants": 4})
    with pytest.raises(DataError, match=r"only one class folder"):
        build_manifest(one)


def test_both_clis_say_how_the_tutorials_layout_was_split(tmp_path, sweep_main, capsys, caplog):
    from trainables.train import main as train_main

    root = tmp_path / "d"
    pool_of(root / "train", {"ants": 5, "bees": 5})
    pool_of(root / "val", {"ants": 4, "bees": 4})
    said = "val/ split per class into validation and test (half each, seeded by --split-seed 3)"
    assert train_main(["--arch", "mobilenet_v2", "--regime", "scratch", "--data", str(root),
                       "--split-seed", "3", "--dry-run"]) == 0
    assert said in capsys.readouterr().out
    caplog.set_level("INFO")
    assert sweep_main(["--preset", "smoke", "--regimes", "scratch", "--data", str(root),
                       "--split-seed", "3", "--storage", str(tmp_path / "runs"), "--dry-run"]) == 0
    assert "train 10, val 4, test 4, ood 0 images (" + said in caplog.text


def test_half_presplit_folder_names_the_missing_split(tmp_path):
    root = tmp_path / "d"
    for split in ("train", "test"):
        pool_of(root / split, {"ants": 5, "bees": 5})
    with pytest.raises(DataError, match=r"looks pre-split but lacks val/"):
        build_manifest(root)


def test_presplit_class_mismatch_is_named(tmp_path):
    root = tmp_path / "d"
    pool_of(root / "train", {"ants": 3, "bees": 3})
    pool_of(root / "val", {"ants": 1, "bees": 1})
    pool_of(root / "test", {"ants": 1, "wasps": 1})
    with pytest.raises(DataError, match=r"differ between train/ .* and test/ .*same class names"):
        build_manifest(root)


def test_nested_folders_belong_to_their_top_level_class(tmp_path):
    pool = tmp_path / "pool"
    for i in range(3):
        write_image(pool / "a" / "2023" / "june" / f"{i}.jpg", RED, seed=i)
        write_image(pool / "a" / f"{i}.jpg", RED, seed=10 + i)
        write_image(pool / "b" / "batch 1" / f"{i}.png", BLUE, seed=i)
        write_image(pool / "b" / "batch 2" / f"{i}.png", BLUE, seed=10 + i)
    manifest = build_manifest(pool)
    assert manifest.classes == ["a", "b"]
    by_label = {c: {e.path for e in manifest.entries if e.label == c} for c in manifest.classes}
    assert "a/2023/june/0.jpg" in by_label["a"] and "b/batch 2/2.png" in by_label["b"]
    assert len(by_label["a"]) == len(by_label["b"]) == 6


UNICODE_CLASSES = ["honey bee", "fourmi rouge (café)", "蜜蜂", "Ärger ✓"]


def test_class_names_with_spaces_and_non_ascii_train_end_to_end(tmp_path):
    """Names travel unchanged through the manifest, a real (smoke) trial and the Parquet tables."""
    pool = pool_of(tmp_path / "pool", {c: 5 for c in UNICODE_CLASSES[:2]})
    ood = pool_of(tmp_path / "ood", {c: 2 for c in UNICODE_CLASSES[:2]})
    roots, manifest = prepare_data(pool, ood)
    assert manifest.classes == sorted(UNICODE_CLASSES[:2])
    manifest.save(tmp_path / "m.json")
    assert type(manifest).load(tmp_path / "m.json").hash == manifest.hash

    from trainables.train import run_trial

    config = PRESETS["smoke"].trial("mobilenet_v2", "scratch", 0, "2", epochs=1, batch_size=4)
    out = str(tmp_path / "out")
    row = run_trial(config, manifest, roots, out)
    assert row["status"] == "ok"
    trials = results.read_table(out, "trials").to_pylist()
    assert json.loads(trials[0]["classes_json"]) == manifest.classes
    preds = results.read_table(out, "predictions").to_pylist()
    assert {p["true_label"] for p in preds} == set(manifest.classes)
    assert {p["path"].split("/")[0] for p in preds} == set(UNICODE_CLASSES[:2])


@pytest.mark.parametrize("name", UNICODE_CLASSES[2:])
def test_more_non_ascii_class_names(name, tmp_path):
    pool = pool_of(tmp_path / "pool", {name: 5, "other": 5})
    manifest = build_manifest(pool)
    assert name in manifest.classes
    assert len(load_trial_data(manifest, DataRoots(str(pool))).train) == 6


def test_unicode_normalization_differences_still_match(tmp_path):
    """macOS writes "café" decomposed (NFD); typed on Linux it is composed (NFC)."""
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    assert nfc != nfd
    pool = pool_of(tmp_path / "pool", {nfc: 5, "thé": 5})
    ood = pool_of(tmp_path / "ood", {nfd: 2, "thé": 2})
    roots, manifest = prepare_data(pool, ood)
    assert manifest.classes == sorted([nfc, "thé"])
    data = load_trial_data(manifest, roots)
    assert len(data.ood) == 4


def test_symlinked_files_and_folders_are_followed_once(tmp_path):
    store = pool_of(tmp_path / "store", {"a": 5, "b": 8, "c": 8})
    pool = tmp_path / "pool"
    (pool / "a").mkdir(parents=True)
    for i in range(5):  # a: every file a symlink
        (pool / "a" / f"link_{i}.jpg").symlink_to(store / "a" / f"img_{i:03d}.jpg")
    (pool / "b").symlink_to(store / "b")  # b: the class folder itself is a link
    (pool / "a" / "more").symlink_to(tmp_path / "store" / "c")  # a linked sub-folder...
    (pool / "a" / "loop").symlink_to(pool)  # ... and a link back up the tree
    manifest = build_manifest(pool)
    a = sorted(e.path for e in manifest.entries if e.label == "a")
    b = [e for e in manifest.entries if e.label == "b"]
    assert len(a) == 5 + 8 and all(p.startswith(("a/link_", "a/more/")) for p in a)
    assert len(b) == 8
    # contents are hashed through the link: the same bytes give the same hash
    link_hash = {e.sha256 for e in manifest.entries if e.path == "a/link_0.jpg"}
    assert link_hash == {e.sha256 for e in build_manifest(store).entries
                         if e.path == "a/img_000.jpg"}
    data = load_trial_data(manifest, DataRoots(str(pool)))
    assert len(data.train) + len(data.val) + len(data.test) == 21


# --------------------------------------------------------------- data that does not fit
def test_ood_class_names_that_differ_are_named_with_the_fix(tmp_path):
    pool = pool_of(tmp_path / "pool", {"ants": 5, "bees": 5})
    ood = pool_of(tmp_path / "ood", {"Ants": 2, "wasps": 2})
    with pytest.raises(DataError) as info:
        build_manifest(pool, ood)
    message = str(info.value)
    assert str(ood) in message and "['Ants', 'wasps']" in message and "['ants', 'bees']" in message
    assert "rename the OOD class folders" in message


@pytest.mark.parametrize("per_class", [1, 3, 4])
def test_too_few_images_for_a_60_20_20_split(per_class, tmp_path):
    pool = pool_of(tmp_path / "pool", {"a": per_class, "b": 9})
    with pytest.raises(DataError) as info:
        build_manifest(pool)
    message = str(info.value)
    assert f"'a' has {per_class}" in message and "'b'" not in message
    assert "at least 5" in message and "pre-split folder" in message and str(pool) in message


@pytest.mark.parametrize("per_class", range(5, 41))
def test_every_split_gets_every_class_from_five_images_up(per_class, tmp_path):
    from trainables.data.folders import stratified_split
    from trainables.data.manifest import SPLITS

    files = [tmp_path / f"{i}.jpg" for i in range(per_class)]
    parts = stratified_split(files, random.Random(0))
    assert all(len(parts[s]) >= 1 for s in SPLITS)
    assert sorted(sum((parts[s] for s in SPLITS), [])) == sorted(files)


@pytest.mark.parametrize("size", ["4", "100"])
def test_train_size_larger_than_the_train_split(size, tmp_path):
    pool = pool_of(tmp_path / "pool", {"a": 5, "b": 9})  # train split: a 3, b 5
    roots, manifest = prepare_data(pool)
    with pytest.raises(DataError) as info:
        load_trial_data(manifest, roots, size)
    assert "class 'a' has only 3 training images" in str(info.value)
    assert "at most 3 or a fraction" in str(info.value)
    fraction = select_train(manifest.split_entries("train"), manifest.classes, "0.5", 0)
    assert {e.label for e in fraction} == {"a", "b"}  # the suggested fix works


# ------------------------------------------------------------------- as a user sees it
def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run([sys.executable, "-m", "trainables.train", *args], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def test_cli_lists_every_bad_file_without_a_traceback(tmp_path):
    pool = pool_of(tmp_path / "pool", {"a": 6, "b": 6})
    _truncated(pool / "a" / "cut.jpg")
    _zero_bytes(pool / "b" / "empty.jpg")
    out = tmp_path / "out"
    proc = _cli("--arch", "mobilenet_v2", "--regime", "scratch", "--preset", "smoke",
                "--data", str(pool), "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: 2 file(s) cannot be read as images")
    assert str(pool / "a" / "cut.jpg") in proc.stderr and str(pool / "b" / "empty.jpg") in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (out / "trials").exists()


def test_cli_train_size_too_large_fails_before_any_trial_row(tmp_path):
    pool = pool_of(tmp_path / "pool", {"a": 5, "b": 5})
    out = tmp_path / "out"
    proc = _cli("--arch", "mobilenet_v2", "--regime", "scratch", "--preset", "smoke",
                "--data", str(pool), "--train-size", "50", "--out", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "class 'a' has only 3 training images" in proc.stderr
    assert not (out / "trials").exists(), "a refused option must not leave a failed trial row"


# ------------------------------------------------- layouts that labelling tools export (issue 11)
def presplit_of(root: Path, names: tuple[str, str, str], counts=(4, 2, 2)) -> Path:
    for split, n in zip(names, counts, strict=True):
        pool_of(root / split, {"ants": n, "bees": n})
    return root


@pytest.mark.parametrize("names", [("train", "valid", "test"), ("Train", "Val", "Test"),
                                   ("training", "validation", "testing"),
                                   ("TRAIN", "dev", "test_set"), ("train_images", "valset", "tst")])
def test_split_folder_spellings_are_read_as_a_presplit_folder(names, tmp_path):
    root = presplit_of(tmp_path / "d", names)
    manifest = build_manifest(root)
    assert manifest.layout == "presplit" and manifest.classes == ["ants", "bees"]
    assert manifest.counts() == {"train": {"ants": 4, "bees": 4}, "val": {"ants": 2, "bees": 2},
                                 "test": {"ants": 2, "bees": 2}}
    assert {e.path.split("/")[0] for e in manifest.entries} == set(names)  # paths as on disk


def test_split_names_as_classes_are_refused_with_the_fix(tmp_path):
    """`train/ test/ cats/`: neither a pre-split folder nor a pool of real classes."""
    root = tmp_path / "d"
    pool_of(root, {"Train": 5, "Test": 5, "cats": 5})
    with pytest.raises(DataError) as info:
        build_manifest(root)
    message = str(info.value)
    assert "Test/, Train/" in message or "Train/, Test/" in message
    assert "named like data splits" in message and "valid" in message and "rename" in message


def test_two_folders_for_one_split_are_refused(tmp_path):
    root = presplit_of(tmp_path / "d", ("train", "val", "test"))
    pool_of(root / "valid", {"ants": 2, "bees": 2})
    with pytest.raises(DataError, match=r"more than one folder for a split \(val: val/, valid/\)"):
        build_manifest(root)


def test_folders_beside_the_splits_are_named_in_a_warning(tmp_path):
    root = presplit_of(tmp_path / "d", ("train", "val", "test"))
    pool_of(root / "extra", {"ants": 3})
    manifest = build_manifest(root)
    assert any("1 folder(s) beside the train/val/test folders are not used" in w and "extra" in w
               for w in manifest.warnings), manifest.warnings


def test_split_named_subfolders_inside_classes_are_named_in_a_warning(tmp_path):
    root = tmp_path / "d"
    for cls in ("ants", "bees"):
        pool_of(root / cls, {"train": 4, "test": 2})
    manifest = build_manifest(root)
    assert manifest.layout == "pool" and manifest.classes == ["ants", "bees"]
    assert any("2 class folder(s) hold split-named subfolders" in w for w in manifest.warnings)


# ------------------------------------------------------------------------- leakage
def test_the_same_image_in_train_and_test_is_refused_unless_allowed(tmp_path):
    root = presplit_of(tmp_path / "d", ("train", "val", "test"))
    copy = root / "test" / "ants" / "copy of img_000.jpg"
    copy.write_bytes((root / "train" / "ants" / "img_000.jpg").read_bytes())
    with pytest.raises(DataError) as info:
        build_manifest(root)
    message = str(info.value)
    assert "1 image(s) are both in train and in val, test or OOD" in message
    assert "train/ants/img_000.jpg" in message and "test/ants/copy of img_000.jpg" in message
    assert "--allow-duplicates" in message
    manifest = build_manifest(root, allow_duplicates=True)
    assert len(manifest.duplicates) == 1
    assert {f["split"] for f in manifest.duplicates[0]["files"]} == {"train", "test"}
    assert any("both in train and in an evaluation split" in w for w in manifest.warnings)
    assert '"duplicates"' in manifest.to_json()


def test_a_folder_without_duplicates_keeps_its_manifest_bytes(tmp_path):
    manifest = build_manifest(presplit_of(tmp_path / "d", ("train", "val", "test")))
    assert manifest.duplicates == [] and '"duplicates"' not in manifest.to_json()


def test_copies_within_a_pool_class_are_set_aside_so_none_straddles_the_split(tmp_path):
    pool = pool_of(tmp_path / "pool", {"a": 6, "b": 6})
    for i in range(3):
        (pool / "a" / f"dup_{i}.jpg").write_bytes((pool / "a" / "img_000.jpg").read_bytes())
    manifest = build_manifest(pool)
    used = [e for e in manifest.entries if e.sha256 == manifest.duplicates[0]["sha256"]]
    assert len(used) == 1, "one copy of the image is used"
    unused = [f for f in manifest.duplicates[0]["files"] if f["split"] == "unused"]
    assert len(unused) == 3
    assert any("3 extra copy(ies)" in w for w in manifest.warnings), manifest.warnings
    allowed = build_manifest(pool, allow_duplicates=True)  # kept as given, and recorded
    assert sum(e.sha256 == manifest.duplicates[0]["sha256"] for e in allowed.entries) == 4


def test_an_image_in_two_classes_is_named(tmp_path):
    pool = pool_of(tmp_path / "pool", {"a": 6, "b": 6})
    (pool / "b" / "also_a.jpg").write_bytes((pool / "a" / "img_000.jpg").read_bytes())
    manifest = build_manifest(pool, allow_duplicates=True)
    assert any("1 image(s) are in two or more classes" in w and "also_a.jpg" in w
               for w in manifest.warnings), manifest.warnings
    assert {f["label"] for f in manifest.duplicates[0]["files"]} == {"a", "b"}


def test_a_class_folder_linking_to_another_class_is_refused(tmp_path):
    pool = pool_of(tmp_path / "pool", {"ants": 8, "bees": 8})
    (pool / "wasps").symlink_to(pool / "bees")
    with pytest.raises(DataError) as info:
        build_manifest(pool)
    assert "class folder 'bees' and 'wasps' are the same folder (a link)" in str(info.value)


@pytest.mark.parametrize("where", ["same", "inside"])
def test_ood_equal_to_or_inside_data_is_refused(where, tmp_path):
    pool = pool_of(tmp_path / "pool", {"ants": 6, "bees": 6})
    if where == "same":
        ood = pool
        needle = "is the same folder as --data"
    else:
        ood = tmp_path / "pool" / "bees" / "ood"
        for cls in ("ants", "bees"):
            (ood / cls).mkdir(parents=True)
            for i in range(2):
                (ood / cls / f"{i}.jpg").write_bytes((pool / cls / f"img_{i:03d}.jpg").read_bytes())
        needle = "overlap (one is inside the other)"
    with pytest.raises(DataError) as info:
        build_manifest(pool, ood)
    assert "are both in train and in val, test or OOD" in str(info.value)
    assert needle in str(info.value)


# ------------------------------------------------------------- files the scan does not use
def test_every_file_left_out_is_named_in_a_warning_with_its_count(tmp_path):
    pool = pool_of(tmp_path / "pool", {"ants": 6, "bees": 6})
    write_image(pool / "ants" / "phone.jfif", RED, seed=50)  # used: PIL reads it, as JPEG
    Image.new("RGB", (16, 16), RED).save(pool / "ants" / "icon.ico")
    Image.new("RGB", (16, 16), RED).save(pool / "bees" / "scan.pcx")
    (pool / "bees" / "IMG_0042.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (pool / "bees" / "download").write_bytes((pool / "bees" / "img_000.jpg").read_bytes())
    for i in range(2):
        write_image(pool / f"loose_{i}.jpg", RED, seed=60 + i)
    (pool / "bees.zip").write_bytes(b"PK\x03\x04")
    (pool / "notes.txt").write_text("not an image, not counted\n")
    manifest = build_manifest(pool)
    assert "ants/phone.jfif" in {e.path for e in manifest.entries}
    text = "\n".join(manifest.warnings)
    for needle in ("2 file(s) in formats Pillow reads", "icon.ico", "scan.pcx",
                   "1 photo(s) in formats Pillow cannot decode", "IMG_0042.HEIC",
                   "1 file(s) look like images (by their first bytes)", "download",
                   "2 image(s) outside any class folder", "loose_0.jpg",
                   "1 file(s) are named like a class or are archives", "bees.zip"):
        assert needle in text, f"{needle!r} missing from {text}"
    assert "notes.txt" not in text


def test_class_names_that_differ_only_in_case_are_refused(tmp_path):
    pool = pool_of(tmp_path / "pool", {"Cat": 5, "cat": 5, "dog": 5})
    with pytest.raises(DataError, match=r"differ only in case.*'Cat' and 'cat'.*collide on macOS"):
        build_manifest(pool)


def test_an_ood_class_emptied_by_skipping_is_refused(tmp_path):
    pool = pool_of(tmp_path / "pool", {"ants": 5, "bees": 5})
    ood = pool_of(tmp_path / "ood", {"ants": 2})
    (ood / "bees").mkdir()
    _truncated(ood / "bees" / "only.jpg")
    with pytest.raises(DataError, match=r"no readable images left in ood/bees"):
        build_manifest(pool, ood, skip_bad=True)


@pytest.mark.parametrize("size", [(1, 30000), (30000, 1), (21, 1)])
def test_extreme_aspect_ratio_is_refused_by_name(size, tmp_path):
    pool = pool_of(tmp_path / "pool", {"a": 6, "b": 6})
    strip = pool / "a" / "strip.png"
    Image.new("RGB", size, RED).save(strip)
    with pytest.raises(DataError) as info:
        build_manifest(pool)
    assert f"{strip}: extreme aspect ratio ({size[0]}x{size[1]} px" in str(info.value)
    manifest = build_manifest(pool, skip_bad=True)
    assert [s["path"] for s in manifest.skipped] == [str(strip)]


def test_non_utf8_file_and_folder_names_are_named_without_a_traceback(tmp_path):
    pool = pool_of(tmp_path / "pool", {"a": 6, "b": 6})
    bad = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 bytes from an old Windows zip
    (pool / "a" / bad).write_bytes((pool / "a" / "img_000.jpg").read_bytes() + b"\x00")
    with pytest.raises(DataError) as info:
        build_manifest(pool)
    assert "caf\\xe9.jpg: its name is not valid UTF-8" in str(info.value)
    manifest = build_manifest(pool, skip_bad=True)
    manifest.to_json().encode("utf-8")  # the record itself is valid UTF-8
    assert manifest.skipped[0]["path"].endswith("caf\\xe9.jpg")
    (pool / os.fsdecode(b"\xff\xfe")).mkdir()
    with pytest.raises(DataError, match=r"class folder name\(s\) are not valid UTF-8"):
        build_manifest(pool)
    out = tmp_path / "out"
    proc = _cli("--arch", "mobilenet_v2", "--regime", "scratch", "--preset", "smoke",
                "--data", str(pool), "--out", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "error: --data: class folder name(s) are not valid UTF-8" in proc.stderr
