"""One sweep per experiment at a time: `<experiment>/sweep.lock` names the sweep that holds it.

Two sweeps on one experiment would train the same trials twice and delete each other's
checkpoints, so the second refuses before it touches anything, naming the first.

On a folder (local or mounted) the lock is the operating system's: `filelock.FileLock` on
`<experiment>/.sweep.flock`, which the kernel frees however its holder dies (kill -9
included), so a dead sweep's lock is free at once. Object stores (s3://...) have no locks: there
`sweep.lock` is a lease, written and read back (the last writer wins), refreshed every
HEARTBEAT_S and taken over once older than STALE_AFTER_S.

pyarrow exposes no conditional write (S3 If-None-Match, GCS generation preconditions; see
apache/arrow#44281), so on an object store two sweeps started within about a second of each other
can both take the lease; a sweep starting there says so (LEASE_WARNING), and docs/reliability.md
lists the storage on which two concurrent sweeps are safe.

`sweep.lock` itself (JSON: host, pid, since, command, heartbeat) is written in both cases: it
names the holder in the refusal, and on a folder that several hosts mount (NFS, whose locks may
not reach across hosts) a fresh heartbeat from another host still refuses.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from typing import Any

import filelock

from sweep.layout import Experiment
from trainables.errors import UserError
from trainables.results import storage
from trainables.results.storage import join

log = logging.getLogger(__name__)

LEASE_WARNING = (
    "the experiment {root} is on an object store: its lock is a lease (written, then read back "
    "0.5 s later), not an exclusive lock, so two sweeps started on this experiment within about "
    "a second of each other can both run and train the same trials twice. Start one sweep per "
    "experiment there (docs/reliability.md, 'Two sweeps at once', lists the storage that is safe)")
LOCK_NAME = "sweep.lock"
OS_LOCK_NAME = ".sweep.flock"
HEARTBEAT_S = 20.0
"""How often a running sweep refreshes its lock."""
STALE_AFTER_S = 90.0
"""A lease (or another host's record) whose heartbeat is older than this belongs to a sweep that
died."""


class ExperimentLock:
    def __init__(self, experiment: Experiment) -> None:
        self.root = experiment.root
        self.path = join(experiment.root, LOCK_NAME)
        self.os_lock = (None if experiment.is_remote else
                        filelock.FileLock(os.path.join(experiment.root, OS_LOCK_NAME)))
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- the holder's record
    def _body(self, since: str) -> str:
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": self.token,
                           "since": since, "heartbeat": time.time(),
                           "command": " ".join(sys.argv)[:500]})

    def holder(self) -> dict[str, Any] | None:
        """The current holder's record ({} when unreadable), None when there is none."""
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
        """Why the record's sweep is gone, or None while it may be alive. Called with the OS lock
        held (a folder): a holder on this host would hold it, so it is gone."""
        if self.os_lock is not None and body.get("host") == socket.gethostname():
            return f"its process {body.get('pid')} on this host is no longer running"
        if not body:
            return self._unreadable_stale()
        age = time.time() - float(body.get("heartbeat") or 0)
        if age > STALE_AFTER_S:
            return f"its heartbeat is {age:.0f} s old (stale after {STALE_AFTER_S:.0f} s)"
        return None

    def _unreadable_stale(self) -> str | None:
        try:
            fs, path = storage.resolve(self.path)
            mtime = fs.get_file_info(path).mtime
        except OSError:
            return None
        if mtime is not None and time.time() - mtime.timestamp() > STALE_AFTER_S:
            return f"unreadable and untouched for more than {STALE_AFTER_S:.0f} s"
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

    # -------------------------------------------------------------- taking and giving back
    def acquire(self) -> str | None:
        """Take the lock or raise UserError naming the holder; returns a note when the lock of a
        sweep that died was taken over."""
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        if self.os_lock is None:
            log.warning(LEASE_WARNING.format(root=self.root))
        if self.os_lock is not None:
            os.makedirs(os.path.dirname(self.os_lock.lock_file), exist_ok=True)
            try:
                self.os_lock.acquire(timeout=0)
            except filelock.Timeout:
                raise UserError(self.refusal(self.holder() or {})) from None
        try:
            note = self._claim(since)
        except BaseException:
            if self.os_lock is not None:
                self.os_lock.release()
            raise
        self._start_heartbeat(since)
        return note

    def _claim(self, since: str) -> str | None:
        """Write this sweep's record unless a live one is there (three tries on an object store,
        where another sweep may write between the read and the write)."""
        note = None
        for _ in range(3):
            body = self.holder()
            if body is not None:
                reason = self.stale_reason(body)
                if reason is None:
                    raise UserError(self.refusal(body))
                note = (f"took over a stale lock of pid {body.get('pid')} on host "
                        f"{body.get('host')} ({reason})")
            storage.write_text_atomic(self.path, self._body(since))
            if self.os_lock is not None:
                return note
            time.sleep(0.5)  # object stores have no exclusive create: the last writer wins
            if (self.holder() or {}).get("token") == self.token:
                return note
        raise UserError(f"could not take the lock {self.path}: other sweeps keep taking it. Fix: "
                        "make sure only one sweep runs on this experiment")

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
        if self.os_lock is not None and self.os_lock.is_locked:
            self.os_lock.release()
