"""The embedded event store: SQLite (WAL, ``synchronous=FULL``) through aiosqlite.

One connection per process does all writes through the group committer;
``BEGIN IMMEDIATE`` takes SQLite's write lock, so several processes on one
file still get a gap-free, commit-ordered log. Writers of several processes
(hypercorn workers, the CLI) first queue on an OS file lock beside the
database (``<file>.write-lock``): it hands over the moment the holder commits,
where SQLite's own busy handler would sleep up to 100 ms between tries. Statements are written with
``$1``-style parameters (shared with PostgreSQL); SQLite reads ``$1`` as a
named parameter, so arguments are passed as a mapping.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from .base import StoreBase
from .batch import GroupCommitter, PendingAppend, write_batch
from .errors import StoreUnavailable
from .store import InlineProjection

try:
    import fcntl
except ImportError:  # not POSIX: SQLite's busy handler alone serializes the processes
    fcntl = None  # type: ignore[assignment]

#: seconds a writer waits for another process's transaction before the store reports itself unavailable
LOCK_TIMEOUT = 5.0

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS events (
        position INTEGER PRIMARY KEY,
        stream_id TEXT NOT NULL,
        stream_version INTEGER NOT NULL,
        event_id TEXT NOT NULL UNIQUE,
        event_type TEXT NOT NULL,
        recorded_at REAL NOT NULL,
        data BLOB NOT NULL,
        prev_hash BLOB NOT NULL,
        hash BLOB NOT NULL,
        UNIQUE (stream_id, stream_version)
    )""",
    # stream versions are read from events; databases made before that kept them in a table of their own
    "DROP TABLE IF EXISTS streams",
    # the log is append-only: refuse UPDATE and DELETE at the database level
    """CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
       BEGIN SELECT RAISE(ABORT, 'events are append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
       BEGIN SELECT RAISE(ABORT, 'events are append-only'); END""",
]

