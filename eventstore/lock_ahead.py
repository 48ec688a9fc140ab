"""The append lock taken for the next group-commit batch while the current one is written.

A batch's transaction begins by waiting for the store-wide append lock, one round
trip. Where several workers share one store, that wait is spent queued behind the
other workers' batches. :class:`LockAhead` sends the next batch's ``BEGIN`` and lock
request on a second connection as soon as appends queue up behind the batch being
written, so the request waits in PostgreSQL's lock queue meanwhile (the queue is
first come, first served: workers still take turns) and the next batch starts with
the lock already held: one round trip fewer on every batch's path.

The next batch is gathered only once its lock is granted (:meth:`take`), so what
arrives during the wait joins it. The lock is taken ahead only when appends are
waiting, so it is never held while there is nothing to write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

C = TypeVar("C")


class LockAhead(Generic[C]):
    """At most one connection opening a locked transaction ahead of the batch that will use it.

    ``begin`` opens a transaction holding the append lock and returns its connection;
    ``abandon`` rolls one back and returns it to the pool. ``begin`` is the batch's
    own begin, only started earlier: its failure (the database down, the lock wait
    timed out) is raised by :meth:`claim`, to the batch that would have met it.
    """

    def __init__(self, begin: Callable[[], Awaitable[C]], abandon: Callable[[C], Awaitable[None]]) -> None:
        self._begin = begin
        self._abandon = abandon
        self._ahead: asyncio.Task[C] | None = None

    def pending(self) -> bool:
        """True while a locked transaction is being opened or waits, opened, for its batch."""
        return self._ahead is not None

    def wanted(self) -> None:
        """Appends are waiting: start opening the next batch's locked transaction (once)."""
        if self._ahead is None:
            self._ahead = asyncio.get_running_loop().create_task(self._begin(), name="baton-lock-ahead")

    async def take(self) -> None:
        """Wait until the next batch's transaction holds the lock (or failed to get it)."""
        self.wanted()
        assert self._ahead is not None
        await asyncio.wait([self._ahead])

    async def claim(self) -> C | None:
        """The connection opened ahead, now the caller's to commit or roll back; ``None`` if none was asked for."""
        ahead, self._ahead = self._ahead, None
        return None if ahead is None else await ahead

    async def drop(self) -> None:
        """Roll back and give back a transaction opened ahead and never used (at close)."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return
        ahead.cancel()
        try:
            conn = await ahead
        except BaseException:  # cancelled, or its begin failed: nothing is held
            return
        await self._abandon(conn)
