"""Group commit: concurrent appends share one transaction, each still waits for durability.

One writer task per store drains a queue of pending appends into a batch
(bounded by size and by an optional wait), writes the whole batch in one
transaction under the backend's global write lock, and only after COMMIT
resolves each caller's future. A caller whose expected version does not
match gets its own ``ConcurrencyError`` without failing the others; a
failed transaction fails every append in it with ``StoreUnavailable``.

:func:`write_batch` is the dialect-neutral body of that transaction: it reads
the chain head, checks idempotency and expected versions, assigns positions,
extends the hash chain, inserts, and runs the inline projections.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import structlog

from .errors import AppendRefused, ConcurrencyError, StoreError, StoreUnavailable
from .events import Event, encode_event, event_type
from .hashing import chain_hash, record_bytes
from .store import InlineProjection, RecordedEvent, Tx, placeholders
from .types import ANY, GENESIS_HASH, NO_STREAM, STREAM_EXISTS

_log = structlog.get_logger(__name__)

RECORD_COLUMNS = "position, stream_id, stream_version, event_id, event_type, recorded_at, data, prev_hash, hash"


@dataclass
class PendingAppend:
    """One caller's append waiting in the queue."""

    stream_id: str
    events: Sequence[Event]
    event_ids: Sequence[str]
    expected_version: int
    future: asyncio.Future[list[RecordedEvent]]
    result: list[RecordedEvent] | None = None
    error: StoreError | None = None
    data: list[bytes] | None = None  # canonical bytes, encoded (and checked) by the caller; events then their decoding
    condition: Any = None  # judged by the inline projections under the write lock (ConditionChecker)


def row_to_record(row: Sequence[object]) -> RecordedEvent:
    """Build a :class:`RecordedEvent` from a row selected with :data:`RECORD_COLUMNS`."""
    return RecordedEvent(
        position=int(row[0]),  # type: ignore[arg-type]
        stream_id=str(row[1]),
        stream_version=int(row[2]),  # type: ignore[arg-type]
        event_id=str(row[3]),
        event_type=str(row[4]),
        recorded_at=float(row[5]),  # type: ignore[arg-type]
        data=bytes(row[6]),  # type: ignore[arg-type]
        prev_hash=bytes(row[7]),  # type: ignore[arg-type]
        hash=bytes(row[8]),  # type: ignore[arg-type]
    )


#: the many-row INSERT of a group commit's events
EVENTS_INSERT = f"INSERT INTO events ({RECORD_COLUMNS}) VALUES ({placeholders(1, 9)})"


#: stream ids whose versions one query reads (well under SQLite's 500 compound-SELECT terms)
_STREAMS_PER_READ = 250


def _stream_versions(dialect: str, start: int, stream_ids: list[str]) -> tuple[str, list[Any]]:
    """SQL and arguments giving ``(2, version, NULL, stream_id)`` for each of ``stream_ids`` that has events.

    A stream's version is read from the log itself, one backward step on the unique
    ``(stream_id, stream_version)`` index: there is no table of versions to keep in
    step (as in Message DB). PostgreSQL takes the ids as one array (one statement
    shape for any batch); SQLite gets one ``UNION ALL`` branch per stream.
    """
    if dialect == "postgresql":
        sql = (
            f"SELECT 2, v.stream_version, NULL, s.id FROM unnest(${start}::text[]) AS s(id) CROSS JOIN LATERAL "
            "(SELECT stream_version FROM events WHERE stream_id = s.id ORDER BY stream_version DESC LIMIT 1) AS v"
        )
        return sql, [stream_ids]
    branches = (
        f"SELECT 2, stream_version, NULL, stream_id FROM (SELECT stream_version, stream_id FROM events "
        f"WHERE stream_id = ${n} ORDER BY stream_version DESC LIMIT 1) AS v{n}"
        for n in range(start, start + len(stream_ids))
    )
    return " UNION ALL ".join(branches), list(stream_ids)


def _version_conflict(expected: int, current: int) -> bool:
    if expected == ANY:
        return False
    if expected == NO_STREAM:
        return current != -1
    if expected == STREAM_EXISTS:
        return current == -1
    return expected != current


_PARAMETER = re.compile(r"\$(\d+)")


