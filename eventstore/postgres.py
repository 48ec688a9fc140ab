"""The production event store: PostgreSQL through an asyncpg pool.

Ordering: every write transaction first takes one transaction-scoped advisory
lock (``pg_advisory_xact_lock``, keyed by schema), then reads the chain head
and assigns ``head + 1 …`` (:func:`eventstore.batch.write_batch`). The lock is
released only after COMMIT is visible, so positions are gap-free and commit
order equals position order across every Baton instance sharing the schema: a
reader following ``position > last`` can never skip a late commit. Group
commit pays that lock once per batch, not once per event, and asks for the next
batch's lock while the current batch is written (:mod:`eventstore.lock_ahead`),
so a batch's own path is three round trips: the state read, the inserts, COMMIT.

Failure: connect, acquire and command timeouts are bounded, so with the
database down ``append`` and ``fetch`` raise :class:`StoreUnavailable` instead
of hanging; the pool replaces dead connections on the next acquire, so the
store recovers by itself when the database returns.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from .base import StoreBase
from .batch import EVENTS_INSERT, GroupCommitter, PendingAppend, write_batch
from .errors import StoreUnavailable
from .lock_ahead import LockAhead
from .migrate import ensure_current, migrate
from .pg_bulk import BulkInserts, create_row_types
from .store import InlineProjection

#: SQLSTATE classes that mean "try again later", not "your SQL is wrong":
#: 08 connection, 40 transaction rollback, 53 resources, 57 operator intervention
_TRANSIENT_CLASSES = ("08", "40", "53", "57")
_BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"
#: writes of a batch whose connection died: the first and up to two on fresh connections (see _flush)
_WRITE_ATTEMPTS = 3
#: the smallest pool with which the group commit asks for the next batch's lock ahead (see LockAhead)
_POOL_FOR_LOCK_AHEAD = 3
#: channel notified after each commit that appended events (payload: the schema), see migration 0003
NOTIFY_CHANNEL = "baton_events"


def is_transient(exc: BaseException) -> bool:
    """True for failures of the connection or the server, as opposed to bad SQL or data."""
    # InternalClientError: a pooled connection left mid-operation when its backend was terminated
    # ("cannot switch to state …; another operation is in progress")
    if isinstance(exc, (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError)):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "")[:2] in _TRANSIENT_CLASSES
    return False


@contextlib.contextmanager
def _unavailable_if_transient() -> Iterator[None]:
    """Raise a failure of the connection or the server as :class:`StoreUnavailable` (its ``__cause__``)."""
    try:
        yield
    except Exception as exc:
        if is_transient(exc):
            raise StoreUnavailable(f"PostgreSQL unavailable: {type(exc).__name__}") from exc
        raise


def _lost_connection(exc: BaseException) -> bool:
    """An established connection died (terminated, server restart): a retry on a fresh one may succeed."""
    # InternalClientError and InterfaceError: what asyncpg raises, depending on timing, for the next statement on a
    # connection whose backend was terminated between two statements ("another operation is in progress", or the
    # pool proxy's "connection has been released back to the pool": asyncpg hands a dead connection back itself)
    lost = (
        asyncpg.ConnectionDoesNotExistError, asyncpg.exceptions.AdminShutdownError, asyncpg.InternalClientError,
        asyncpg.InterfaceError,
    )
    if isinstance(exc, lost):
        return True
    return isinstance(exc, asyncpg.PostgresError) and str(getattr(exc, "sqlstate", "") or "").startswith("08")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset hook: nothing beyond asyncpg's own rollback of an open transaction.

    Baton sets no session state on pooled connections (its advisory locks are
    transaction-scoped, LISTEN uses a dedicated connection), so the default reset
    (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``) would only add a
    round trip and a transaction to every read.
    """


