"""The ``baton`` command line. Each ``ops/cmd_*.py`` module registers its own subcommands.

A command module exposes ``register(subparsers)``; it adds parsers whose
``func`` default is a callable taking the parsed ``argparse.Namespace`` and
returning an exit code. SIGTERM and SIGHUP end a command through ``SystemExit``, so
its clean-up runs; a command that handles them itself (a server) sets the default
``handles_signals``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

#: command modules, in the order their commands appear in ``baton --help``
COMMAND_MODULES = (
    "ops.cmd_server",  # serve, demo, init
    "ops.cmd_keys",  # keys …, hash-secret
    "ops.cmd_store",  # migrate, verify, export-checkpoints, export
    "ops.cmd_revoke",  # revoke
    "ops.cmd_projections",  # replay, projections status, audit …
    "ops.cmd_bench",  # bench
)

#: options whose value is an identifier Baton minted or copied from a token: a jti or a key's thumbprint
#: kid is base64url, so one in 64 begins with "-", which argparse would take for an option of its own
IDENTIFIER_OPTIONS = frozenset({"--jti", "--kid"})


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="baton",
        description="Baton: an OAuth 2.0 Token Exchange (RFC 8693) Security Token Service.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that command group is not built yet
                continue
            raise
        module.register(sub)
    return parser


def attach_identifier_values(argv: Sequence[str]) -> list[str]:
    """``--jti VALUE`` as ``--jti=VALUE``, so a value that begins with ``-`` is still the option's value."""
    out: list[str] = []
    items = iter(argv)
    for arg in items:
        if arg == "--":
            out.append(arg)
            out.extend(items)
            break
        if arg in IDENTIFIER_OPTIONS:
            value = next(items, None)
            out.append(arg if value is None else f"{arg}={value}")
        else:
            out.append(arg)
    return out


@contextlib.contextmanager
def stopped_cleanly_on(*signals: signal.Signals) -> Iterator[None]:
    """Turn ``signals`` into :class:`SystemExit` meanwhile, so that ``finally`` blocks run.

    Python's default for SIGTERM ends the process on the spot: a benchmark killed by a
    supervisor would leave the servers it started running and its throwaway database or
    schema behind.
    """

    def stop(signum: int, _frame: object) -> None:
        for sig in previous:  # a second signal must not cut the clean-up short (SIGKILL still does)
            signal.signal(sig, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    # a signal the caller set aside (``nohup`` ignores SIGHUP) stays as it was
    previous = {sig: signal.signal(sig, stop) for sig in signals if signal.getsignal(sig) is signal.SIG_DFL}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``baton`` console script."""
    parser = build_parser()
    args = parser.parse_args(attach_identifier_values(sys.argv[1:] if argv is None else argv))
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    # a server drains on SIGTERM itself
    signals = () if getattr(args, "handles_signals", False) else (signal.SIGTERM, signal.SIGHUP)
    with stopped_cleanly_on(*signals):
        return int(func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