def shift_parameters(sql: str, by: int) -> str:
    """``sql`` with every ``$n`` parameter renumbered to ``$(n + by)``, to join it with others in one statement."""
    return _PARAMETER.sub(lambda m: f"${int(m[1]) + by}", sql)


def _with_reads(sql: str, args: list[Any], reads: dict[str, tuple[str, list[Any]]]) -> tuple[str, list[Any]]:
    """One PostgreSQL statement for ``sql`` and the ``reads`` of inline projections: a row of record arrays."""
    columns = [f"ARRAY(SELECT ROW(s.*) FROM ({sql}) s)"]
    every = list(args)
    for read_sql, read_args in reads.values():
        columns.append(f"ARRAY(SELECT ROW(r.*) FROM ({shift_parameters(read_sql, len(every))}) r)")
        every += read_args
    return "SELECT " + ", ".join(columns), every


def _projection_reads(batch: Sequence[PendingAppend], projections: Sequence[InlineProjection]) -> dict[str, tuple[str, list[Any]]]:
    """What inline projections will read to judge ``batch``'s conditions (``prefetch``), by projection name."""
    if all(item.condition is None for item in batch):
        return {}
    appends = [(item.events, item.condition) for item in batch]
    reads: dict[str, tuple[str, list[Any]]] = {}
    for projection in projections:
        prefetch = getattr(projection, "prefetch", None)
        if prefetch is not None and (read := prefetch(appends)) is not None:
            reads[projection.name] = read
    return reads


async def _read_state(
    tx: Tx, all_ids: list[str], stream_ids: list[str], reads: dict[str, tuple[str, list[Any]]] | None = None
) -> tuple[int, bytes, dict[str, RecordedEvent], dict[str, int], dict[str, list[tuple[Any, ...]]]]:
    """Chain head, already-stored events among ``all_ids`` and stream versions, read under the write lock.

    A usual batch asks all three in one round trip (the lock is held meanwhile, so each
    round trip saved shortens every other writer's wait); huge batches go in chunks.
    The same statement carries ``reads``, the inline projections' own queries for the
    batch (PostgreSQL only; rows returned by projection name); for huge batches none is
    run here and the projections read for themselves.
    """
    prefetched: dict[str, list[tuple[Any, ...]]] = {}
    # SQLite allows 500 terms in a compound SELECT, and its stream versions take one each
    if len(all_ids) + len(stream_ids) <= 500 and len(stream_ids) <= _STREAMS_PER_READ:
        sql = "SELECT 0, position, hash, NULL FROM (SELECT position, hash FROM events ORDER BY position DESC LIMIT 1) h"
        if all_ids:
            sql += f" UNION ALL SELECT 1, position, NULL, event_id FROM events WHERE event_id IN ({placeholders(1, len(all_ids))})"
        args: list[Any] = list(all_ids)
        if stream_ids:
            versions_sql, versions_args = _stream_versions(tx.dialect, len(all_ids) + 1, stream_ids)
            sql += f" UNION ALL {versions_sql}"
            args += versions_args
        if reads:
            merged_sql, merged_args = _with_reads(sql, args, reads)
            (row,) = await tx.fetch(merged_sql, *merged_args)
            rows = row[0]
            prefetched = {name: list(found) for name, found in zip(reads, row[1:], strict=True)}
        else:
            rows = await tx.fetch(sql, *args)
        head = next(((int(r[1]), bytes(r[2])) for r in rows if r[0] == 0), (0, GENESIS_HASH))
        versions = {str(r[3]): int(r[1]) for r in rows if r[0] == 2}
        stored = [str(r[3]) for r in rows if r[0] == 1]
        existing: dict[str, RecordedEvent] = {}
        if stored:  # only a retried append gets here: read the stored records in full
            found = await tx.fetch(
                f"SELECT {RECORD_COLUMNS} FROM events WHERE event_id IN ({placeholders(1, len(stored))})", *stored
            )
            existing.update((str(r[3]), row_to_record(r)) for r in found)
        return head[0], head[1], existing, versions, prefetched

    rows = await tx.fetch("SELECT position, hash FROM events ORDER BY position DESC LIMIT 1")
    position, prev = (int(rows[0][0]), bytes(rows[0][1])) if rows else (0, GENESIS_HASH)
    existing = {}
    for chunk in range(0, len(all_ids), 500):
        ids = all_ids[chunk : chunk + 500]
        found = await tx.fetch(
            f"SELECT {RECORD_COLUMNS} FROM events WHERE event_id IN ({placeholders(1, len(ids))})", *ids
        )
        existing.update((str(r[3]), row_to_record(r)) for r in found)
    versions = {}
    for chunk in range(0, len(stream_ids), _STREAMS_PER_READ):
        ids = stream_ids[chunk : chunk + _STREAMS_PER_READ]
        versions_sql, versions_args = _stream_versions(tx.dialect, 1, ids)
        found = await tx.fetch(versions_sql, *versions_args)
        versions.update((str(r[3]), int(r[1])) for r in found)
    return position, prev, existing, versions, prefetched


