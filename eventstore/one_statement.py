"""A whole group-commit batch as one PostgreSQL statement, where a server-side function can write it.

The classic batch (:func:`eventstore.batch.write_batch`) holds the append lock over
three round trips — the state read, the inserts, COMMIT — and every delay of the
writer's event loop between them (other requests' Python) is waiting time for every
other writer. A batch of the common shape, one event to a new stream per append,
can instead go as **one autocommit call of a PL/pgSQL function** that an inline
projection provides: it takes the append lock, reads the chain head with a fresh
snapshot (each statement of a volatile function gets one under READ COMMITTED),
judges the appends' conditions, extends the hash chain, inserts, and commits when
the statement ends. The lock is then held for the server's own work only.

The store computes what does not depend on the head (:class:`FreshRecords`: each
record's envelope and canonical bytes, see :func:`eventstore.hashing.envelope`),
the projection adds its own arguments (:class:`OneStatementWriter`), and the
function answers one row per append: a refusal reason, or the position, previous
hash and hash it wrote. When the function finds something only the classic path
judges (an event id or stream already stored), it writes nothing and answers no
rows, and the batch goes the classic way; so does any batch of another shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .batch import PendingAppend
from .errors import AppendRefused
from .events import event_type
from .hashing import envelope
from .store import RecordedEvent
from .types import NO_STREAM


@dataclass(frozen=True)
class FreshRecords:
    """A batch of single-event appends to new streams, as far as the store can write it before the lock.

    The function's first seven arguments, in this order.
    """

    lock_key: int
    recorded_at: float
    stream_ids: list[str]
    event_ids: list[str]
    event_types: list[str]
    envelopes: list[bytes]
    datas: list[bytes]

    def arguments(self) -> list[Any]:
        """The function's common arguments (``$1`` … ``$7``)."""
        return [self.lock_key, self.recorded_at, self.stream_ids, self.event_ids, self.event_types, self.envelopes,
                self.datas]


class OneStatementWriter(Protocol):
    """An inline projection that writes a batch, log and view, in one call of its PostgreSQL function."""

    def one_statement(self, batch: Sequence[PendingAppend], fresh: FreshRecords) -> tuple[str, list[Any]] | None:
        """The call (SQL, arguments: ``fresh``'s first) for ``batch``, or None when it must go the classic way."""
        ...


def fresh_records(batch: Sequence[PendingAppend], lock_key: int, recorded_at: float) -> FreshRecords | None:
    """``batch`` as :class:`FreshRecords`, or None unless each append is one event to a stream of its own, new.

    Distinct streams and event ids within the batch are checked here; whether any is
    already stored, the function checks under the lock.
    """
    streams: set[str] = set()
    ids: set[str] = set()
    datas: list[bytes] = []
    for item in batch:
        if item.expected_version != NO_STREAM or len(item.events) != 1 or item.data is None:
            return None
        if item.stream_id in streams or item.event_ids[0] in ids:
            return None
        streams.add(item.stream_id)
        ids.add(item.event_ids[0])
        datas.append(item.data[0])
    stream_ids = [item.stream_id for item in batch]
    event_ids = [item.event_ids[0] for item in batch]
    return FreshRecords(
        lock_key=lock_key,
        recorded_at=recorded_at,
        stream_ids=stream_ids,
        event_ids=event_ids,
        event_types=[event_type(item.events[0]) for item in batch],
        envelopes=[envelope(s, 0, e, recorded_at) for s, e in zip(stream_ids, event_ids, strict=True)],
        datas=datas,
    )


def settle(batch: Sequence[PendingAppend], fresh: FreshRecords, rows: Sequence[Sequence[Any]]) -> bool:
    """Give each append its record or refusal from the function's ``rows``; False when it wrote nothing.

    A row is ``(refusal, position, prev_hash, hash)``, one per append in batch order.
    """
    if not rows:
        return False
    if len(rows) != len(batch):
        raise RuntimeError(f"the append function answered {len(rows)} rows for {len(batch)} appends")
    for index, (item, row) in enumerate(zip(batch, rows, strict=True)):
        refusal, position, prev_hash, digest = row
        if refusal is not None:
            item.result, item.error = None, AppendRefused(str(refusal))
            continue
        record = RecordedEvent(
            position=int(position),
            stream_id=fresh.stream_ids[index],
            stream_version=0,
            event_id=fresh.event_ids[index],
            event_type=fresh.event_types[index],
            recorded_at=fresh.recorded_at,
            data=fresh.datas[index],
            prev_hash=bytes(prev_hash),
            hash=bytes(digest),
        )
        record.__dict__["event"] = item.events[0]  # the decoding of data (see StoreBase.append)
        item.result, item.error = [record], None
    return True
