"""Where files go: a local path or any pyarrow filesystem URI, and the one atomic write.

Every file the project writes (Parquet tables, manifests, resume pointers, models, weights copied
into the torch cache) goes through `atomic_output`: written under a hidden temporary name, then
renamed, so a reader never sees half a file. Temporary names start with TMP_PREFIX and end in
".tmp", never in ".parquet": a killed writer's leftover is skipped by pyarrow (hidden name) and
by DuckDB's or Polars' `*.parquet` globs alike.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.fs as pafs

from trainables.errors import UserError

URI_SCHEMES = ("file://", "s3://", "gs://", "abfs://", "hdfs://")
"""Storage URIs pyarrow's filesystems understand (hdfs:// also needs a JVM and libhdfs)."""
TMP_PREFIX = ".tmp-"
STORAGE_FIX = ("Fix: pass a writable local folder, or a reachable URI (" + ", ".join(URI_SCHEMES) +
               ") with its credentials set")


_MOUNTS: dict[str, pafs.FileSystem] = {}
"""Local folders this process reaches through another filesystem (see `mount`)."""


def mount(folder: str, fs: pafs.FileSystem | None) -> None:
    """In this process, reach the local path `folder` and everything under it through `fs`
    instead of this machine's disk (None: back to the disk). A sweep's trial on another node
    mounts the driver's experiment folder this way (sweep/served_storage.py); every reader and
    writer goes through `resolve`, so none of them changes."""
    folder = os.path.abspath(folder)
    if fs is None:
        _MOUNTS.pop(folder, None)
    else:
        _MOUNTS[folder] = fs


def resolve(root: str) -> tuple[pafs.FileSystem, str]:
    """A local path or URI -> (filesystem, path inside it)."""
    if "://" in root:
        try:
            return pafs.FileSystem.from_uri(root)
        except pa.ArrowInvalid as exc:
            if "Unrecognized filesystem type" not in str(exc):
                raise
            raise UserError(f"storage {root!r}: unknown URI scheme {root.split('://')[0]!r}; use "
                            f"a local folder or one of {', '.join(URI_SCHEMES)}") from None
    path = os.path.abspath(root)
    for folder, fs in _MOUNTS.items():
        if path == folder or path.startswith(folder.rstrip("/") + "/"):
            return fs, path
    return pafs.LocalFileSystem(), path


def join(base: str, *parts: str) -> str:
    """base/part/...; a URI's query (s3://b/p?endpoint_override=...) stays at the end. A local
    path's `?` is just a character of a folder name."""
    if "://" not in base:
        return "/".join([base.rstrip("/"), *parts])
    path, sep, query = base.partition("?")
    return "/".join([path.rstrip("/"), *parts]) + sep + query


def is_temporary(name: str) -> bool:
    return name.startswith(TMP_PREFIX)


@contextlib.contextmanager
def atomic_output(uri_or_path: str) -> Iterator[BinaryIO]:
    """A stream whose bytes appear at `uri_or_path` all at once when the block ends, or not at
    all when it raises (the temporary file is removed; a kill -9 leaves it, hidden)."""
    fs, path = resolve(uri_or_path)
    folder, _, name = path.rpartition("/")
    fs.create_dir(folder, recursive=True)
    tmp = f"{folder}/{TMP_PREFIX}{name}-{uuid.uuid4().hex[:8]}.tmp"
    try:
        with fs.open_output_stream(tmp) as stream:
            yield stream
        fs.move(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.delete_file(tmp)
        raise


def write_bytes_atomic(uri_or_path: str, data: bytes) -> None:
    with atomic_output(uri_or_path) as stream:
        stream.write(data)


def write_text_atomic(uri_or_path: str, text: str) -> None:
    write_bytes_atomic(uri_or_path, text.encode("utf-8"))


def copy_file_atomic(source: str | Path, dest: str | Path) -> None:
    """Copy a local file in chunks (weights files are hundreds of MB)."""
    with open(source, "rb") as src, atomic_output(str(dest)) as out:
        while chunk := src.read(1 << 24):
            out.write(chunk)


def read_bytes(uri_or_path: str) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    fs, path = resolve(uri_or_path)
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return f.read()


def read_text(uri_or_path: str) -> str | None:
    data = read_bytes(uri_or_path)
    return None if data is None else data.decode("utf-8")


def delete_file(uri_or_path: str) -> None:
    fs, path = resolve(uri_or_path)
    with contextlib.suppress(FileNotFoundError):
        fs.delete_file(path)


def delete_dir(uri_or_path: str) -> None:
    fs, path = resolve(uri_or_path)
    with contextlib.suppress(FileNotFoundError):
        fs.delete_dir(path)


def remove_temporaries(folder_uri: str) -> int:
    """Delete the temporary files a killed writer left directly in `folder_uri`; the count."""
    fs, folder = resolve(folder_uri)
    if fs.get_file_info(folder).type != pafs.FileType.Directory:
        return 0
    removed = 0
    for info in fs.get_file_info(pafs.FileSelector(folder)):
        if is_temporary(info.base_name):
            fs.delete_file(info.path)
            removed += 1
    return removed


def storage_problem(root: str, write: bool = True, timeout_s: float = 60.0) -> str | None:
    """Why files cannot be written under `root` (None when they can), found in seconds.

    Creates the root and writes and deletes a probe file the way `atomic_output` does (with
    `write` off, only checks the root answers). A store that does not answer within `timeout_s`
    (an unreachable endpoint retries for minutes) counts as unreachable."""
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            fs, base = resolve(root)
            if write:
                fs.create_dir(base, recursive=True)
                write_bytes_atomic(join(root, f"{TMP_PREFIX}write-probe"), b"ok")
                delete_file(join(root, f"{TMP_PREFIX}write-probe"))
            else:
                fs.get_file_info(base)
            outcome.append(None)
        except BaseException as exc:  # reported to the caller below
            outcome.append(exc)

    worker = threading.Thread(target=probe, daemon=True, name="storage-probe")
    worker.start()
    worker.join(timeout_s)
    if not outcome:
        return (f"did not answer within {timeout_s:.0f} s (unreachable endpoint or missing "
                "credentials?)")
    exc = outcome[0]
    if exc is None:
        return None
    if isinstance(exc, UserError):
        return str(exc)
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def check_writable(root: str, timeout_s: float = 60.0) -> None:
    """Fail fast, before any training, when results cannot be written under `root`."""
    problem = storage_problem(root, timeout_s=timeout_s)
    if problem is not None:
        raise UserError(f"cannot write results to {root!r}: {problem}. {STORAGE_FIX}")


DISK_FULL_TEXTS = ("No space left on device", "Disk quota exceeded")
DISK_FULL_FIX = ("free space there (or pass another storage location), then run the same "
                 "command again: finished work is kept and nothing is written twice")


def is_disk_full(error: BaseException | str | None) -> bool:
    """ENOSPC/EDQUOT, from Python (errno) or from pyarrow and Ray (only the message says it)."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error or "")
    return any(t in text for t in DISK_FULL_TEXTS)


def os_error_message(error: OSError, where: str) -> str:
    """One line naming `where`, the cause and the fix, for a write that failed."""
    text = str(error).strip()
    reason = error.strerror or (text.splitlines()[0] if text else type(error).__name__)
    if is_disk_full(error):
        return f"the disk holding {where} is full ({reason}). Fix: {DISK_FULL_FIX}"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write to {where} ({reason}). {STORAGE_FIX}"
    return f"{where}: {reason}"