async def _refusals(tx: Tx, batch: Sequence[PendingAppend], projections: Sequence[InlineProjection]) -> dict[int, str]:
    """The appends of ``batch`` whose condition an inline projection refuses (index → reason)."""
    if all(item.condition is None for item in batch):
        return {}
    appends = [(item.events, item.condition) for item in batch]
    refused: dict[int, str] = {}
    checkers = [check for p in projections if (check := getattr(p, "refusals", None)) is not None]
    if not checkers:  # fail closed: a condition nobody can judge is not taken to hold
        return {i: "condition_not_judged" for i, item in enumerate(batch) if item.condition is not None}
    for check in checkers:
        for index, reason in (await check(tx, appends)).items():
            refused.setdefault(index, reason)
    return refused


async def write_batch(
    tx: Tx,
    batch: Sequence[PendingAppend],
    projections: Sequence[InlineProjection],
    clock: Callable[[], float] = time.time,
) -> None:
    """Write ``batch`` inside an open, write-locked transaction; set each item's result or error."""
    all_ids = [eid for item in batch for eid in item.event_ids]
    stream_ids = list({item.stream_id for item in batch})
    # the projections' reads join the state read on PostgreSQL (record arrays); SQLite has no round trips to save
    reads = _projection_reads(batch, projections) if tx.dialect == "postgresql" else {}
    position, prev, existing, versions, prefetched = await _read_state(tx, all_ids, stream_ids, reads)
    tx.prefetched = prefetched  # type: ignore[attr-defined]
    stored = set(existing)
    refused = await _refusals(tx, batch, projections)

    new_records: list[RecordedEvent] = []
    replayed: list[RecordedEvent] = []  # records a retried append finds already stored
    now = clock()
    for index, item in enumerate(batch):
        if item.event_ids and all(eid in existing for eid in item.event_ids):
            item.result = [existing[eid] for eid in item.event_ids]
            replayed.extend(r for r in item.result if r.event_id in stored)
            continue
        if any(eid in existing for eid in item.event_ids):
            item.error = StoreError("some but not all event ids of this append are already stored")
            continue
        current = versions.get(item.stream_id, -1)
        if _version_conflict(item.expected_version, current):
            item.error = ConcurrencyError(item.stream_id, item.expected_version, current)
            continue
        if index in refused:
            item.error = AppendRefused(refused[index])
            continue
        recorded: list[RecordedEvent] = []
        encoded = item.data if item.data is not None else [encode_event(e) for e in item.events]
        for event, eid, data in zip(item.events, item.event_ids, encoded):
            position += 1
            current += 1
            digest = chain_hash(prev, position, record_bytes(item.stream_id, current, eid, now, data))
            record = RecordedEvent(
                position=position,
                stream_id=item.stream_id,
                stream_version=current,
                event_id=eid,
                event_type=event_type(event),
                recorded_at=now,
                data=data,
                prev_hash=prev,
                hash=digest,
            )
            if item.data is not None:  # then item.events are the decoded data: projections need not decode again
                record.__dict__["event"] = event
            prev = digest
            recorded.append(record)
            existing[eid] = record
        versions[item.stream_id] = current
        item.result = recorded
        new_records.extend(recorded)

    # inline projections may attach a note to an event they judged (e.g. "born_revoked");
    # the appender sees it on its returned record, without another round trip
    notes: dict[str, str] = {}
    if replayed:
        for keeper in [k for p in projections if (k := getattr(p, "stored_notes", None)) is not None]:
            notes.update(await keeper(tx, replayed))
    if new_records:
        await tx.executemany(
            EVENTS_INSERT,
            [
                (r.position, r.stream_id, r.stream_version, r.event_id, r.event_type, r.recorded_at, r.data,
                 r.prev_hash, r.hash)
                for r in new_records
            ],
        )  # fmt: skip
        tx.notes = notes  # type: ignore[attr-defined]
        for projection in projections:
            await projection.apply(tx, new_records)
    if notes:
        for item in batch:
            if item.result and item.error is None:
                item.result = [
                    msgspec.structs.replace(r, note=notes[r.event_id]) if r.event_id in notes else r
                    for r in item.result
                ]


