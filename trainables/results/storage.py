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
import math
import os
import subprocess
import sys
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


TIMEOUT_ENV = "FEATURE_REUSE_STORAGE_TIMEOUT"
"""Seconds a store may take to answer the start-up probe (default DEFAULT_TIMEOUT_S)."""
DEFAULT_TIMEOUT_S = 20.0


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
            if "Cannot parse URI" in str(exc):
                raise UserError(unparsable_uri_message(root)) from None
            if "Unrecognized filesystem type" not in str(exc):
                raise
            raise UserError(f"storage {root!r}: unknown URI scheme {root.split('://')[0]!r}; use "
                            f"a local folder or one of {', '.join(URI_SCHEMES)}") from None
    path = os.path.abspath(root)
    for folder, fs in _MOUNTS.items():
        if path == folder or path.startswith(folder.rstrip("/") + "/"):
            return fs, path
    return pafs.LocalFileSystem(), path


def unparsable_uri_message(root: str) -> str:
    """Name the first character a URI may not hold, and the two ways around it."""
    from urllib.parse import quote

    bad = next((i for i, ch in enumerate(root) if quote(ch, safe=URI_SAFE) != ch), None)
    where = (f"the character {root[bad]!r} at position {bad} is not allowed in a URI"
             if bad is not None else "it is not a valid URI")
    fix = f"write {quote(root[bad])} for it" if bad is not None else "percent-encode it"
    plain = root.partition("://")[2] if root.startswith("file://") else ""
    alt = f", or pass the plain path {plain!r}" if plain else ""
    return f"{root!r} cannot be parsed: {where}. Fix: {fix}{alt}"


URI_SAFE = "/:?#[]@!$&'()*+,;=%-._~"
"""Characters a URI may hold as they are (RFC 3986 reserved and unreserved, and %)."""


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


def storage_timeout_s() -> float:
    """The user's FEATURE_REUSE_STORAGE_TIMEOUT (seconds), or the default."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise UserError(f"{TIMEOUT_ENV}={text!r} is not a number of seconds. Fix: set it to a "
                        f"positive number (default {DEFAULT_TIMEOUT_S:g}) or unset it")
    return value


def _probe(root: str, write: bool) -> None:
    fs, base = resolve(root)
    if write:
        fs.create_dir(base, recursive=True)
        write_bytes_atomic(join(root, f"{TMP_PREFIX}write-probe"), b"ok")
        delete_file(join(root, f"{TMP_PREFIX}write-probe"))
    else:
        fs.get_file_info(base)


def _first_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_CHILD = ("import sys; sys.path.insert(0, sys.argv[3]); from trainables.results import storage\n"
          "try:\n    storage._probe(sys.argv[1], sys.argv[2] == '1')\n"
          "except Exception as exc:\n    print(storage._first_line(exc), end='')")


def storage_problem(root: str, write: bool = True, timeout_s: float | None = None) -> str | None:
    """Why files cannot be written under `root` (None when they can), found in seconds.

    Creates the root and writes and deletes a probe file the way `atomic_output` does (with
    `write` off, only checks the root answers). A store that does not answer within `timeout_s`
    (default: storage_timeout_s()) counts as unreachable. A URI is probed in a child process,
    killed on time: an S3 client stuck on an endpoint that accepts and never answers would
    otherwise keep this process from exiting."""
    timeout_s = storage_timeout_s() if timeout_s is None else timeout_s
    late = (f"did not answer within {timeout_s:g} s (an endpoint that is down, unreachable or "
            "very slow, or credentials looked up where there are none)")
    if "://" in root:  # even parsing an s3:// URI may ask the network for the bucket's region
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        try:
            child = subprocess.run([sys.executable, "-c", _CHILD, root, "1" if write else "0",
                                    package_root], capture_output=True, text=True,
                                   timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            return late
        if child.returncode != 0:
            return _first_line(child.stderr or f"the probe exited with {child.returncode}")
        return child.stdout.strip() or None
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            _probe(root, write)
            outcome.append(None)
        except BaseException as exc:  # reported to the caller below
            outcome.append(exc)

    worker = threading.Thread(target=probe, daemon=True, name="storage-probe")
    worker.start()
    worker.join(timeout_s)
    if not outcome:
        return late
    exc = outcome[0]
    return None if exc is None else _first_line(exc)


UNREACHABLE_TEXTS = ("could not connect", "connection refused", "network_connection",
                     "couldn't connect", "could not resolve", "resolve host", "timed out")
CREDENTIAL_TEXTS = ("access denied", "accessdenied", "invalidaccesskeyid", "signaturedoesnotmatch",
                    "credential", "forbidden", "unauthorized", "http status 403", "http 403")


def storage_fix(problem: str) -> str:
    """The fix for a storage problem, by its cause."""
    low = problem.lower()
    if "did not answer" in low:
        return (f"Fix: check that the store's endpoint (endpoint_override=host:port in the URI) is "
                f"up and reachable from this machine and its credentials are set; give a slow "
                f"store longer with {TIMEOUT_ENV}=<seconds> (now {storage_timeout_s():g})")
    if any(t in low for t in UNREACHABLE_TEXTS):
        return ("Fix: check the endpoint in the URI (endpoint_override=host:port, scheme=http or "
                "https) and that the store runs there and is reachable from this machine")
    if any(t in low for t in CREDENTIAL_TEXTS):
        return ("Fix: set the store's credentials (s3://: AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE; gs://: GOOGLE_APPLICATION_CREDENTIALS) "
                "with the right to read and write there")
    if "Fix:" in problem:
        return ""
    return STORAGE_FIX


def storage_message(option: str, root: str, problem: str, write: bool = True) -> str:
    """One line: the option and path, the cause, the fix."""
    verb = "cannot write to" if write else "cannot read"
    return f"{option}: {verb} {root} ({problem}). {storage_fix(problem)}".rstrip()


def check_storage(option: str, root: str, write: bool = True,
                  timeout_s: float | None = None) -> None:
    """Fail fast, before any work, when `root` (the value of `option`) cannot be written (or,
    without `write`, read): a UserError naming the path, the cause and the fix. The one check
    the single-trial CLI, the sweep and the report run on every path they open."""
    problem = storage_problem(root, write=write, timeout_s=timeout_s)
    if problem is not None:
        raise UserError(storage_message(option, root, problem, write))


def check_output_file(option: str, path: str) -> None:
    """A local file to write must not be a folder nor lie under a file (a URI is checked by
    writing it)."""
    if "://" in path:
        return
    target = Path(os.path.abspath(path))
    if target.is_dir():
        raise UserError(f"{option} {path} is a folder. Fix: name the file to write, e.g. "
                        f"{os.path.join(path, 'out' + (target.suffix or '.bin'))}")
    above = next((p for p in target.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise UserError(f"{option} {path}: {above} is a file, not a folder. Fix: name a file in "
                        "a folder (missing folders are created)")


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
