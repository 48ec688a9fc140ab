"""Store commands: ``baton migrate``, ``baton verify``, ``baton export-checkpoints``, ``baton bench-store``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

import msgspec
from joserfc.jwk import KeySet

from app.config import Config, ConfigError, load_config
from app.key_lifecycle import checkpoint_keys
from app.keys import KeyError_, KeyRing, KeyRingSigner, read_key_file
from eventstore import StoreError, open_store
from eventstore.checkpoints import CHECKPOINT_TYP
from eventstore.batch import EVENTS_INSERT
from eventstore.migrate import grant_runtime_role, load_migrations, migrate
from eventstore.pg_bulk import create_row_types
from eventstore.store import EventStore
from eventstore.verify import checkpoint_records, export_lines, read_checkpoints_file, verify
from projections.schema import projection_bulk_inserts, projection_ddl

DEFAULT_CONFIG = os.environ.get("BATON_CONFIG", "baton.toml")


def keyring_signer(ring: KeyRing) -> KeyRingSigner:
    """Adapt the application's key ring to the checkpoint :class:`~eventstore.checkpoints.Signer`."""
    return KeyRingSigner(lambda: ring, CHECKPOINT_TYP)


def _verification_keys(config: Config, jwks: str | None) -> KeySet:
    if jwks:
        return KeySet.import_key_set(msgspec.json.decode(Path(jwks).read_bytes()))
    # never create a key here: a fresh key would make every stored checkpoint "unknown kid"
    # removed keys stay in the file as public tombstones: old checkpoints still verify
    return checkpoint_keys(read_key_file(config.signing.keys))


class ProgressBar:
    """A one-line progress bar on a terminal (a line every 10 % otherwise)."""

    def __init__(self, label: str, stream: TextIO = sys.stderr) -> None:
        self._label = label
        self._stream = stream
        self._tty = stream.isatty()
        self._started = time.perf_counter()
        self._last_decile = -1

    def __call__(self, done: int, total: int) -> None:
        fraction = done / total if total else 1.0
        rate = done / max(time.perf_counter() - self._started, 1e-9)
        if self._tty:
            bar = "#" * int(fraction * 30)
            self._stream.write(f"\r{self._label} [{bar:<30}] {fraction:6.1%} {done}/{total} ({rate:,.0f}/s)")
        elif int(fraction * 10) != self._last_decile:
            self._last_decile = int(fraction * 10)
            self._stream.write(f"{self._label}: {done}/{total} ({rate:,.0f}/s)\n")
        self._stream.flush()

    def close(self) -> None:
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()


async def with_store(config: Config, work: Callable[[EventStore], Awaitable[int]], *, read_only: bool = False) -> int:
    """Open the configured store, run ``work`` on it, close it; ``read_only`` never migrates PostgreSQL."""
    url = config.store.url
    if read_only and not url.startswith("sqlite:"):
        from eventstore.postgres import PostgresEventStore

        store: EventStore = PostgresEventStore(url, migrate=False)  # verify must not change what it checks
    else:
        store = open_store(url)
    await store.open()
    try:
        return await work(store)
    finally:
        await store.close()


async def _opened(store: EventStore) -> int:
    return 0


def _load(args: argparse.Namespace) -> Config | None:
    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(f"baton: {exc}", file=sys.stderr)
        return None


