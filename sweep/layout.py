"""Where an experiment keeps its files, on a local path or any pyarrow filesystem URI (s3://...).

    <storage>/<name>/manifest.json      the split manifest, built once on the driver
    <storage>/<name>/results/           Parquet tables (trainables/results.py) and models/
    <storage>/<name>/ray/               Ray Tune's experiment: trial dirs, checkpoints, logs
    <storage>/<name>/resume/<id>.json   latest checkpoint of each unfinished trial (see
                                        sweep/checkpoints.py), so a rerun continues it
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import pyarrow.fs as pafs

from trainables import results


def join(base: str, *parts: str) -> str:
    """base/part/...; a URI's query (s3://b/p?endpoint_override=...) stays at the end."""
    path, sep, query = base.partition("?")
    return "/".join([path.rstrip("/"), *parts]) + sep + query


@dataclass(frozen=True)
class Experiment:
    root: str
    """<storage>/<name>: an absolute local path or a URI."""

    @classmethod
    def at(cls, storage: str, name: str) -> Experiment:
        if "://" not in storage:
            storage = os.path.abspath(storage)
        return cls(join(storage, name))

    @property
    def is_remote(self) -> bool:
        return "://" in self.root

    @property
    def manifest(self) -> str:
        return join(self.root, "manifest.json")

    @property
    def results(self) -> str:
        return join(self.root, "results")

    @property
    def ray_name(self) -> str:
        """Ray Tune's experiment name under `root` (RunConfig(storage_path=root, name=...))."""
        return "ray"

    @property
    def ray_dir(self) -> str:
        return join(self.root, self.ray_name)

    @property
    def resume_dir(self) -> str:
        return join(self.root, "resume")

    def fs(self) -> tuple[pafs.FileSystem, str]:
        """(filesystem, root path inside it)."""
        return results.resolve(self.root)


def fs_path(uri_or_path: str) -> tuple[pafs.FileSystem, str]:
    return results.resolve(uri_or_path)


def read_text(uri_or_path: str) -> str | None:
    """The file's text, or None when it does not exist."""
    fs, path = fs_path(uri_or_path)
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return f.read().decode("utf-8")


def write_text_atomic(uri_or_path: str, text: str) -> None:
    """Write under a hidden temporary name, then rename (readers never see half a file)."""
    fs, path = fs_path(uri_or_path)
    folder, _, name = path.rpartition("/")
    fs.create_dir(folder, recursive=True)
    tmp = f"{folder}/.tmp-{name}-{uuid.uuid4().hex[:8]}"
    with fs.open_output_stream(tmp) as f:
        f.write(text.encode("utf-8"))
    fs.move(tmp, path)


def delete_file(uri_or_path: str) -> None:
    fs, path = fs_path(uri_or_path)
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        pass


def delete_dir(uri_or_path: str) -> None:
    fs, path = fs_path(uri_or_path)
    try:
        fs.delete_dir(path)
    except FileNotFoundError:
        pass


def remove_stale_temporaries(results_root: str) -> int:
    """Delete `.tmp-*` files that a killed writer left in the results tables; returns the count.

    Readers already ignore them (hidden names); this only reclaims the space. Run it before any
    trial of this sweep starts (two sweeps must not share one experiment at the same time)."""
    fs, base = fs_path(results_root)
    removed = 0
    for table in (*results.TABLES, "models"):
        folder = f"{base}/{table}"
        if fs.get_file_info(folder).type != pafs.FileType.Directory:
            continue
        for info in fs.get_file_info(pafs.FileSelector(folder)):
            if info.base_name.startswith(".tmp-"):
                fs.delete_file(info.path)
                removed += 1
    return removed
