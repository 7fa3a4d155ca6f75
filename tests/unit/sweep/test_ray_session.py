"""The Ray session's signal handling: SIGTERM stops a sweep like Ctrl-C."""

from __future__ import annotations

import signal
import time

import pytest


def test_sigterm_stops_a_sweep_like_ctrl_c_and_the_old_handler_returns():
    import os

    from sweep.ray_session import sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal arrives within this
    assert signal.getsignal(signal.SIGTERM) is before