def run_command(args: argparse.Namespace, body: Callable[[Config], Awaitable[int]]) -> int:
    """Load ``--config``, run ``body`` in a fresh event loop; store, key and file errors exit 2."""
    config = _load(args)
    if config is None:
        return 2
    try:
        return asyncio.run(body(config))
    except (StoreError, KeyError_, OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        print(f"baton: {exc}", file=sys.stderr)
        return 2


# names ops/cmd_projections.py imported before these were public
_with_store, _run = with_store, run_command


def _read_only(config: Config) -> dict[str, Any]:
    return {"read_only": True}


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply pending PostgreSQL migrations (SQLite creates its schema when opened)."""

    async def body(config: Config) -> int:
        url = config.store.url
        if url.startswith("sqlite:"):
            await with_store(config, _opened)
            print("SQLite store: schema is created when the store opens; nothing to migrate")
            return 0
        import asyncpg

        try:
            conn = await asyncpg.connect(url, timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
        try:
            # the views' tables too: a runtime role (migrate_on_start = false) cannot create them
            applied = await migrate(conn, extra_ddl=projection_ddl("postgresql"))
            for m in applied:
                print(f"applied {m.version:04d}_{m.name}")
            if not applied:
                print(f"up to date (version {len(load_migrations())})")
            # the row types of the many-row inserts: a runtime role may not create them itself
            ready = await create_row_types(conn, [EVENTS_INSERT, *projection_bulk_inserts()])
            print(f"row types for bulk inserts: {ready} in place")
            if args.grant:
                await grant_runtime_role(conn, args.grant)
                print(f"granted runtime privileges to {args.grant} (events: SELECT, INSERT only)")
        finally:
            await conn.close()
        return 0

    return run_command(args, body)


def cmd_verify(args: argparse.Namespace) -> int:
    """Re-walk the chain and the signed checkpoints; exit 1 and name the first bad position."""

    async def body(config: Config) -> int:
        keys = _verification_keys(config, args.jwks)
        exported = read_checkpoints_file(args.checkpoints) if args.checkpoints else []
        bar = ProgressBar("verify")

        async def work(store: EventStore) -> int:
            report = await verify(store, keys, from_position=args.from_position, exported=exported, progress=bar)
            bar.close()
            print(
                f"checked {report.checked_events} events ({report.from_position}…{report.to_position}) "
                f"and {report.checked_checkpoints} signed checkpoints"
            )
            for note in report.notes:
                print(f"note: {note}")
            if report.problem is not None:
                print(f"FAILED at position {report.problem.position}: {report.problem.reason}")
                return 1
            print("OK")
            return 0

        return await with_store(config, work, read_only=True)

    return run_command(args, body)


def cmd_export_checkpoints(args: argparse.Namespace) -> int:
    """Write every signed checkpoint as JSON Lines (to a file or stdout)."""

    async def body(config: Config) -> int:
        async def work(store: EventStore) -> int:
            lines = list(export_lines(await checkpoint_records(store)))
            if args.output in (None, "-"):
                sys.stdout.buffer.write(b"".join(lines))
            else:
                Path(args.output).write_bytes(b"".join(lines))
                print(f"wrote {len(lines)} checkpoints to {args.output}", file=sys.stderr)
            return 0

        return await with_store(config, work, read_only=True)

    return run_command(args, body)


def cmd_bench_store(args: argparse.Namespace) -> int:
    """Run the append benchmark (ops/bench_store.py)."""
    from ops.bench_store import run_cli

    return run_cli(args)


def register(subparsers: Any) -> None:
    """Add the store commands to ``baton``."""
    p = subparsers.add_parser("migrate", help="apply database migrations")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="baton.toml (default: %(default)s)")
    p.add_argument("--grant", metavar="ROLE", help="also grant the runtime privileges to ROLE")
    p.set_defaults(func=cmd_migrate)

    p = subparsers.add_parser("verify", help="re-walk the hash chain and check signed checkpoints")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="baton.toml (default: %(default)s)")
    p.add_argument("--from", dest="from_position", type=int, default=1, metavar="P", help="start at position P")
    p.add_argument("--checkpoints", metavar="FILE", help="an exported checkpoints file to check against")
    p.add_argument("--jwks", metavar="FILE", help="public JWK set to verify with (default: the signing keys)")
    p.set_defaults(func=cmd_verify)

    p = subparsers.add_parser("export-checkpoints", help="write the signed checkpoints as JSON Lines")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="baton.toml (default: %(default)s)")
    p.add_argument("-o", "--output", metavar="FILE", help="output file (default: stdout)")
    p.set_defaults(func=cmd_export_checkpoints)

    from ops.bench_store import add_arguments

    p = subparsers.add_parser("bench-store", help="measure PostgreSQL appends/s (group commit, chain cost)")
    add_arguments(p)
    p.set_defaults(func=cmd_bench_store)
