"""Properties, not lists: every CLI driven with generated option values, and generated folder
trees walked, must end in exit 0 or in one `error: ...` (exit 2), never in a traceback; a
folder either becomes a manifest that accounts for every image file in it, or a DataError.

Runs in-process (an uncaught exception fails the example, and Hypothesis shrinks it to the
smallest failing input). Sizes are small for 2 shared cores: tens of examples per property.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.conftest import write_image
from trainables.archs import ARCHS
from trainables.data.folders import build_manifest
from trainables.data.images import file_hash
from trainables.data.manifest import UNUSED, Manifest, is_leak
from trainables.data.scan import IMAGE_EXTENSIONS, is_stray, split_of
from trainables.errors import DataError

PROPERTY = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])

ODD_NUMBERS = ["nan", "NaN", "inf", "-inf", "-1", "0", "-0", "1e308", "1e-320", "2", "0.5", ".5",
               "02", "1_000", "4294967296", "18446744073709551617", "", " ", "１", "0x10", "3.0"]
ODD_TEXT = ["", " ", "..", ".", "a?b", "a#b", "a%2F", "a/b", "ünïcode", "名前", "a b", "-x", "x\\y",
            "s3://", "nosuch://x", "file:///", os.fsdecode(b"\xff"), "ALL", "all", "none"]


def odd(extra: list[str] | None = None) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(ODD_NUMBERS + ODD_TEXT + (extra or [])),
                     st.text(string.printable, max_size=6))


def _run(main, argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: usage and "error: ...", status 2
            code = exc.code
    return code, err.getvalue()


def assert_clean_end(code: int, err: str, argv: list[str]) -> None:
    assert code in (0, 2), (code, argv, err[-2000:])
    assert "Traceback" not in err, (argv, err[-2000:])
    if code == 2:  # ours: "error: ..." (several problems follow as "  - ..." lines);
        lines = err.strip().splitlines()  # argparse's: "usage: ...", then "prog: error: ..."
        assert any(ln.startswith("error:") or ": error:" in ln for ln in lines), (argv, err[-2000:])


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prop_scratch")


# ------------------------------------------------------------------ the single-trial CLI
@PROPERTY
@given(data=st.data())
def test_train_cli_ends_in_exit_0_or_one_error_line(data, pool, scratch):
    from trainables.train import main

    choice = data.draw
    argv = ["--arch", choice(st.one_of(st.sampled_from(list(ARCHS)), odd())),
            "--regime", choice(st.one_of(st.sampled_from(["finetune", "scratch"]), odd())),
            "--preset", choice(st.sampled_from(["smoke", "paper", "demo", "fast"])),
            "--data", choice(st.sampled_from([str(pool), str(pool / "a"), "/nonexistent", ""])),
            "--out", str(scratch / "out") + choice(st.sampled_from(["", "?x", "#y", "/..", ""])),
            "--dry-run"]
    for flag in ("--seed", "--split-seed", "--train-size", "--threads"):
        if choice(st.booleans()):
            argv += [flag, choice(odd())]
    if choice(st.booleans()):
        key = choice(st.sampled_from(["epochs", "lr", "batch_size", "crop_scale", "bn_mode",
                                      "select_on", "bf16", "seed", "nope", ""]))
        argv += ["--set", f"{key}={choice(odd())}"]
    if choice(st.booleans()):
        argv += ["--cap", f"{choice(st.sampled_from(['a', 'b', 'z']))}={choice(odd())}"]
    code, err = _run(main, argv)
    assert_clean_end(code, err, argv)


# ------------------------------------------------------------------------- the sweep CLI
@PROPERTY
@given(data=st.data())
def test_sweep_cli_ends_in_exit_0_or_one_error_line(data, pool, scratch, torch_home):
    from sweep.run import main

    choice = data.draw
    argv = ["--preset", "smoke", "--data", str(pool), "--storage", str(scratch / "runs"),
            "--dry-run"]
    if choice(st.booleans()):
        argv += ["--archs", *choice(st.lists(st.one_of(st.sampled_from(["mobilenet_v2",
                                                                       "resnet18"]), odd()),
                                             min_size=1, max_size=2))]
    argv += ["--regimes", choice(st.one_of(st.just("scratch"), odd()))]
    for flag in ("--seeds", "--split-seed", "--cpus-per-trial", "--gpus-per-trial",
                 "--gpu-memory-gb", "--max-failures", "--progress-interval", "--name",
                 "--keep-models", "--ood", "--storage"):
        if choice(st.integers(0, 3)) == 0:
            argv += [flag, choice(odd())]
    if choice(st.booleans()):
        argv += ["--train-sizes", *choice(st.lists(odd(["all", "2", "0.5"]), min_size=1,
                                                   max_size=3))]
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code, err = _run(main, argv)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert_clean_end(code, err, argv)


# ------------------------------------------------------------------------------ the report
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    from tests.synthetic import write_synthetic_trial

    root = tmp_path_factory.mktemp("prop_report") / "exp" / "results"
    for seed in range(2):
        for regime in ("finetune", "scratch"):
            write_synthetic_trial(root, "resnet18", regime, seed)
    (root.parent.parent / "a_file").write_text("x")
    return root


@settings(max_examples=12, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_report_cli_ends_in_exit_0_or_one_error_line(data, synthetic):
    from analysis.report import main

    choice = data.draw
    top = synthetic.parent.parent
    results = choice(st.sampled_from([str(synthetic), str(synthetic.parent), str(top),
                                      str(synthetic / "trials"), str(top / "a_file"),
                                      str(top / "missing"), "", "nosuch://x", os.fsdecode(b"\xff")]))
    out = choice(st.sampled_from([str(top / "rep"), str(top / "a_file"), str(top / "a_file" / "x"),
                                  "s3://bucket/rep", str(top / "rep?x#y")]))
    argv = ["--results", results, "--out", out, "--gradcam-n", choice(st.sampled_from(
        ["4", "0", "-1", "1000000000"]))]
    if choice(st.booleans()):
        argv.append("--no-gradcam")
    code, err = _run(main, argv)
    assert_clean_end(code, err, argv)


# -------------------------------------------------------------------- generated folder trees
NAMES = ["ants", "bees", "Ants", "cat", "train", "Valid", "test", "dataset", "ünï", "a b", "x?y",
         "__MACOSX", ".hidden", "Thumbs.db"]
FILES = ["0.jpg", "1.png", "2.jfif", "3.JPG", "4.jpeg", "5.webp", "doc.txt", "6.ico", "img",
         "7.heic", ".DS_Store", "8.gif", "bees.zip"]
KINDS = ["image", "image", "image", "copy", "truncated", "empty", "text", "strip", "link",
         "broken_link"]


def _write(path: Path, kind: str, seed: int, made: list[Path]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        return
    if kind == "copy" and made:
        path.write_bytes(made[seed % len(made)].read_bytes())
    elif kind == "link" and made:
        path.symlink_to(made[seed % len(made)])
    elif kind == "broken_link":
        path.symlink_to(path.parent / "gone.jpg")
    elif kind == "truncated":
        write_image(path.with_suffix(".tmp.jpg"), (90, 90, 90), seed=seed)
        data = path.with_suffix(".tmp.jpg").read_bytes()
        path.with_suffix(".tmp.jpg").unlink()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("not an image\n")
    elif kind == "strip":
        Image.new("RGB", (1, 400), (seed % 255, 0, 0)).save(path, format="PNG")
    else:
        fmt = {".png": "PNG", ".webp": "WEBP", ".gif": "GIF", ".ico": "ICO"}.get(
            path.suffix.lower(), "JPEG")
        write_image(path.with_suffix(".tmp.png"), (40 * (seed % 6), 100, 200 - seed % 200),
                    seed=seed)
        Image.open(path.with_suffix(".tmp.png")).convert("RGB").save(path, format=fmt)
        path.with_suffix(".tmp.png").unlink()
    if path.is_file() and not path.is_symlink():
        made.append(path)  # a source for later copies and links


tree = st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(["", "", "sub"]),
                          st.sampled_from(FILES), st.sampled_from(KINDS), st.integers(0, 999)),
                min_size=0, max_size=40)
common = st.lists(st.tuples(st.sampled_from(["ants", "bees"]), st.just(""),
                            st.sampled_from(["0.jpg", "1.png", "4.jpeg"]), st.just("image"),
                            st.integers(0, 999)), min_size=12, max_size=24)
"""Enough plain images in two classes that many trees become manifests, not errors."""


@PROPERTY
@given(entries=st.builds(lambda a, b: a + b, common, tree), presplit=st.booleans(),
       loose=st.lists(st.sampled_from(FILES), max_size=3),
       skip_bad=st.booleans(), allow=st.booleans())
def test_generated_folder_trees_give_a_manifest_that_accounts_for_every_image_or_an_error(
        entries, presplit, loose, skip_bad, allow):
    with tempfile.TemporaryDirectory(prefix="tree") as tmp:
        root = Path(tmp) / "data"
        made: list[Path] = []
        for i, (cls, sub, name, kind, seed) in enumerate(entries):
            split = ("train", "val", "test")[i % 3] if presplit else ""
            _write(root / split / cls / sub / f"{seed}-{name}", kind, seed, made)
        for name in loose:
            _write(root / name, "image", 7, made)
        root.mkdir(exist_ok=True)
        try:
            manifest = build_manifest(root, skip_bad=skip_bad, allow_duplicates=allow)
        except DataError as exc:
            assert str(exc).strip(), "an error must say what is wrong"
            event(f"DataError: {' '.join(str(exc).split()[:4])}")
            return
        event(f"manifest ({manifest.layout})")
        check_manifest(root, manifest, allow)


def check_manifest(root: Path, manifest: Manifest, allow: bool) -> None:
    assert len(manifest.classes) >= 2
    assert len({c.casefold() for c in manifest.classes}) == len(manifest.classes)
    if manifest.layout == "pool":
        assert not any(split_of(c) for c in manifest.classes)
    text = manifest.to_json()
    text.encode("utf-8")
    assert Manifest.from_json(text).hash == manifest.hash
    used = {e.path for e in manifest.entries}
    assert len(used) == len(manifest.entries), "an image is listed twice"
    for e in manifest.entries:
        assert file_hash(root / e.path) == e.sha256
    if not allow:
        assert not any(is_leak(g) for g in manifest.duplicates)
    unused = {f["path"] for g in manifest.duplicates for f in g["files"] if f["split"] == UNUSED}
    skipped = {s["path"] for s in manifest.skipped}
    warned = "\n".join(manifest.warnings)
    # every image file in a class folder of the layout is used, set aside, skipped or named
    tops = [root / s for s in ("train", "val", "test")] if manifest.layout == "presplit" else [root]
    for top in tops:
        if not top.is_dir():
            continue
        for cdir in top.iterdir():
            if not cdir.is_dir() or is_stray(cdir.name):
                if cdir.suffix.lower() in IMAGE_EXTENSIONS and not is_stray(cdir.name):
                    assert cdir.name in warned, f"loose image {cdir} not named"
                continue
            for path in cdir.rglob("*"):
                rel = path.relative_to(root).as_posix()
                if any(is_stray(part) for part in path.relative_to(cdir).parts):
                    continue
                if path.suffix.lower() in IMAGE_EXTENSIONS and not path.is_dir():
                    assert rel in used or rel in unused or str(path) in skipped, \
                        f"{rel} was dropped silently"
                elif path.suffix.lower() in (".ico", ".heic") and path.is_file():
                    assert path.name in warned or "(and " in warned, f"{rel} not named"