class _Session:
    """A connection taken from a pool, given back to that same pool (even if the store closed meanwhile)."""

    __slots__ = ("conn", "pool")

    def __init__(self, pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
        self.pool = pool
        self.conn = conn

    def usable(self) -> bool:
        """False once the connection died: it cannot roll back, and the pool discards it."""
        try:
            return not self.conn.is_closed()
        except asyncpg.InterfaceError:  # a dying connection is handed back to its pool by asyncpg itself
            return False

    async def release(self, timeout: float) -> None:
        # a failure to give it back is the pool's: it terminates and replaces the connection
        with contextlib.suppress(Exception):
            await self.pool.release(self.conn, timeout=timeout)


class _PgTx:
    """:class:`eventstore.store.Tx` over an asyncpg connection inside a transaction.

    ``executemany`` inserts wait until the transaction's next other statement (or its
    COMMIT) and then go together, as few statements as they allow (see
    :meth:`BulkInserts.execute_all`): a group commit's event rows and its lineage rows
    travel in one round trip. A failing insert therefore raises from that later call;
    either way the transaction rolls back whole.
    """

    dialect = "postgresql"

    def __init__(self, conn: asyncpg.Connection, bulk: BulkInserts) -> None:
        self._conn = conn
        self._bulk = bulk
        self._inserts: list[tuple[str, Sequence[Sequence[Any]]]] = []

    async def execute(self, sql: str, *args: Any) -> None:
        await self.flush()
        await self._conn.execute(sql, *args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._inserts.append((sql, rows))

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        await self.flush()
        return [tuple(r) for r in await self._conn.fetch(sql, *args)]

    async def flush(self) -> None:
        """Run the queued inserts now."""
        inserts, self._inserts = self._inserts, []
        if inserts:
            await self._bulk.execute_all(self._conn, inserts)


class PostgresEventStore(StoreBase):
    """The PostgreSQL :class:`eventstore.store.EventStore`.

    ``migrate=True`` applies pending migrations and the projections' DDL at
    :meth:`open` (needs a role that may create tables); with ``False`` the
    store only checks that ``baton migrate`` has been run, which is how the
    INSERT/SELECT-only runtime role opens it.
    """

    dialect = "postgresql"

    def __init__(
        self,
        url: str,
        projections: Sequence[InlineProjection] = (),
        *,
        max_batch: int = 256,
        max_wait: float = 0.0,
        migrate: bool = True,
        pool_min: int = 1,
        pool_max: int = 10,
        connect_timeout: float = 3.0,
        command_timeout: float = 5.0,
        application_name: str = "baton",
    ) -> None:
        self._url = url
        self._projections = list(projections)
        self._migrate = migrate
        self._pool_min, self._pool_max = pool_min, pool_max
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._application_name = application_name
        self._pool: asyncpg.Pool | None = None
        self._lock_key = 0
        self._schema = ""
        # the lock taken ahead needs a second connection while a batch is written, and one spare for the
        # rest (row-type lookups, reads): smaller pools take the lock batch by batch
        self._lock_ahead: LockAhead[_Session] = LockAhead(
            self._begin_locked,
            self._abandon,
            lambda: self._committer.queued() > 0,
            enabled=pool_max >= _POOL_FOR_LOCK_AHEAD,
        )
        self._committer = GroupCommitter(
            self._flush, max_batch=max_batch, max_wait=max_wait, lock=self._lock_ahead
        )
        self._bulk = BulkInserts(self._connection)

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._url,
                min_size=self._pool_min,
                max_size=self._pool_max,
                timeout=self._connect_timeout,
                command_timeout=self._command_timeout,
                # JIT compilation costs tens of ms and only pays off for analytics; Baton's
                # statements are short OLTP (a cascade revoke paid ~25 ms of JIT for 1 ms of work)
                server_settings={"application_name": self._application_name, "jit": "off"},
                reset=_keep_session,
                # batched statements differ by their number of IN (…) parameters: keep them all prepared
                statement_cache_size=2048,
            )
            async with self._pool.acquire(timeout=self._connect_timeout) as conn:
                if self._migrate:
                    ddl = [d for p in self._projections for d in p.schema(self.dialect)]
                    await migrate(conn, extra_ddl=ddl)
                    inserts = [sql for p in self._projections for sql in getattr(p, "bulk_inserts", ())]
                    await create_row_types(conn, [EVENTS_INSERT, *inserts])
                else:
                    await ensure_current(conn)
                # one lock per schema: deployments sharing a database do not serialize each other
                self._schema, self._lock_key = await conn.fetchrow(
                    "SELECT current_schema(), hashtextextended('baton.events.' || current_schema(), 0)"
                )
        except Exception as exc:
            await self._drop_pool()
            if is_transient(exc):
                raise StoreUnavailable(f"cannot open the PostgreSQL store: {type(exc).__name__}: {exc}") from exc
            raise
        self._committer.start()

    async def close(self) -> None:
        await self._committer.stop()
        await self._lock_ahead.drop()
        await self._drop_pool()

    async def _drop_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self._command_timeout)
            except (TimeoutError, OSError, asyncpg.InterfaceError):
                pool.terminate()

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreUnavailable("the PostgreSQL store is not open")
        return self._pool

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        pool = self._require_pool()
        with _unavailable_if_transient():
            async with pool.acquire(timeout=self._connect_timeout) as conn:
                yield conn

    async def listen(self, callback: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """Call ``callback`` after commits that appended events; returns an async unsubscribe.

        A wake-up hint on a dedicated connection (LISTEN): if that connection
        is lost, notifications stop and followers must keep polling.
        """
        try:
            conn = await asyncpg.connect(
                self._url,
                timeout=self._connect_timeout,
                server_settings={"application_name": self._application_name},
            )
        except Exception as exc:
            if is_transient(exc):
                raise StoreUnavailable(f"cannot LISTEN: {type(exc).__name__}") from exc
            raise

        def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            if payload == self._schema:
                callback()

        await conn.add_listener(NOTIFY_CHANNEL, on_notify)

        async def unlisten() -> None:
            if not conn.is_closed():
                try:
                    await asyncio.wait_for(conn.close(), self._command_timeout)
                except (TimeoutError, OSError, asyncpg.InterfaceError):
                    conn.terminate()

        return unlisten

    async def _begin(self, *, write_lock: bool) -> _Session:
        """A pooled connection inside a new transaction, holding the append lock if asked."""
        pool = self._require_pool()
        with _unavailable_if_transient():
            session = _Session(pool, await pool.acquire(timeout=self._connect_timeout))
            try:
                # BEGIN and the lock travel as one simple query: one round trip fewer per group commit.
                # READ COMMITTED whatever the server's default: each statement must see what committed before
                # it, e.g. the chain head after the lock wait (a repeatable-read snapshot would predate the wait)
                await session.conn.execute(
                    f"{_BEGIN}; SELECT pg_advisory_xact_lock({self._lock_key:d})" if write_lock else _BEGIN
                )
            except BaseException:
                await self._abandon(session)
                raise
        return session

    async def _begin_locked(self) -> _Session:
        return await self._begin(write_lock=True)

    async def _abandon(self, session: _Session) -> None:
        """Roll back the session's transaction (if it can) and give its connection back to its pool."""
        try:
            if session.usable():
                with contextlib.suppress(Exception):
                    await session.conn.execute("ROLLBACK")
        finally:
            await session.release(self._command_timeout)

    @asynccontextmanager
    async def _finish(self, session: _Session) -> AsyncIterator[_PgTx]:
        """Run the body in the session's open transaction: COMMIT after it, ROLLBACK on error; then release."""
        with _unavailable_if_transient():
            try:
                tx = _PgTx(session.conn, self._bulk)
                yield tx
                await tx.flush()
                await session.conn.execute("COMMIT")
            except BaseException:
                await self._abandon(session)
                raise
        await session.release(self._command_timeout)

    @asynccontextmanager
    async def transaction(self, *, write_lock: bool = True) -> AsyncIterator[_PgTx]:
        """A transaction, committed on success, rolled back on error.

        By default it holds the append lock, like SQLite's ``BEGIN IMMEDIATE``
        (projection rebuilds must not interleave with appends). A runner that
        only writes its own tables may pass ``write_lock=False`` so that it
        does not stall appends.
        """
        async with self._finish(await self._begin(write_lock=write_lock)) as tx:
            yield tx

    async def _flush(self, batch: list[PendingAppend]) -> None:
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                await self._write(batch)
                return
            except StoreUnavailable as exc:
                if attempt + 1 == _WRITE_ATTEMPTS or exc.__cause__ is None or not _lost_connection(exc.__cause__):
                    raise
            # The connection died under us (and with a server restart, others of the pool did too: the
            # client learns of each only when it next uses it, and the transaction opened ahead may be one).
            # Retrying is safe even if COMMIT had reached the server: event ids are idempotent, so a
            # committed batch comes back as the stored records.
            for item in batch:
                item.result = item.error = None

    async def _write(self, batch: list[PendingAppend]) -> None:
        session = await self._lock_ahead.hold()
        try:
            async with self._finish(session) as tx:
                await write_batch(tx, batch, self._projections)
        finally:
            self._lock_ahead.released()

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        async with self._connection() as conn:
            return [tuple(r) for r in await conn.fetch(sql, *args)]
