"""Where an experiment keeps its files, on a local path or any pyarrow filesystem URI (s3://...).

    <storage>/<name>/manifest.json      the split manifest, built once on the driver
    <storage>/<name>/experiment.json    its configuration (preset + overrides), recorded by the
                                        first sweep: a sweep with other settings is refused
                                        (sweep/experiment_config.py)
    <storage>/<name>/data_roots.json    the data and OOD folders the manifest's paths are
                                        relative to (absolute, as the driver saw them), so that
                                        the report finds the images by itself
                                        (trainables.data.manifest.DATA_ROOTS_FILE)
    <storage>/<name>/results/           Parquet tables (trainables/results.py) and models/
    <storage>/<name>/ray/               Ray Tune's experiment: trial dirs, checkpoints, logs
    <storage>/<name>/resume/<id>.json   latest checkpoint of each unfinished trial (see
                                        sweep/checkpoints.py), so a rerun continues it
    <storage>/<name>/sweep.lock         held while a sweep runs (sweep/experiment_lock.py): a
                                        second sweep on the same experiment refuses to start;
    <storage>/<name>/.sweep.flock       its operating-system lock (a folder, not a URI)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pyarrow.fs as pafs

from trainables.data.manifest import DATA_ROOTS_FILE
from trainables.results import storage
from trainables.results import tables as results
from trainables.results.storage import join


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
    def config(self) -> str:
        return join(self.root, "experiment.json")

    @property
    def data_roots(self) -> str:
        return join(self.root, DATA_ROOTS_FILE)

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
        return storage.resolve(self.root)


def remove_stale_temporaries(results_root: str) -> int:
    """Delete the temporary files killed writers left in the results tables; returns the count.

    Readers already ignore them (hidden names); this only reclaims the space. Run it before any
    trial of this sweep starts (two sweeps must not share one experiment at the same time)."""
    return sum(storage.remove_temporaries(join(results_root, table))
               for table in (*results.TABLES, "models"))
