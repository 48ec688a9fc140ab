"""``baton`` commands end through ``SystemExit`` on SIGTERM and SIGHUP, so their clean-up runs to the end."""

from __future__ import annotations

import os
import signal

import pytest

from ops.cli import stopped_cleanly_on


@pytest.fixture(autouse=True)
def _default_handlers():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    for sig in saved:
        signal.signal(sig, signal.SIG_DFL)
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_sigterm_becomes_system_exit_and_the_handlers_are_restored() -> None:
    with pytest.raises(SystemExit) as stopped, stopped_cleanly_on(signal.SIGTERM, signal.SIGHUP):
        os.kill(os.getpid(), signal.SIGTERM)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and signal.getsignal(signal.SIGHUP) is signal.SIG_DFL


def test_a_second_signal_does_not_cut_the_clean_up_short() -> None:
    cleaned = []
    with pytest.raises(SystemExit), stopped_cleanly_on(signal.SIGTERM, signal.SIGHUP):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # e.g. a supervisor that repeats itself
            os.kill(os.getpid(), signal.SIGHUP)
            cleaned.append(True)
    assert cleaned == [True]


def test_a_signal_the_caller_ignores_stays_ignored() -> None:
    """Under ``nohup`` SIGHUP is ignored: a hang-up must not end the command."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with stopped_cleanly_on(signal.SIGTERM, signal.SIGHUP):
        os.kill(os.getpid(), signal.SIGHUP)
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
