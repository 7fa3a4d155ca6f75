"""One sweep per experiment: the operating system's lock on a folder, a lease on an object
store (a file:// URI stands in for one here). Killed holders and other hosts:
tests/integration/test_faults.py."""

from __future__ import annotations

import json
import logging
import os
import socket
import time

import pytest

from sweep.experiment_lock import ExperimentLock
from sweep.layout import Experiment
from trainables.errors import UserError


@pytest.mark.parametrize("uri", [False, True], ids=["folder", "lease"])
def test_a_second_lock_refuses_naming_the_holder_until_it_is_released(tmp_path, uri):
    root = f"file://{tmp_path}/exp" if uri else str(tmp_path / "exp")
    first, second = ExperimentLock(Experiment(root)), ExperimentLock(Experiment(root))
    assert first.acquire() is None
    assert json.loads((tmp_path / "exp" / "sweep.lock").read_text())["pid"] == os.getpid()
    with pytest.raises(UserError, match=rf"another sweep is running on this experiment: pid "
                                        rf"{os.getpid()} on host {socket.gethostname()}"):
        second.acquire()
    first.release()
    assert not (tmp_path / "exp" / "sweep.lock").exists()
    assert second.acquire() is None
    second.release()


def test_a_record_left_on_this_host_without_its_lock_is_taken_over(tmp_path):
    """Whoever wrote it no longer holds the folder's lock: its process is gone."""
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "sweep.lock").write_text(json.dumps(
        {"host": socket.gethostname(), "pid": 123456, "token": "t", "since": "earlier",
         "heartbeat": time.time(), "command": "python -m sweep.run"}))
    lock = ExperimentLock(Experiment(str(tmp_path / "exp")))
    note = lock.acquire()
    assert note == (f"took over a stale lock of pid 123456 on host {socket.gethostname()} (its "
                    "process 123456 on this host is no longer running)")
    lock.release()


def test_an_unreadable_record_refuses_until_it_is_old(tmp_path):
    (tmp_path / "exp").mkdir()
    record = tmp_path / "exp" / "sweep.lock"
    record.write_text("{not json")
    with pytest.raises(UserError, match="exists but cannot be read"):
        ExperimentLock(Experiment(str(tmp_path / "exp"))).acquire()
    os.utime(record, (time.time() - 3600, time.time() - 3600))
    lock = ExperimentLock(Experiment(str(tmp_path / "exp")))
    assert "unreadable and untouched" in lock.acquire()
    lock.release()


def test_a_sweep_on_an_object_store_warns_that_its_lock_is_a_lease(tmp_path, caplog):
    """pyarrow offers no conditional write: the lease can race, and the user is told so; a
    folder's lock is the operating system's and says nothing."""
    with caplog.at_level(logging.WARNING, logger="sweep.experiment_lock"):
        folder = ExperimentLock(Experiment(str(tmp_path / "local")))
        folder.acquire()
        folder.release()
        assert "object store" not in caplog.text
        lease = ExperimentLock(Experiment(f"file://{tmp_path}/exp"))
        lease.acquire()
        lease.release()
    assert f"the experiment file://{tmp_path}/exp is on an object store" in caplog.text
    assert "Two sweeps at once" in caplog.text
