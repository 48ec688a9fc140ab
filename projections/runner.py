"""The asynchronous projection runner: follows the log into read models, exactly once.

Each batch is one transaction that (1) takes or renews the projection's lease,
(2) reads the checkpoint, (3) reads the next events, (4) applies them to the
view and (5) moves the checkpoint. View and checkpoint commit together, so a
crash re-applies nothing and skips nothing (exactly-once effect); positions
are gap-free in commit order, so following ``position > checkpoint`` never
skips a late commit.

One runner per projection is active across instances: the lease row in
``projection_leases`` (owner id + expiry) is taken inside the same transaction
that writes the view, which also fences a runner that lost its lease — its
next batch sees another owner and rolls back. Leases use wall-clock time of
the runner's host; keep instance clocks in sync (NTP) and the lease long
compared to the skew.

PostgreSQL ``LISTEN/NOTIFY`` (``store.listen`` when the backend offers it) is
only a wake-up hint; polling is the source of truth.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec
from prometheus_client import Counter, Gauge

from eventstore import EventStore, RecordedEvent, StoreError, Tx
from eventstore.batch import RECORD_COLUMNS, row_to_record

log = logging.getLogger("baton.projections")

RUNNER_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS projection_checkpoints (
        name TEXT PRIMARY KEY,
        position BIGINT NOT NULL,
        rebuild_from BIGINT,
        updated_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS projection_leases (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    )""",
]

CHECKPOINT_GAUGE = Gauge(
    "baton_projection_checkpoint_position", "Last log position applied to the projection", ["projection"]
)
LAG_GAUGE = Gauge("baton_projection_lag_events", "Log head position minus the projection checkpoint", ["projection"])
APPLIED_COUNTER = Counter("baton_projection_events_applied", "Events applied to the projection", ["projection"])


class AsyncProjection(Protocol):
    """A read model caught up from the log by the runner (not inside the append)."""

    name: str

    def schema(self, dialect: str) -> list[str]:
        """Idempotent DDL (``CREATE … IF NOT EXISTS``) for ``dialect`` (``sqlite`` or ``postgresql``)."""

    async def apply(self, tx: Tx, records: Sequence[RecordedEvent]) -> None:
        """Update the view from ``records`` (in position order, each applied exactly once)."""

    async def reset(self, tx: Tx) -> None:
        """Delete every row of the view (before a rebuild)."""


class ProjectionStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Where a projection stands: its checkpoint, the log head, the lag, who runs it."""

    name: str
    checkpoint: int
    head: int
    lag: int
    rebuilding_from: int | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None


class RebuildProgress(msgspec.Struct, frozen=True, kw_only=True):
    """Progress of a rebuild, passed to the progress callback after each batch."""

    projection: str
    position: int
    head: int
    events: int
    elapsed: float

    @property
    def events_per_second(self) -> float:
        """Replay speed so far."""
        return self.events / self.elapsed if self.elapsed > 0 else 0.0


class LeaseLost(StoreError):
    """Another runner holds this projection's lease; nothing was written."""


ProgressCallback = Callable[[RebuildProgress], None]


async def ensure_schema(store: EventStore, projections: Sequence[AsyncProjection] = ()) -> None:
    """Create the runner tables and each projection's tables if missing."""
    async with store.transaction() as tx:
        for ddl in RUNNER_SCHEMA:
            await tx.execute(ddl)
        for projection in projections:
            for ddl in projection.schema(tx.dialect):
                await tx.execute(ddl)


async def _head(tx: Tx) -> int:
    rows = await tx.fetch("SELECT position FROM events ORDER BY position DESC LIMIT 1")
    return int(rows[0][0]) if rows else 0


async def _checkpoint(tx: Tx, name: str) -> tuple[int, int | None]:
    rows = await tx.fetch("SELECT position, rebuild_from FROM projection_checkpoints WHERE name = $1", name)
    if not rows:
        return 0, None
    return int(rows[0][0]), (None if rows[0][1] is None else int(rows[0][1]))


