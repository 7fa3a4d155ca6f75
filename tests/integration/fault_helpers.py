"""Real processes for the fault-injection tests: start `python -m sweep.run` in its own session,
wait on the files it writes, SIGKILL it, clean up every process it started, and read back what
it left in the results tables."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from tests.conftest import PROJECT_ROOT
from trainables.results import tables as results


def session_pids(sid: int) -> list[int]:
    """Every live process whose session id is `sid` (the driver's, see start_new_session)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        fields = stat.rsplit(")", 1)[1].split()  # state ppid pgrp session ...
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def kill_session(sid: int, timeout: float = 30.0) -> list[int]:
    """SIGKILL, by pid, each process left in the session; returns the pids that were left."""
    left = session_pids(sid)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.time() + timeout
    while session_pids(sid) and time.time() < deadline:
        time.sleep(0.2)
    return left


@dataclass
class Sweep:
    """One `python -m sweep.run` process with its own Ray temp dir and process session."""

    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    ray_tmp: str = ""
    log_dir: Path | None = None

    def start(self, log_dir: Path) -> Sweep:
        # A short private temp dir: Ray's unix socket paths must stay under ~107 characters,
        # and its processes are then easy to attribute to this sweep.
        self.ray_tmp = tempfile.mkdtemp(prefix="frt", dir="/tmp")
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        # Temporary files of the driver and its workers too (a SIGKILLed worker cannot delete
        # its own), so cleanup() removes everything this sweep left in /tmp.
        scratch = Path(self.ray_tmp) / "tmp"
        scratch.mkdir()
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "RAY_TMPDIR": self.ray_tmp,
               "TMPDIR": str(scratch), "RAY_USAGE_STATS_ENABLED": "0", **self.env}
        env.pop("RAY_ADDRESS", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sweep.run", *self.args], cwd=PROJECT_ROOT, env=env,
            stdout=open(log_dir / "stdout.txt", "w"), stderr=open(log_dir / "stderr.txt", "w"),
            start_new_session=True)
        return self

    @property
    def stdout(self) -> str:
        return (self.log_dir / "stdout.txt").read_text()

    @property
    def stderr(self) -> str:
        return (self.log_dir / "stderr.txt").read_text()

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.cleanup()
            raise AssertionError(f"sweep did not finish in {timeout:.0f} s\n{self.output()}") from None

    def kill_driver(self) -> None:
        """kill -9 of the driver's whole process group, as a lost node or OOM killer would."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def leftovers(self, grace: float) -> list[int]:
        """Processes of this sweep still alive `grace` seconds from now (Ray's own cleanup)."""
        deadline = time.time() + grace
        while session_pids(self.proc.pid) and time.time() < deadline:
            time.sleep(0.5)
        return session_pids(self.proc.pid)

    def cleanup(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(30)
            kill_session(self.proc.pid)
        if self.ray_tmp:
            shutil.rmtree(self.ray_tmp, ignore_errors=True)

    def output(self) -> str:
        return f"--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-4000:]}"


def run_sweep(args: list[str], log_dir: Path, env: dict[str, str] | None = None,
              timeout: float = 420) -> Sweep:
    sweep = Sweep(args, env or {}).start(log_dir)
    try:
        sweep.wait(timeout)
    finally:
        sweep.cleanup()
    return sweep


def wait_until(condition: Callable[[], bool], timeout: float, sweep: Sweep, what: str) -> None:
    deadline = time.time() + timeout
    while not condition():
        if sweep.proc.poll() is not None:
            raise AssertionError(f"sweep exited ({sweep.proc.returncode}) before {what}\n"
                                 f"{sweep.output()}")
        if time.time() > deadline:
            sweep.cleanup()
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n"
                                 f"{sweep.output()}")
        time.sleep(0.25)


def finished_files(results_root: Path) -> list[Path]:
    folder = results_root / "trials"
    return sorted(folder.glob("[!._]*.parquet")) if folder.is_dir() else []


def hidden_files(results_root: Path) -> list[Path]:
    """Temporary files a killed writer may leave ('.tmp-*'); readers must never see them."""
    return sorted(p for table in results.TABLES if (results_root / table).is_dir()
                  for p in (results_root / table).iterdir() if p.name.startswith("."))


def plant_partial_parquet(results_root: Path, table: str) -> Path:
    """A half-written Parquet file under the writer's temporary name: what a kill -9 in the
    middle of write_table_atomic leaves behind."""
    source = next((results_root / table).glob("[!.]*.parquet"))
    data = source.read_bytes()
    partial = results_root / table / f".tmp-{source.stem}-deadbeef.parquet"
    partial.write_bytes(data[: len(data) // 2])
    return partial


def rows(results_root: Path, table: str) -> list[dict]:
    return results.read_table(str(results_root), table).to_pylist()


def file_rows(path: Path) -> int:
    return pq.read_metadata(path).num_rows
