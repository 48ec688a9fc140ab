"""What every store backend does the same way, on top of its own ``fetch`` and group committer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from .batch import RECORD_COLUMNS, GroupCommitter, PendingAppend, row_to_record
from .errors import InvalidEvent, StoreUnavailable
from .events import Event, decode_event, encode_event
from .store import RecordedEvent
from .types import ANY, GENESIS_HASH


def _canonical(event: Event) -> tuple[bytes, Event]:
    """The event's canonical bytes and their decoding, refused unless that equals the event.

    Checked here, per caller, so one unrepresentable event (a NaN, an unpaired
    surrogate) fails only its own append instead of its whole group-commit batch.
    The decoded event is what a replay of the log will see; inline projections get it
    without decoding the bytes again.
    """
    try:
        data = encode_event(event)
        decoded = decode_event(data)
        if decoded != event:
            raise InvalidEvent(f"{type(event).__name__} does not survive encoding")
    except InvalidEvent:
        raise
    except Exception as exc:  # msgspec encode/decode errors, UnicodeEncodeError
        raise InvalidEvent(f"{type(event).__name__} cannot be encoded: {type(exc).__name__}") from exc
    return data, decoded


class StoreBase:
    """Appends through the group committer; log reads through the backend's ``fetch``."""

    _committer: GroupCommitter

    @property
    def committer(self) -> GroupCommitter:
        """The group committer (metrics hook)."""
        return self._committer

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """A read-only query (``$1``-style parameters); implemented by the backend."""
        raise NotImplementedError

    async def append(
        self,
        stream_id: str,
        events: Sequence[Event],
        *,
        expected_version: int = ANY,
        event_ids: Sequence[str] | None = None,
        condition: Any = None,
    ) -> list[RecordedEvent]:
        """See :meth:`eventstore.store.EventStore.append`."""
        ids = list(event_ids) if event_ids is not None else [uuid.uuid4().hex for _ in events]
        if len(ids) != len(events):
            raise ValueError("event_ids must match events one to one")
        canonical = [_canonical(event) for event in events]
        future: asyncio.Future[list[RecordedEvent]] = asyncio.get_running_loop().create_future()
        pending = PendingAppend(
            stream_id, [decoded for _, decoded in canonical], ids, expected_version, future,
            data=[data for data, _ in canonical], condition=condition,
        )
        return await self._committer.submit(pending)

    async def read_all(self, from_position: int = 1, limit: int = 1000) -> list[RecordedEvent]:
        """Records with ``position >= from_position`` in order, at most ``limit``."""
        rows = await self.fetch(
            f"SELECT {RECORD_COLUMNS} FROM events WHERE position >= $1 ORDER BY position LIMIT $2",
            from_position,
            limit,
        )
        return [row_to_record(r) for r in rows]

    async def read_stream(self, stream_id: str) -> list[RecordedEvent]:
        """All records of one stream in version order."""
        rows = await self.fetch(
            f"SELECT {RECORD_COLUMNS} FROM events WHERE stream_id = $1 ORDER BY stream_version", stream_id
        )
        return [row_to_record(r) for r in rows]

    async def last_in_stream(self, stream_id: str) -> RecordedEvent | None:
        """See :meth:`eventstore.store.EventStore.last_in_stream`."""
        rows = await self.fetch(
            f"SELECT {RECORD_COLUMNS} FROM events WHERE stream_id = $1 ORDER BY stream_version DESC LIMIT 1", stream_id
        )
        return row_to_record(rows[0]) if rows else None

    async def head(self) -> tuple[int, bytes]:
        """The last position and its hash (0 and the genesis hash when empty)."""
        rows = await self.fetch("SELECT position, hash FROM events ORDER BY position DESC LIMIT 1")
        return (int(rows[0][0]), bytes(rows[0][1])) if rows else (0, GENESIS_HASH)

    async def ping(self) -> bool:
        """True when the database answers."""
        try:
            await self.fetch("SELECT 1")
            return True
        except StoreUnavailable:
            return False
