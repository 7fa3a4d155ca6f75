"""Where an experiment keeps its files, on a local path or any pyarrow filesystem URI (s3://...).

    <storage>/<name>/manifest.json      the split manifest, built once on the driver
    <storage>/<name>/data_roots.json    the data and OOD folders the manifest's paths are
                                        relative to (absolute, as the driver saw them), so that
                                        the report finds the images by itself
    <storage>/<name>/results/           Parquet tables (trainables/results/tables.py) and models/
    <storage>/<name>/ray/               Ray Tune's experiment: trial dirs, checkpoints, logs
    <storage>/<name>/resume/<id>.json   latest checkpoint of each unfinished trial (see
                                        sweep/checkpoints.py), so a rerun continues it
    <storage>/<name>/sweep.lock         held while a sweep runs (ExperimentLock): a second sweep
                                        on the same experiment refuses to start
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

from trainables.errors import UserError
from trainables.results import storage
from trainables.results import tables as results
from trainables.results.storage import join

DATA_ROOTS_FILE = "data_roots.json"
"""{"data": DIR, "ood": DIR or null, "embedded": bool, "manifest_hash": HASH}: written by the
sweep's preflight, read by analysis.image_roots."""


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


# ------------------------------------------------------------------------- experiment lock
LOCK_NAME = "sweep.lock"
HEARTBEAT_S = 20.0
"""How often a running sweep refreshes its lock."""
STALE_AFTER_S = 90.0
"""A lock whose holder cannot be checked directly (another host, another PID namespace) is stale
when its heartbeat is older than this."""


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a reused pid apart)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _here() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pidns": _pid_namespace(), "pid": os.getpid(),
            "proc_start": _proc_start(os.getpid())}


class ExperimentLock:
    """One sweep per experiment at a time: `<experiment>/sweep.lock` names its holder.

    A lock left by a holder that died (kill -9, a lost machine) is stale and taken over: on the
    same host (and PID namespace) at once, when the holder's process is gone; elsewhere once its
    heartbeat (refreshed every HEARTBEAT_S) is older than STALE_AFTER_S."""

    def __init__(self, experiment: Experiment) -> None:
        self.path = join(experiment.root, LOCK_NAME)
        self.local = not experiment.is_remote
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self, since: str) -> str:
        return json.dumps({**_here(), "token": self.token, "since": since,
                           "heartbeat": time.time(), "command": " ".join(sys.argv)[:500]})

    def holder(self) -> dict[str, Any] | None:
        """The current holder's record ({} when unreadable), None when unlocked."""
        try:
            text = storage.read_text(self.path)
        except (OSError, ValueError):
            return {}
        if text is None:
            return None
        try:
            body = json.loads(text)
            return body if isinstance(body, dict) else {}
        except ValueError:
            return {}

    def stale_reason(self, body: dict[str, Any]) -> str | None:
        """Why the holder is gone, or None while it may be alive."""
        age = time.time() - float(body.get("heartbeat") or 0)
        here = _here()
        if body.get("host") == here["host"] and body.get("pidns") == here["pidns"] and body.get("pid"):
            start = _proc_start(int(body["pid"]))
            if start is None or start != body.get("proc_start"):
                return f"its process {body['pid']} on this host is no longer running"
            return None
        if age > STALE_AFTER_S:
            return f"its heartbeat is {age:.0f} s old (stale after {STALE_AFTER_S:.0f} s)"
        return None

    def refusal(self, body: dict[str, Any]) -> str:
        if not body:
            return (f"{self.path} exists but cannot be read. Fix: if no other sweep runs on this "
                    "experiment, delete that file and run the command again")
        age = time.time() - float(body.get("heartbeat") or 0)
        return (f"another sweep is running on this experiment: pid {body.get('pid')} on host "
                f"{body.get('host')}, since {body.get('since')} (last heartbeat {age:.0f} s ago; "
                f"command: {body.get('command')}). Two sweeps on one experiment would train the "
                "same trials twice and delete each other's checkpoints. Fix: wait for it to "
                "finish or stop it, or pick another --name; if it died without cleaning up, its "
                f"lock is taken over automatically (on its own host at once, elsewhere "
                f"{STALE_AFTER_S:.0f} s after its last heartbeat), or delete {self.path}")

    def _create(self, since: str) -> bool:
        """Create the lock if absent; True when this process now holds it."""
        if self.local:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self._body(since))
            return True
        if self.holder() is not None:
            return False
        storage.write_text_atomic(self.path, self._body(since))
        time.sleep(0.5)  # object stores have no exclusive create: the last writer wins
        return (self.holder() or {}).get("token") == self.token

    def _remove_stale(self) -> None:
        if self.local:
            moved = f"{self.path}.stale-{self.token}"
            try:
                os.rename(self.path, moved)  # one of several contenders wins this
            except FileNotFoundError:
                return
            os.remove(moved)
        else:
            storage.delete_file(self.path)

    def acquire(self) -> str | None:
        """Take the lock or raise UserError naming the holder; returns a note when a stale lock
        was taken over."""
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        note = None
        for _ in range(3):
            if self._create(since):
                self._start_heartbeat(since)
                return note
            body = self.holder()
            if body is None:
                continue  # released meanwhile
            reason = self.stale_reason(body) if body else self._unreadable_stale()
            if reason is None:
                raise UserError(self.refusal(body))
            note = (f"took over a stale lock of pid {body.get('pid')} on host "
                    f"{body.get('host')} ({reason})")
            self._remove_stale()
        raise UserError(f"could not take the lock {self.path}: other sweeps keep taking it. Fix: "
                        "make sure only one sweep runs on this experiment")

    def _unreadable_stale(self) -> str | None:
        try:
            fs, path = storage.resolve(self.path)
            mtime = fs.get_file_info(path).mtime
        except OSError:
            return None
        if mtime is not None and time.time() - mtime.timestamp() > STALE_AFTER_S:
            return f"unreadable and untouched for more than {STALE_AFTER_S:.0f} s"
        return None

    def _start_heartbeat(self, since: str) -> None:
        def beat() -> None:
            while not self._stop.wait(HEARTBEAT_S):
                try:
                    if (self.holder() or {}).get("token") != self.token:
                        return  # taken over (we were considered dead): stop touching it
                    storage.write_text_atomic(self.path, self._body(since))
                except Exception:  # a full disk or a slow store: try again next beat
                    pass

        self._thread = threading.Thread(target=beat, name="sweep-lock-heartbeat", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        try:
            if (self.holder() or {}).get("token") == self.token:
                storage.delete_file(self.path)
        except Exception:  # never fail a finished sweep over its lock; a rerun finds it stale
            pass
