"""The Ray session a sweep runs in: join a cluster or start a local Ray, stop it again, keep its
logs with the experiment, and treat SIGTERM like Ctrl-C while it runs."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from sweep.layout import Experiment
from trainables.errors import UserError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C while the sweep runs: trials stop, finished results stay,
    exit 130. The previous handler comes back afterwards."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def ray_session(address: str | None, experiment: Experiment | None = None) -> Iterator[bool]:
    """Join (address or $RAY_ADDRESS) or start a local Ray, unless this process already has one;
    yields whether it was started here. On the way out Ray is stopped again if it was started
    here, and a local session's logs are copied into the experiment."""
    import ray

    if ray.is_initialized():
        yield False
        return
    address = address or os.environ.get("RAY_ADDRESS")
    # Trial output goes to each trial's folder (see run_tuner), not to this console; the
    # driver's Ray logging is routed by sweep.logs.
    common = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.INFO)
    if address and address != "local":  # "local" is Ray's word for a new one (joins_cluster)
        ray.init(address=address, **common)
        session_logs = None
    else:
        # address="local": a new Ray for this sweep, even where `ray start` left a cluster running
        context = ray.init(address="local", object_store_memory=256 * 2**20, **common)
        session_logs = ray_session_logs(context)
    try:
        yield True
    finally:
        ray.shutdown()
        if experiment is not None:
            keep_session_logs(experiment, session_logs)


def ray_session_logs(context) -> str | None:
    """The local session's log folder, from what `ray.init` returned (public API)."""
    session_dir = getattr(context, "address_info", {}).get("session_dir")
    return os.path.join(session_dir, "logs") if session_dir else None


def keep_session_logs(experiment: Experiment, session_logs: str | None) -> None:
    """Copy the local Ray session's logs (raylet, workers) next to Ray Tune's files."""
    if not session_logs or not os.path.isdir(session_logs):
        return
    import pyarrow.fs as pafs

    try:
        fs, root = experiment.fs()
        dest = f"{root}/{experiment.ray_name}/session-logs/{Path(session_logs).parent.name}"
        pafs.copy_files(session_logs, dest, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=fs)
    except Exception as exc:  # logs are a convenience; never fail a sweep over them
        log.debug("could not copy Ray session logs: %s", exc)


def alive_nodes() -> int:
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive"))


def joins_cluster(address: str | None) -> bool:
    """Whether the sweep runs on an existing Ray cluster: --address or $RAY_ADDRESS ("local" is
    Ray's word for a new one)."""
    address = address or os.environ.get("RAY_ADDRESS")
    return bool(address) and address != "local"


@contextlib.contextmanager
def joining(address: str | None) -> Iterator[None]:
    """Errors from starting or joining Ray (an address that does not answer, a cluster of
    another Ray version), as one UserError naming --address."""
    from sweep.cluster_nodes import version_refusal

    try:
        yield
    except RuntimeError as exc:  # Ray's version check: a driver of another Ray or Python
        refusal = version_refusal(str(exc), address)
        if refusal is None:
            raise
        raise UserError(refusal) from None
    except (ConnectionError, TimeoutError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        where = f"--address {address}" if address else "a local Ray"
        raise UserError(f"cannot start or join {where} ({first}). Fix: check the address "
                        "(`ray status` on the head node shows it), or leave --address out to "
                        "start a local Ray") from None
