"""What the report checks before it trusts its inputs: that --results is a results folder (and, if
not, which folder the user meant), the split manifest beside it (corrupt: named with the fix;
duplicates it records become a note in the report), and that --out can be written. Reading the
tables themselves, with each damaged or foreign file named: `trainables.results.tables.read_checked`.
"""

from __future__ import annotations

import json
import os
import pathlib
import posixpath
import tempfile

import pyarrow.fs as pafs

from trainables.data.manifest import is_leak
from trainables.errors import UserError
from trainables.presets import text_option
from trainables.results.storage import check_storage, resolve

TABLE_NAMES = ("trials", "epochs", "predictions")


def _kind(fs: pafs.FileSystem, path: str) -> pafs.FileType:
    return fs.get_file_info(path).type


def check_results_root(root: str, hint: str) -> None:
    """--results must be a results folder: name what it is instead (an experiment folder, the
    storage folder of several experiments, one table's folder, a file) with the right path."""
    if not root.strip():
        raise UserError("--results is empty. Fix: pass the results folder of a sweep "
                        "(<storage>/<name>/results) or of `trainables.train --out`")
    text_option("--results", root)
    check_storage("--results", root, write=False)
    fs, base = resolve(root)
    kind = _kind(fs, base)
    if kind == pafs.FileType.NotFound:
        raise UserError(f"results folder {root} does not exist; {hint}")
    if kind != pafs.FileType.Directory:
        raise UserError(f"--results {root} is a file, not a results folder; {hint}")
    if _kind(fs, f"{base}/trials") == pafs.FileType.Directory:
        return
    if _kind(fs, f"{base}/results/trials") == pafs.FileType.Directory:
        raise UserError(f"--results {root} is an experiment folder; its results are in "
                        f"{posixpath.join(root, 'results')}. Fix: pass --results "
                        f"{posixpath.join(root, 'results')}")
    name = posixpath.basename(base.rstrip("/"))
    if name in TABLE_NAMES:
        parent = posixpath.dirname(root.rstrip("/"))
        raise UserError(f"--results {root} is the folder of one table; the results folder is "
                        f"{parent}. Fix: pass --results {parent}")
    found = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(base))
                   if i.type == pafs.FileType.Directory
                   and _kind(fs, f"{i.path}/results/trials") == pafs.FileType.Directory)
    if found:
        listing = ", ".join(f"{p}/results" for p in found[:5])
        raise UserError(f"--results {root} holds several experiments, not results. Fix: pass one "
                        f"of their results folders: {listing}")


MANIFEST_FIX = ("restore it from where the sweep wrote it, or delete it: the report then does "
                "without it (Grad-CAM needs --data to find images)")


def read_manifest_json(root: str, path: str) -> dict:
    """The split manifest beside the results as plain JSON (no torch); UserError when corrupt."""
    fs, _ = resolve(root)
    try:
        with fs.open_input_stream(path) as f:
            body = json.loads(f.read().decode("utf-8"))
        if not isinstance(body, dict) or not isinstance(body.get("entries"), list):
            raise ValueError("not a split manifest")
        return body
    except (ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise UserError(f"split manifest {path} is corrupt or truncated ({reason}). Fix: "
                        f"{MANIFEST_FIX}") from None


def manifest_notes(body: dict, path: str) -> list[str]:
    """Report notes from a manifest: duplicates it recorded (kept with --allow-duplicates)."""
    groups = body.get("duplicates") or []
    if not groups:
        return []
    leaks = sum(1 for g in groups if is_leak(g))
    text = (f"the split manifest ({path}) records {len(groups)} group(s) of byte-identical images")
    if leaks:
        text += (f", {leaks} of them both in train and in val/test/OOD (the sweep ran with "
                 "--allow-duplicates): accuracies on those splits include images the models "
                 "trained on")
    return [text]


def prepare_out_dir(out: str) -> pathlib.Path:
    """The report's output folder, created and probed: UserError for a URI, a file, or a folder
    that cannot be written."""
    if not str(out).strip():
        raise UserError("--out is empty. Fix: pass a folder for the report")
    text_option("--out", str(out))
    if "://" in str(out):
        raise UserError(f"--out {out}: the report is written to a local folder (its figures need "
                        "a disk). Fix: pass a local folder and copy it afterwards")
    path = pathlib.Path(out)
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            raise UserError(f"--out {out}: {parent} is a file, not a folder. Fix: pass a folder "
                            "path (an existing folder, or one to create)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot write there ({exc.strerror or exc}). Fix: pass a "
                        "writable folder") from None
    return path