async def _save_checkpoint(tx: Tx, name: str, position: int, rebuild_from: int | None, now: float) -> None:
    await tx.execute(
        "INSERT INTO projection_checkpoints (name, position, rebuild_from, updated_at) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (name) DO UPDATE SET position = excluded.position, "
        "rebuild_from = excluded.rebuild_from, updated_at = excluded.updated_at",
        name,
        position,
        rebuild_from,
        now,
    )


async def take_lease(tx: Tx, name: str, owner: str, now: float, seconds: float, *, steal: bool = False) -> bool:
    """Take or renew ``name``'s lease for ``owner`` inside ``tx``; True when ``owner`` holds it afterwards.

    A lease is taken when free, expired, already ours, or when ``steal`` is set
    (a rebuild takes over from the live runner, which is fenced at its next batch).
    """
    condition = "" if steal else " WHERE projection_leases.owner = excluded.owner OR projection_leases.expires_at < $4"
    await tx.execute(
        "INSERT INTO projection_leases (name, owner, expires_at) VALUES ($1, $2, $3) "
        "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at" + condition,
        name,
        owner,
        now + seconds,
        *(() if steal else (now,)),
    )
    rows = await tx.fetch("SELECT owner FROM projection_leases WHERE name = $1", name)
    return bool(rows) and rows[0][0] == owner


def runner_transaction(store: EventStore) -> Any:
    """A transaction for the runner's own tables: on PostgreSQL it skips the append lock.

    Appends are not stalled by view updates; positions are commit-ordered, so
    reading ``position > checkpoint`` without that lock still never skips.
    """
    if "write_lock" in inspect.signature(store.transaction).parameters:
        return store.transaction(write_lock=False)
    return store.transaction()


async def release_lease(store: EventStore, name: str, owner: str) -> None:
    """Give up ``name``'s lease if ``owner`` holds it, so another instance takes over at once."""
    async with runner_transaction(store) as tx:
        await tx.execute("DELETE FROM projection_leases WHERE name = $1 AND owner = $2", name, owner)


async def _advance(
    tx: Tx, projection: AsyncProjection, limit: int, now: float
) -> tuple[int, int, int | None]:
    """Apply the next ``limit`` events after the checkpoint; returns (applied, checkpoint, rebuild_from)."""
    checkpoint, rebuild_from = await _checkpoint(tx, projection.name)
    rows = await tx.fetch(
        f"SELECT {RECORD_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2", checkpoint, limit
    )
    if not rows:
        return 0, checkpoint, rebuild_from
    records = [row_to_record(r) for r in rows]
    await projection.apply(tx, records)
    checkpoint = records[-1].position
    await _save_checkpoint(tx, projection.name, checkpoint, rebuild_from, now)
    return len(records), checkpoint, rebuild_from


async def projection_status(store: EventStore, names: Sequence[str]) -> list[ProjectionStatus]:
    """Checkpoint, head, lag and lease holder of each named projection."""
    await ensure_schema(store)
    head, _ = await store.head()
    checkpoints = {
        str(r[0]): r for r in await store.fetch("SELECT name, position, rebuild_from FROM projection_checkpoints")
    }
    leases = {str(r[0]): r for r in await store.fetch("SELECT name, owner, expires_at FROM projection_leases")}
    result = []
    for name in names:
        cp = checkpoints.get(name)
        lease = leases.get(name)
        position = int(cp[1]) if cp else 0
        result.append(
            ProjectionStatus(
                name=name,
                checkpoint=position,
                head=head,
                lag=max(0, head - position),
                rebuilding_from=int(cp[2]) if cp and cp[2] is not None else None,
                lease_owner=str(lease[1]) if lease else None,
                lease_expires_at=float(lease[2]) if lease else None,
            )
        )
    return result


