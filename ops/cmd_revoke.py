"""``baton revoke``: administrative revocation from the operator's shell.

Appends ``TokenRevoked`` / ``SubjectRevoked`` / ``ClientRevoked`` directly to
the event store named by the configuration; the lineage projection is updated
in the same transaction, so every running instance refuses the revoked tokens
on their next lookup.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import math
import sys
from datetime import datetime

from app.config import ConfigError, load_config
from app.revocation import revoke_client, revoke_subject, revoke_token
from eventstore import StoreError, open_store
from projections.lineage import LineageProjection


def parse_instant(text: str) -> float:
    """Epoch seconds, or an ISO 8601 instant (``2026-11-23T12:00:00Z``)."""
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"not a finite instant: {text!r}")
        return value
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an instant: {text!r} (epoch seconds or ISO 8601)") from exc
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("give the instant with a time zone, e.g. 2026-11-23T12:00:00Z")
    return moment.timestamp()


async def _revoke(args: argparse.Namespace) -> str:
    config = load_config(args.config)
    store = open_store(config.store.url, [LineageProjection()])
    await store.open()
    by = f"operator:{args.by or getpass.getuser()}"
    try:
        if args.jti:
            record = await revoke_token(store, args.jti, by=by, reason=args.reason, cascade=not args.no_cascade)
        elif args.subject:
            iss, sub = args.subject
            record = await revoke_subject(store, iss, sub, by=by, reason=args.reason, before=args.before)
        else:
            record = await revoke_client(store, args.client, by=by, reason=args.reason, before=args.before)
        return f"{record.event_type} appended at position {record.position}"
    finally:
        await store.close()


def _run(args: argparse.Namespace) -> int:
    try:
        print(asyncio.run(_revoke(args)))
    except ConfigError as exc:
        print(f"baton revoke: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"baton revoke: event store: {exc}", file=sys.stderr)
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``baton revoke``."""
    parser = subparsers.add_parser(
        "revoke",
        help="revoke a token and its lineage, a subject's tokens, or a client's tokens",
        description="Revoke tokens. A revoked token takes every token exchanged from it down with it.",
    )
    parser.add_argument("--config", required=True, help="path to baton.toml")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--jti", help="revoke this issued token (and its descendants)")
    target.add_argument("--subject", nargs=2, metavar=("ISS", "SUB"), help="revoke every token of this user")
    target.add_argument("--client", metavar="ID", help="revoke every token issued to this client")
    parser.add_argument("--before", type=parse_instant, help="only tokens issued before this instant (default: now)")
    parser.add_argument("--reason", default="", help="why (recorded in the event)")
    parser.add_argument("--by", help="who is revoking (default: the OS user)")
    parser.add_argument("--no-cascade", action="store_true", help="with --jti: spare the descendants")
    parser.set_defaults(func=_run)
    register_bench(subparsers)


def register_bench(subparsers: argparse._SubParsersAction) -> None:
    """Add ``baton bench-revocation`` (lives in ops/bench_lineage.py)."""
    from ops.bench_lineage import register as register_lineage_bench

    register_lineage_bench(subparsers)
