"""The sweep's messages go through logging; one handler prints them as the CLI always did."""

from __future__ import annotations

import contextlib
import io
import logging

from sweep.console import console_output


def test_information_on_stdout_warnings_and_errors_on_stderr_with_their_word(capsys):
    log = logging.getLogger("sweep.some_module")
    with console_output():
        log.info("grid: %d trials", 3)
        log.warning("compacting failed")
        log.error("--seeds must be a whole number")
        log.error("\ninterrupted: saved", extra={"prefix": ""})
        log.debug("not shown")
    out, err = capsys.readouterr()
    assert out == "grid: 3 trials\n"
    assert err == ("warning: compacting failed\nerror: --seeds must be a whole number\n"
                   "\ninterrupted: saved\n")


def test_the_stream_is_looked_up_per_message_and_the_handler_leaves_with_the_block():
    log = logging.getLogger("sweep.other")
    with console_output():
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            log.info("seen")
    assert captured.getvalue() == "seen\n"
    assert logging.getLogger("sweep").handlers == []


def test_records_still_reach_caplog(caplog):
    with caplog.at_level(logging.INFO, logger="sweep"), console_output():
        logging.getLogger("sweep.run").info("results: %s", "/r")
    assert [r.getMessage() for r in caplog.records] == ["results: /r"]