class ProjectionRunner:
    """Keeps asynchronous projections caught up with the log, one lease per projection."""

    def __init__(
        self,
        store: EventStore,
        projections: Sequence[AsyncProjection],
        *,
        owner: str | None = None,
        batch_size: int = 500,
        lease_seconds: float = 15.0,
        poll_interval: float = 0.5,
        batch_interval: float = 0.0,
        create_schema: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        assert batch_size > 0 and lease_seconds > 0 and poll_interval > 0, "runner settings must be positive"
        assert batch_interval >= 0, "batch_interval must not be negative"
        self.store = store
        self.projections = list(projections)
        self.owner = owner or f"runner-{uuid.uuid4().hex[:12]}"
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.batch_interval = batch_interval
        self.create_schema = create_schema
        self._clock = clock
        self._renewed: dict[str, float] = {}  # projection -> when we last renewed its lease
        self._checkpoints: dict[str, int] = {}
        self._heads: dict[str, int] = {}  # projection -> log head seen in its last batch
        self._wake = asyncio.Event()

    async def setup(self) -> None:
        """Create the runner and projection tables, unless ``baton migrate`` manages the schema."""
        if self.create_schema:
            await ensure_schema(self.store, self.projections)

    def holds(self, name: str) -> bool:
        """True while this runner believes it holds ``name``'s lease (as of its last batch)."""
        renewed = self._renewed.get(name)
        return renewed is not None and self._clock() < renewed + self.lease_seconds

    def wake(self) -> None:
        """Ask the run loop to look for new events now (LISTEN/NOTIFY callback)."""
        self._wake.set()

    async def _lease_free(self, name: str, now: float) -> bool:
        rows = await self.store.fetch("SELECT owner, expires_at FROM projection_leases WHERE name = $1", name)
        return not rows or rows[0][0] == self.owner or float(rows[0][1]) < now

    async def step(self, projection: AsyncProjection, head: int | None = None) -> int:
        """Apply at most one batch to ``projection``; the number of events applied (0 when idle or not leader).

        ``head`` is the log head as last seen (None: unknown, look). Idle leaders
        renew their lease only when a third of it has run out, and followers try
        to take it only once it looks expired, so a quiet system does not take
        the write lock every poll.
        """
        name, now = projection.name, self._clock()
        if self.holds(name):
            renew_due = now >= self._renewed[name] + self.lease_seconds / 3
            if not renew_due and head is not None and head <= self._checkpoints.get(name, -1):
                return 0
        elif not await self._lease_free(name, now):
            return 0
        try:
            async with runner_transaction(self.store) as tx:
                if not await take_lease(tx, name, self.owner, now, self.lease_seconds):
                    raise LeaseLost(name)
                applied, checkpoint, _ = await _advance(tx, projection, self.batch_size, now)
                head_now = await _head(tx)
        except LeaseLost:
            if self._renewed.pop(name, None) is not None:
                log.info("projection %s: lease lost to another runner", name)
            return 0
        if name not in self._renewed:
            log.info("projection %s: lease taken by %s at checkpoint %d", name, self.owner, checkpoint)
        self._renewed[name] = now
        self._checkpoints[name] = checkpoint
        self._heads[name] = head_now
        CHECKPOINT_GAUGE.labels(name).set(checkpoint)
        LAG_GAUGE.labels(name).set(max(0, head_now - checkpoint))
        if applied:
            APPLIED_COUNTER.labels(name).inc(applied)
        return applied

    async def catch_up(self, *, news: bool = False, stop: asyncio.Event | None = None) -> int:
        """Apply batches until every projection this runner leads is at the head; events applied.

        ``news``: the caller knows events were appended (a notification), so a
        leader goes straight to its batch instead of first reading the head.
        After each batch the head read inside it says whether another is due.
        ``stop``: once set, no further batch starts (shutdown does not wait for a
        long catch-up; the checkpoint keeps the place).
        """
        total = 0
        start: int | None = None if news else (await self.store.head())[0]
        heads = {p.name: start for p in self.projections}
        while stop is None or not stop.is_set():
            applied = 0
            for projection in self.projections:
                applied += await self.step(projection, heads[projection.name])
                heads[projection.name] = self._heads.get(projection.name, start)
            total += applied
            if applied == 0:
                return total
        return total

    @staticmethod
    async def _wait(stop: asyncio.Event, wake: asyncio.Event | None, timeout: float) -> bool:
        """Wait until ``stop``, ``wake`` (if given) or ``timeout``; True when woken by ``wake``."""
        events = [e for e in (wake, stop) if e is not None]
        waiters = [asyncio.ensure_future(e.wait()) for e in events]
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        # let the cancellations land, or a loop closed right after finds them pending
        await asyncio.gather(*waiters, return_exceptions=True)
        return wake is not None and wake.is_set() and not stop.is_set()

    async def release(self) -> None:
        """Give up every lease this runner holds."""
        for name in list(self._renewed):
            await release_lease(self.store, name, self.owner)
        self._renewed.clear()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Follow the log until ``stop`` is set: catch up, then wait for a notification or the poll interval."""
        stop = stop or asyncio.Event()
        await self.setup()
        unsubscribe = await _subscribe(self.store, self.wake)
        news = False
        try:
            while not stop.is_set():
                self._wake.clear()  # before catching up: a notification arriving meanwhile is kept
                try:
                    await self.catch_up(news=news, stop=stop)
                except StoreError as exc:  # database down: keep the checkpoint, retry after a poll
                    log.warning("projection runner: %s", exc)
                except Exception:  # a failing batch rolled back; keep the runner alive and retry after a poll
                    log.exception("projection runner: batch failed")
                # only a leader acts on notifications; a follower looks at the lease once per poll
                leading = any(self.holds(p.name) for p in self.projections)
                news = await self._wait(stop, self._wake if leading else None, self.poll_interval)
                if news and self.batch_interval > 0:
                    # gather the commits of a busy moment into one batch instead of one batch per commit
                    await self._wait(stop, None, self.batch_interval)
        finally:
            if unsubscribe is not None:
                await _maybe_await(unsubscribe())
            try:
                await self.release()
            except StoreError:
                pass  # the lease simply expires


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _subscribe(store: EventStore, wake: Callable[[], None]) -> Callable[[], Any] | None:
    """Register ``wake`` with ``store.listen(callback)`` when the backend offers it; returns an unsubscribe."""
    listen = getattr(store, "listen", None)
    if listen is None:
        return None
    try:
        handle = await _maybe_await(listen(wake))
    except StoreError as exc:
        log.warning("projection runner: LISTEN unavailable, polling only: %s", exc)
        return None
    if callable(handle):
        return handle
    for attr in ("aclose", "close", "unlisten"):
        if callable(getattr(handle, attr, None)):
            return getattr(handle, attr)
    return None


async def rebuild(
    store: EventStore,
    projection: AsyncProjection,
    from_position: int = 0,
    *,
    progress: ProgressCallback | None = None,
    batch_size: int = 2000,
    owner: str | None = None,
    lease_seconds: float = 60.0,
    clock: Callable[[], float] = time.time,
) -> RebuildProgress:
    """Reset ``projection`` and replay events with ``position >= from_position`` up to the head.

    Resumable: an interrupted rebuild with the same ``from_position`` continues
    from its checkpoint instead of starting over (the result is the same either
    way). The rebuild takes the projection's lease from the live runner, which
    stands down until the rebuild releases it and then follows on from there.
    """
    owner = owner or f"rebuild-{uuid.uuid4().hex[:12]}"
    start = max(from_position - 1, 0)
    await ensure_schema(store, [projection])
    async with store.transaction() as tx:
        now = clock()
        await take_lease(tx, projection.name, owner, now, lease_seconds, steal=True)
        _, marker = await _checkpoint(tx, projection.name)
        if marker != from_position:
            await projection.reset(tx)
            await _save_checkpoint(tx, projection.name, start, from_position, now)
    started, events = time.perf_counter(), 0
    try:
        while True:
            async with runner_transaction(store) as tx:
                now = clock()
                if not await take_lease(tx, projection.name, owner, now, lease_seconds):
                    raise LeaseLost(f"projection {projection.name}: another runner took the lease during rebuild")
                applied, checkpoint, _ = await _advance(tx, projection, batch_size, now)
                head = await _head(tx)
                if applied == 0:
                    await _save_checkpoint(tx, projection.name, checkpoint, None, now)
            events += applied
            report = RebuildProgress(
                projection=projection.name,
                position=checkpoint,
                head=head,
                events=events,
                elapsed=time.perf_counter() - started,
            )
            if progress is not None:
                progress(report)
            if applied == 0:
                return report
    finally:
        try:
            await release_lease(store, projection.name, owner)
        except StoreError:
            pass
