"""A local experiment folder on the driver's machine, served to every node of a Ray cluster.

With `--storage runs` (a local path) on a multi-node cluster, a trial on another node cannot
write into the driver's `runs/`: Ray Tune refuses to persist its checkpoints there ("A local path
on the head node is not accessible by worker nodes"), and Parquet rows, kept models and trial
logs would land on the worker's own disk. So the driver serves the folder instead:

- `FolderServer`, a Ray actor pinned to the driver's node, does the file operations there;
- `ServedFileSystem(...)` is a pyarrow filesystem (a `PyFileSystem` over `ServedFolderHandler`)
  that forwards every operation to that actor through Ray (file contents travel through the
  object store), or does it directly when the caller runs on the driver's node.

Ray Tune gets it as `RunConfig(storage_filesystem=...)` (checkpoints, trial folders, experiment
state), and trials mount it over the experiment root (`trainables.results.storage.mount`) so the
results writers are unchanged: each file is written whole (under a hidden temporary name,
renamed once complete) and `move` is a rename on the driver's disk, so the tables keep their
atomic writes and their one-file-per-trial replace semantics.

Shared storage (`s3://...`, `gs://...`, or `file:///mnt/nfs/...` for a folder every node
mounts) is written directly by every node and never goes through here.
"""

from __future__ import annotations

import io
import logging
import os
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import ray

log = logging.getLogger(__name__)

SERVER_CONCURRENCY = 16
"""Threads of the serving actor: trials on other nodes write and read at the same time."""


def _inside(root: str, path: str) -> str:
    """`path` made absolute; refused unless it lies under `root` (the only folder served)."""
    full = os.path.abspath(path)
    if full != root and not full.startswith(root.rstrip("/") + "/"):
        raise PermissionError(f"{path} is outside the served folder {root}")
    return full


def _info_tuple(info: pafs.FileInfo) -> tuple[str, int, int | None, int | None]:
    return (info.path, int(info.type), info.size, info.mtime_ns)


def _info(t: tuple[str, int, int | None, int | None]) -> pafs.FileInfo:
    path, kind, size, mtime_ns = t
    return pafs.FileInfo(path, pafs.FileType(kind), size=size, mtime_ns=mtime_ns)


class FolderOps:
    """The file operations on the serving machine, limited to one folder (run by FolderServer
    and, on the driver's node, in-process)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.fs = pafs.LocalFileSystem()

    def info(self, paths: list[str]) -> list[tuple]:
        return [_info_tuple(i) for i in self.fs.get_file_info([_inside(self.root, p) for p in paths])]

    def list(self, base: str, recursive: bool, allow_not_found: bool) -> list[tuple]:
        selector = pafs.FileSelector(_inside(self.root, base), allow_not_found=allow_not_found,
                                     recursive=recursive)
        return [_info_tuple(i) for i in self.fs.get_file_info(selector)]

    def create_dir(self, path: str, recursive: bool) -> None:
        self.fs.create_dir(_inside(self.root, path), recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.fs.delete_dir(_inside(self.root, path))

    def delete_dir_contents(self, path: str, missing_dir_ok: bool) -> None:
        self.fs.delete_dir_contents(_inside(self.root, path), missing_dir_ok=missing_dir_ok)

    def delete_file(self, path: str) -> None:
        self.fs.delete_file(_inside(self.root, path))

    def move(self, src: str, dest: str) -> None:
        self.fs.move(_inside(self.root, src), _inside(self.root, dest))

    def copy_file(self, src: str, dest: str) -> None:
        self.write(dest, self.read(src))

    def read(self, path: str) -> bytes:
        with self.fs.open_input_stream(_inside(self.root, path)) as f:
            return f.read()

    def write(self, path: str, data: bytes, append: bool = False) -> None:
        """The whole file at once: written under a hidden name beside it, then renamed, so no
        reader (and no crash) ever sees part of it. Missing parent folders are created, as on
        an object store (S3 has no folders to create first)."""
        full = _inside(self.root, path)
        if append and os.path.exists(full):
            data = self.read(full) + data
        folder, name = os.path.split(full)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".served-{name}-{uuid.uuid4().hex[:8]}")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, full)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def call(self, op: str, *args: Any) -> Any:
        return getattr(self, op)(*args)


@ray.remote(num_cpus=0, max_concurrency=SERVER_CONCURRENCY)
class FolderServer:
    """FolderOps as a Ray actor on the driver's node."""

    def __init__(self, root: str) -> None:
        self.ops = FolderOps(root)

    def call(self, op: str, *args: Any) -> Any:
        return self.ops.call(op, *args)