class BatchLock(Protocol):
    """A backend's append lock, taken for each batch before it is gathered (:class:`eventstore.lock_ahead.LockAhead`)."""

    def pending(self) -> bool:
        """True while the next batch's lock is being taken or is held for it: no gathering window is needed."""
        ...

    def wanted(self) -> None:
        """An append was queued: ask for the next batch's lock now, if that is due."""
        ...

    async def take(self) -> None:
        """Return once the next batch holds the lock (or taking it failed: the flush then reports that)."""
        ...


class GroupCommitter:
    """Coalesces concurrent appends into batches written by one writer task.

    With a ``lock``, each batch is gathered only once its lock is held (what
    arrives during the wait joins it), and every queued append tells the lock,
    which asks for the next batch's while the current one is being written.
    """

    def __init__(
        self,
        flush: Callable[[list[PendingAppend]], Awaitable[None]],
        *,
        max_batch: int = 256,
        max_wait: float = 0.0,
        on_batch: Callable[[int, float], None] | None = None,
        lock: BatchLock | None = None,
    ) -> None:
        self._flush = flush
        self._lock = lock  # None: the flush takes the backend's lock itself
        self._max_batch = max_batch
        self._max_wait = max_wait
        self.on_batch = on_batch
        self._queue: asyncio.Queue[PendingAppend] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._full = asyncio.Event()  # set when a gathering batch has max_batch appends queued

    def start(self) -> None:
        """Start the writer task on the running loop."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="baton-group-commit")

    async def stop(self) -> None:
        """Finish what is queued, then stop the writer."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None

    def queued(self) -> int:
        """Appends waiting for the next batch."""
        return self._queue.qsize()

    async def submit(self, item: PendingAppend) -> list[RecordedEvent]:
        """Queue an append and wait until it is durable (or refused)."""
        if self._task is None or self._task.done():
            self.start()
        self._queue.put_nowait(item)
        if self._lock is not None:
            self._lock.wanted()
        if self._queue.qsize() >= self._max_batch - 1:  # the writer holds one more: a gathering batch is full
            self._full.set()
        return await item.future

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            lock_pending = self._lock is not None and self._lock.pending()
            if self._max_wait > 0 and not lock_pending and self._queue.qsize() < self._max_batch - 1:
                # one wait for the whole window (not one per arriving append), cut short by a full batch
                self._full.clear()
                try:
                    async with asyncio.timeout(self._max_wait):
                        await self._full.wait()
                except TimeoutError:
                    pass
            started = time.perf_counter()
            if self._lock is not None:
                await self._lock.take()  # what arrives while the lock is awaited joins this batch
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._flush(batch)
            except StoreError as exc:
                for item in batch:
                    item.result, item.error = None, exc
            except Exception as exc:  # the database failed mid-transaction: nothing was committed
                failure = StoreUnavailable(f"event store write failed: {type(exc).__name__}")
                failure.__cause__ = exc
                for item in batch:
                    item.result, item.error = None, failure
            if self.on_batch is not None:
                try:
                    self.on_batch(len(batch), time.perf_counter() - started)
                except Exception as exc:  # a metrics hook must not leave the batch's callers waiting forever
                    _log.warning("batch_observer_failed", error=type(exc).__name__)
            for item in batch:
                if not item.future.done():
                    if item.error is not None:
                        item.future.set_exception(item.error)
                    else:
                        item.future.set_result(item.result or [])
                self._queue.task_done()
