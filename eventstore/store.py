"""The event store contract every backend (SQLite, PostgreSQL) fulfils.

Appends are durable before they return; positions are global, gap-free and
strictly increasing in commit order; every record carries the hash chain.
Inline projections run inside the append's transaction, so what they write
commits (or not) together with the events.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import msgspec

from .events import Event, decode_event
from .types import ANY


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    """An event as stored: its place in the log and in its stream, and its chain link.

    ``event`` is decoded from ``data`` once and kept (a ``__dict__`` entry, not a field:
    it takes no part in equality or encoding).
    """

    position: int
    stream_id: str
    stream_version: int
    event_id: str
    event_type: str
    recorded_at: float
    data: bytes
    prev_hash: bytes
    hash: bytes
    #: what an inline projection said about this event as it was appended (not stored, not hashed)
    note: str | None = None

    @functools.cached_property
    def event(self) -> Event:
        """The decoded event."""
        return decode_event(self.data)


class PendingEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event waiting to be appended: the stream, the event, its idempotency id."""

    stream_id: str
    event: Any
    event_id: str
    expected_version: int = ANY


def placeholders(start: int, count: int) -> str:
    """``count`` numbered parameters from ``$start``, comma-separated: ``placeholders(3, 2) == "$3, $4"``."""
    return ", ".join(f"${i}" for i in range(start, start + count))


_BIGINT_MIN, _BIGINT_MAX = -(2**63), 2**63 - 1


def bigint_seconds(seconds: float, *, up: bool = False) -> int:
    """``seconds`` as whole seconds, rounded down (or ``up``), within a SQL ``BIGINT``; NaN as the lowest.

    For comparing whole-second columns with an integer parameter, which their indexes serve
    (against a double, PostgreSQL casts every row); infinities and huge values clamp.
    """
    if math.isnan(seconds):
        return _BIGINT_MIN
    if math.isinf(seconds):
        return _BIGINT_MAX if seconds > 0 else _BIGINT_MIN
    return min(max(math.ceil(seconds) if up else math.floor(seconds), _BIGINT_MIN), _BIGINT_MAX)


@runtime_checkable
class Tx(Protocol):
    """A transaction handle given to inline projections. SQL uses ``$1``-style parameters."""

    dialect: str

    async def execute(self, sql: str, *args: Any) -> None:
        """Run one statement."""

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each row of parameters."""

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run a query; rows as tuples."""


class InlineProjection(Protocol):
    """A read model updated in the same transaction as the append."""

    name: str

    def schema(self, dialect: str) -> list[str]:
        """DDL statements (idempotent: ``CREATE … IF NOT EXISTS``) for ``dialect``."""

    async def apply(self, tx: Tx, events: Sequence[RecordedEvent]) -> None:
        """Update the read model from freshly appended events (deterministic, idempotent)."""

    async def reset(self, tx: Tx) -> None:
        """Delete everything this projection holds (before a rebuild)."""


class ConditionChecker(Protocol):
    """An inline projection that also judges append conditions (optional, next to ``apply``).

    ``refusals`` runs under the write lock, before positions are assigned, for a
    batch in which at least one append carries a condition: it gets each
    append's events and condition (None for unconditional ones) and returns the
    indexes of the appends to refuse, with a reason. A refused append writes
    nothing and its caller gets :class:`~eventstore.errors.AppendRefused`.
    """

    async def refusals(self, tx: Tx, appends: Sequence[tuple[Sequence[Event], Any]]) -> dict[int, str]:
        """Reasons by append index for the appends whose condition no longer holds."""


class ReadAhead(Protocol):
    """A condition checker that can name its read in advance (optional, next to ``refusals``).

    ``prefetch`` gets the same ``appends`` and returns the query ``refusals`` will run
    (SQL with ``$1``-style parameters, and the arguments), or None. On PostgreSQL the
    store sends it in the statement that reads the chain head under the lock and puts
    the rows on ``tx.prefetched[name]``, saving a round trip while every other writer
    waits; ``refusals`` must still read for itself when they are absent.
    """

    name: str

    def prefetch(self, appends: Sequence[tuple[Sequence[Event], Any]]) -> tuple[str, list[Any]] | None:
        """The query (SQL, arguments) ``refusals`` needs for ``appends``, or None."""


class NoteKeeper(Protocol):
    """An inline projection that can say again what it noted about events already stored (optional).

    A retried append (the same event ids, e.g. after a connection was lost at COMMIT)
    gets the stored records back and ``apply`` does not run again; ``stored_notes``
    gives those records the notes ``apply`` attached the first time (event id → note).
    """

    async def stored_notes(self, tx: Tx, records: Sequence[RecordedEvent]) -> dict[str, str]:
        """Notes by event id for ``records``, which were appended earlier."""


class EventStore(Protocol):
    """The append-only log."""

    dialect: str

    async def open(self) -> None:
        """Connect and create the schema if needed."""

    async def close(self) -> None:
        """Flush pending appends and disconnect."""

    async def append(
        self,
        stream_id: str,
        events: Sequence[Event],
        *,
        expected_version: int = ANY,
        event_ids: Sequence[str] | None = None,
        condition: Any = None,
    ) -> list[RecordedEvent]:
        """Append events to a stream durably; returns them as recorded.

        Raises ``ConcurrencyError`` when the stream version does not match,
        ``AppendRefused`` when an inline projection finds ``condition`` false
        under the write lock (see :class:`ConditionChecker`), and
        ``StoreUnavailable`` when nothing could be written. An event id that is
        already stored is not stored again: the stored record is returned.
        """

    async def read_all(self, from_position: int = 1, limit: int = 1000) -> list[RecordedEvent]:
        """Records with ``position >= from_position`` in order, at most ``limit``."""

    async def read_stream(self, stream_id: str) -> list[RecordedEvent]:
        """All records of one stream in version order."""

    async def last_in_stream(self, stream_id: str) -> RecordedEvent | None:
        """The newest record of one stream (None when it has none): one index step, whatever its length."""

    async def head(self) -> tuple[int, bytes]:
        """The last position and its hash (0 and the genesis hash when empty)."""

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """A read-only query against projection tables (``$1``-style parameters)."""

    async def transaction(self) -> Any:
        """An async context manager yielding a :class:`Tx` (projection rebuilds)."""

    async def ping(self) -> bool:
        """True when the database answers."""