class _Upload(io.BytesIO):
    """An output stream that sends its bytes to the server when closed."""

    def __init__(self, send) -> None:
        super().__init__()
        self._send = send

    def close(self) -> None:
        if not self.closed:
            data = self.getvalue()
            super().close()
            self._send(data)


class ServedFolderHandler(pafs.FileSystemHandler):
    """pyarrow's side: each operation goes to the FolderServer, or straight to the disk when
    this process runs on the server's node. Picklable (an actor handle, a node id, a path), so
    Ray Tune can ship it to every trial."""

    def __init__(self, server: Any, node_id: str, root: str) -> None:
        self.server = server
        self.node_id = node_id
        self.root = os.path.abspath(root)
        self._ops: FolderOps | None = None
        self._here: bool | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"server": self.server, "node_id": self.node_id, "root": self.root}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["server"], state["node_id"], state["root"])

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ServedFolderHandler) and other.root == self.root
                and other.node_id == self.node_id)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def _call(self, op: str, *args: Any) -> Any:
        if self._here is None:
            self._here = ray.get_runtime_context().get_node_id() == self.node_id
            self._ops = FolderOps(self.root) if self._here else None
        if self._ops is not None:
            return self._ops.call(op, *args)
        try:
            return ray.get(self.server.call.remote(op, *args))
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else None
            if cause is not None:
                raise cause from None
            raise

    # ---------------------------------------------------------------- FileSystemHandler
    def get_type_name(self) -> str:
        return "feature-reuse-served"

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return [_info(t) for t in self._call("info", list(paths))]

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return [_info(t) for t in self._call("list", selector.base_dir, selector.recursive,
                                             selector.allow_not_found)]

    def create_dir(self, path: str, recursive: bool) -> None:
        self._call("create_dir", path, recursive)

    def delete_dir(self, path: str) -> None:
        self._call("delete_dir", path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self._call("delete_dir_contents", path, missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise PermissionError("refusing to empty the root of a served folder")

    def delete_file(self, path: str) -> None:
        self._call("delete_file", path)

    def move(self, src: str, dest: str) -> None:
        self._call("move", src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self._call("copy_file", src, dest)

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return pa.BufferReader(self._call("read", path))

    def open_input_file(self, path: str) -> pa.NativeFile:
        return pa.BufferReader(self._call("read", path))

    def open_output_stream(self, path: str, metadata: dict | None = None) -> pa.NativeFile:
        return self._upload(path, append=False)

    def open_append_stream(self, path: str, metadata: dict | None = None) -> pa.NativeFile:
        return self._upload(path, append=True)

    def _upload(self, path: str, append: bool) -> pa.NativeFile:
        # The file travels when the stream is closed. pyarrow.fs.copy_files (Ray Tune's
        # checkpoint upload) drops errors raised by a Python stream's close, so what can be
        # checked here, is: a path outside the served folder fails now, at open.
        _inside(self.root, path)
        return pa.PythonFile(_Upload(lambda data: self._call("write", path, data, append)),
                             mode="w")


def serve_folder(root: str) -> pafs.FileSystem:
    """Start the serving actor on this (the driver's) node for the local folder `root`; returns
    the filesystem that reaches it from any node. Needs a connected Ray; the actor lives as
    long as this driver."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    root = os.path.abspath(root)
    os.makedirs(root, exist_ok=True)
    node_id = ray.get_runtime_context().get_node_id()
    server = FolderServer.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
    ).remote(root)
    ray.get(server.call.remote("info", [root]))  # up and serving before any trial starts
    return pafs.PyFileSystem(ServedFolderHandler(server, node_id, root))


def storage_for_trials(experiment: Any) -> pafs.FileSystem | None:
    """On a Ray cluster (or one that may grow), the filesystem trials write the experiment
    through: the driver's folder served by `serve_folder`, or None for shared storage (a URI,
    `file:///mnt/nfs/...` included), which every node writes directly."""
    import socket

    from sweep.ray_session import alive_nodes

    if experiment.is_remote:
        return None
    fs = serve_folder(experiment.root)
    log.info("storage: %s on this machine (%s), served to the other nodes through Ray (%d "
             "node(s) now)", experiment.root, socket.gethostname(), alive_nodes())
    return fs
