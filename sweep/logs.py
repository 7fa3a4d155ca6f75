"""Ray's driver-side log: everything to a file in the experiment, little on the console.

The live view (sweep/progress.py) already reports trial failures and retries, so the console
shows Ray's warnings as single lines and leaves tracebacks to the file,
<experiment>/ray/driver.log (for a remote experiment the file is written locally and uploaded at
the end).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator

from sweep.layout import Experiment
from trainables.results.storage import join

log = logging.getLogger(__name__)

CONSOLE_SKIPS = (
    "Trial task failed for trial", "Trials did not complete",  # the live view reports these
    "Token authentication is enabled",  # a local Ray's default, nothing for the user to do
)


class _KeepFormatter:
    """ray.init() re-formats every handler of the "ray" logger; these keep their own."""

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        if getattr(self, "formatter", None) is None:
            super().setFormatter(fmt)  # type: ignore[misc]


class _FileHandler(_KeepFormatter, logging.FileHandler):
    """The driver log; a write that fails (the disk is full) stops the file, never the sweep.

    logging's own handlers print a traceback per failed record and raise from flush/close; the
    log is a convenience, so here the first failure is remembered and later records are
    dropped (the console still shows warnings)."""

    failed: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.failed is None:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        self.failed = str(sys.exc_info()[1] or "write failed")

    def write_line(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError) as exc:
            self.failed = str(exc)

    def flush(self) -> None:
        try:
            super().flush()
        except (OSError, ValueError) as exc:
            self.failed = str(exc)

    def close(self) -> None:
        try:
            super().close()
        except (OSError, ValueError) as exc:
            self.failed = self.failed or str(exc)
            with contextlib.suppress(Exception):
                self.stream = None  # type: ignore[assignment]


class _StreamHandler(_KeepFormatter, logging.StreamHandler):
    pass


class _OneLine(logging.Formatter):
    def __init__(self, log_path: str) -> None:
        super().__init__("ray %(levelname)s: %(message)s")
        self.log_path = log_path

    def format(self, record: logging.LogRecord) -> str:
        first = record.getMessage().strip().splitlines()[0] if record.getMessage().strip() else ""
        more = f" (details: {self.log_path})" if record.exc_info or "\n" in record.getMessage() else ""
        return f"ray {record.levelname.lower()}: {first[:300]}{more}"


class _ConsoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(CONSOLE_SKIPS)


@contextlib.contextmanager
def ray_driver_log(experiment: Experiment) -> Iterator[str]:
    """Route the "ray" logger to the experiment's driver.log (and one-liners to stderr) for the
    duration; restores Ray's own handlers afterwards. Yields the log's final location."""
    import ray  # noqa: F401  (configures the "ray" logger first)

    final = join(experiment.ray_dir, "driver.log")
    if experiment.is_remote:
        local = os.path.join(tempfile.mkdtemp(prefix="sweep-log-"), "driver.log")
    else:
        local = final
        os.makedirs(os.path.dirname(local), exist_ok=True)
    logger = logging.getLogger("ray")
    saved = (list(logger.handlers), logger.level)
    to_file = _FileHandler(local, encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    to_file.setLevel(logging.INFO)
    console = _StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    console.setFormatter(_OneLine(final))
    console.addFilter(_ConsoleFilter())
    logger.handlers = [to_file, console]
    to_file.write_line(f"--- sweep started {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n")
    try:
        yield final
    finally:
        logger.handlers, level = saved
        logger.setLevel(level)
        to_file.close()
        if to_file.failed:
            log.warning("the driver log %s is incomplete: %s", final, to_file.failed)
        if experiment.is_remote:
            with contextlib.suppress(Exception):
                import pyarrow.fs as pafs

                fs, path = experiment.fs()
                stamp = time.strftime("%Y%m%d-%H%M%S")
                pafs.copy_files(local, f"{path}/{experiment.ray_name}/driver-{stamp}.log",
                                source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