class ProcessWriteLock:
    """An exclusive ``flock`` on a file beside the database, held around every write transaction.

    Taken at once when free. Otherwise one daemon thread blocks in ``flock`` and the
    kernel wakes it as soon as the holder releases. Each acquisition uses a descriptor of
    its own, so a waiter that was given up (cancelled, or after :data:`LOCK_TIMEOUT`) can
    never release a lock someone else holds: the next ``acquire`` takes over its wait, and
    if none comes, the lock is dropped the moment that thread gets it. Where ``flock`` is
    missing or refused (not POSIX, some network file systems) SQLite's own busy handler
    alone serializes the processes.
    """

    def __init__(self, path: str) -> None:
        self._path = None if path == ":memory:" else path + ".write-lock"
        self._enabled = fcntl is not None and self._path is not None
        self._held: int | None = None
        self._waiting: asyncio.Future[int] | None = None  # a blocked flock, at most one
        self._claimed = False  # whether an acquire is awaiting ``_waiting``

    def open(self) -> None:
        """Create the lock file (readable by the other processes of the deployment)."""
        if self._enabled:
            assert self._path is not None
            os.close(os.open(self._path, os.O_RDWR | os.O_CREAT, 0o640))

    def close(self) -> None:
        """Drop the lock if held (a pending wait drops it when its thread gets it)."""
        self.release()

    def _descriptor(self) -> int:
        assert self._path is not None
        try:
            return os.open(self._path, os.O_RDWR)
        except PermissionError:  # created by another user: flock works on a read-only descriptor too
            return os.open(self._path, os.O_RDONLY)

    async def acquire(self) -> None:
        if not self._enabled:
            return
        waiting = self._waiting
        if waiting is None:
            fd = self._descriptor()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._held = fd
                return
            except BlockingIOError:
                pass
            except OSError:  # flock refused here: fall back to SQLite's busy handler
                os.close(fd)
                self._enabled = False
                return
            waiting = self._waiting = self._block(fd)
        self._claimed = True
        try:
            self._held = await asyncio.wait_for(asyncio.shield(waiting), LOCK_TIMEOUT)
        except TimeoutError as exc:
            self._abandon(waiting)
            raise StoreUnavailable(f"another process has held the SQLite write lock for {LOCK_TIMEOUT} s") from exc
        except BaseException:
            self._abandon(waiting)
            raise
        self._waiting = None
        self._claimed = False

    def _abandon(self, waiting: asyncio.Future[int]) -> None:
        """Give up a wait: a lock it already got is dropped now, one it gets later when it arrives."""
        self._claimed = False
        if waiting.done():
            self._waiting = None
            if not waiting.cancelled() and waiting.exception() is None:
                fd = waiting.result()
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def _block(self, fd: int) -> asyncio.Future[int]:
        """Wait for the lock on a daemon thread (never joined at exit); the future yields ``fd`` once locked."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()

        def locked(error: BaseException | None) -> None:
            if error is not None:
                os.close(fd)
                self._waiting = None
                if self._claimed and not future.done():
                    future.set_exception(StoreUnavailable(f"cannot lock the SQLite write lock: {error}"))
            elif self._claimed and not future.done():
                future.set_result(fd)
            else:  # nobody wants it any more: hand it straight back
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
                self._waiting = None

        def run() -> None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                loop.call_soon_threadsafe(locked, exc)
                return
            try:
                loop.call_soon_threadsafe(locked, None)
            except RuntimeError:  # the loop is closed: nobody will take it
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

        threading.Thread(target=run, name="sqlite-write-lock", daemon=True).start()
        return future

    def release(self) -> None:
        fd, self._held = self._held, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _named(args: Sequence[Any]) -> dict[str, Any]:
    return {str(i): value for i, value in enumerate(args, start=1)}


class _SqliteTx:
    """:class:`eventstore.store.Tx` over an aiosqlite connection inside a transaction."""

    dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> None:
        await self._conn.execute(sql, _named(args))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            await self._conn.executemany(sql, [_named(r) for r in rows])

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        async with self._conn.execute(sql, _named(args)) as cursor:
            return [tuple(r) for r in await cursor.fetchall()]


def path_from_url(url: str) -> str:
    """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (``:memory:`` is refused)."""
    if not url.startswith("sqlite://"):
        raise ValueError(f"not a sqlite URL: {url!r}")
    rest = url[len("sqlite://") :]
    if rest in (":memory:", "/:memory:"):
        raise ValueError("sqlite://:memory: cannot work: Baton reads through a second connection; use a file path")
    return rest[1:] if rest.startswith("/") else rest


class SqliteEventStore(StoreBase):
    """The embedded :class:`eventstore.store.EventStore`."""

    dialect = "sqlite"

    def __init__(
        self,
        url_or_path: str,
        projections: Sequence[InlineProjection] = (),
        *,
        max_batch: int = 256,
        max_wait: float = 0.0,
    ) -> None:
        self._path = path_from_url(url_or_path) if url_or_path.startswith("sqlite:") else url_or_path
        self._projections = list(projections)
        self._conn: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._committer = GroupCommitter(self._flush, max_batch=max_batch, max_wait=max_wait)
        self._lock = asyncio.Lock()
        self._process_lock = ProcessWriteLock(self._path)

    async def open(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._process_lock.open()
            self._conn = await aiosqlite.connect(self._path, isolation_level=None)
            await self._conn.execute("PRAGMA journal_mode=WAL")
            await self._conn.execute("PRAGMA synchronous=FULL")
            await self._conn.execute("PRAGMA busy_timeout=5000")
            await self._conn.execute("PRAGMA foreign_keys=ON")
            async with self.transaction() as tx:
                for ddl in SCHEMA:
                    await tx.execute(ddl)
                for projection in self._projections:
                    for ddl in projection.schema(self.dialect):
                        await tx.execute(ddl)
            # reads use their own connection: they never see a batch that has not committed
            self._reader = await aiosqlite.connect(self._path, isolation_level=None)
            await self._reader.execute("PRAGMA busy_timeout=5000")
        except (sqlite3.Error, OSError) as exc:
            self._process_lock.close()
            raise StoreUnavailable(f"cannot open SQLite store {self._path}: {exc}") from exc
        self._committer.start()

    async def close(self) -> None:
        await self._committer.stop()
        for conn in (self._reader, self._conn):
            if conn is not None:
                await conn.close()
        self._conn = self._reader = None
        self._process_lock.close()

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreUnavailable("the SQLite store is not open")
        return self._conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SqliteTx]:
        """A write transaction (``BEGIN IMMEDIATE``), committed on success, rolled back on error."""
        conn = self._connection()
        async with self._lock:
            await self._process_lock.acquire()
            try:
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    yield _SqliteTx(conn)
                    await conn.execute("COMMIT")
                except BaseException:
                    # also after a failed COMMIT (BUSY, FULL, IOERR): never leave the connection
                    # inside a transaction, or every later BEGIN would fail until restart
                    if conn.in_transaction:
                        try:
                            await conn.execute("ROLLBACK")
                        except sqlite3.Error:
                            pass
                    raise
            finally:
                self._process_lock.release()

    async def _flush(self, batch: list[PendingAppend]) -> None:
        try:
            async with self.transaction() as tx:
                await write_batch(tx, batch, self._projections)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite write failed: {exc}") from exc

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        try:
            if self._reader is None:
                raise StoreUnavailable("the SQLite store is not open")
            async with self._reader.execute(sql, _named(args)) as cursor:
                return [tuple(r) for r in await cursor.fetchall()]
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite read failed: {exc}") from exc
