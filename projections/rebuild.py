"""Rebuilding an inline projection from the log (``baton replay --projection lineage``).

The rebuild runs in one write transaction of the store: the view is emptied
and every event from position 1 is applied again, in pages. Concurrent
appends wait for it, so no exchange ever sees a half-built lineage, and an
interrupted rebuild rolls back to the old view; running it again is safe.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from eventstore.batch import RECORD_COLUMNS, row_to_record
from eventstore.store import EventStore, InlineProjection

Progress = Callable[[int, int], None]


async def rebuild_inline(
    store: EventStore, projection: InlineProjection, *, page: int = 2000, progress: Progress | None = None
) -> tuple[int, float]:
    """Reset ``projection`` and replay the whole log into it; returns (events, seconds)."""
    started = time.perf_counter()
    head, _ = await store.head()
    replayed = 0
    async with store.transaction() as tx:
        await projection.reset(tx)
        position = 1
        while True:
            rows = await tx.fetch(
                f"SELECT {RECORD_COLUMNS} FROM events WHERE position >= $1 ORDER BY position LIMIT $2", position, page
            )
            if not rows:
                break
            records = [row_to_record(r) for r in rows]
            await projection.apply(tx, records)
            replayed += len(records)
            position = records[-1].position + 1
            if progress is not None:
                progress(records[-1].position, max(head, records[-1].position))
    return replayed, time.perf_counter() - started
