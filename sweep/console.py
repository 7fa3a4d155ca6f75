"""The sweep's console: its messages go through `logging`, one handler prints them.

Every sweep module logs to its own logger (`logging.getLogger(__name__)`, all under "sweep").
`python -m sweep.run` installs one handler for the length of the command (`console_output`): a
record is printed as one plain line, information on stdout, warnings and errors on stderr with
"warning: " or "error: " before them (a record's `prefix` extra replaces that word). The stream is
looked up per record, so pytest's capsys and contextlib.redirect_stdout see every line, and
records still propagate to the root logger (pytest's caplog). The live progress view
(sweep/progress.py) redraws a block in place and writes to the terminal itself.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

LOGGER = "sweep"
PREFIXES = {logging.WARNING: "warning: ", logging.ERROR: "error: ", logging.CRITICAL: "error: "}


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = getattr(record, "prefix", None)
        return (PREFIXES.get(record.levelno, "") if prefix is None else prefix) + record.getMessage()


class ConsoleHandler(logging.Handler):
    """Information to stdout, warnings and errors to stderr: whatever those are at the time."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(ConsoleFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stdout if record.levelno < logging.WARNING else sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def console_output(name: str = LOGGER) -> Iterator[logging.Handler]:
    """Print the `name` logger's records (INFO and up) while the block runs."""
    logger = logging.getLogger(name)
    handler = ConsoleHandler()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
