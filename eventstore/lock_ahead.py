"""The append lock taken for the next group-commit batch while the current one is written.

A batch's transaction begins by waiting for the store-wide append lock, one round
trip. Where several workers share one store, that wait is spent queued behind the
other workers' batches. :class:`LockAhead` sends the next batch's ``BEGIN`` and lock
request on a second connection as soon as appends queue up behind the batch being
written, so the request waits in PostgreSQL's lock queue meanwhile (the queue is
first come, first served: workers still take turns) and the next batch starts with
the lock already held: one round trip fewer on every batch's path.

The next batch is gathered only once its lock is granted (:meth:`take`), so what
arrives during the wait joins it. Two rules keep the lock from being held idle or
twice: the next request goes out only while this process's current batch holds the
lock and appends are waiting, and never while one is already out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

S = TypeVar("S")


class LockAhead(Generic[S]):
    """The locked transaction of the batch being written, and at most one opened ahead for the next.

    ``begin`` opens a transaction holding the append lock and returns its session;
    ``abandon`` rolls one back and gives it back. ``waiting`` tells whether appends
    are queued. The begin sent ahead is the next batch's own, only started earlier:
    its failure (the database down, the lock wait timed out) is raised by
    :meth:`hold`, to the batch that would have met it. With ``enabled=False`` each
    batch begins its own transaction once gathered, as without this class.
    """

    def __init__(
        self,
        begin: Callable[[], Awaitable[S]],
        abandon: Callable[[S], Awaitable[None]],
        waiting: Callable[[], bool],
        *,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self._begin = begin
        self._abandon = abandon
        self._waiting = waiting
        self._ahead: asyncio.Task[S] | None = None
        self._held = False  # a batch of this process holds the lock and is being written

    def pending(self) -> bool:
        """True while the next batch's locked transaction is being opened or waits, opened, for its batch."""
        return self._ahead is not None

    def wanted(self) -> None:
        """Appends are waiting: ask for the next batch's lock, if the current batch holds it and none is out."""
        if self._held and self._ahead is None and self.enabled:
            self._start()

    async def take(self) -> None:
        """Wait until the next batch's transaction holds the lock (or failed to get it)."""
        if not self.enabled:
            return
        if self._ahead is None:
            self._start()
        assert self._ahead is not None
        await asyncio.wait([self._ahead])

    async def hold(self) -> S:
        """The locked transaction for the batch about to be written: the one opened ahead, or a new one.

        Until :meth:`released`, the lock counts as held by this batch, and appends queued
        behind it (now or later) ask for the next batch's.
        """
        ahead, self._ahead = self._ahead, None
        session = await (ahead if ahead is not None else self._begin())
        self._held = True
        if self._waiting():
            self.wanted()
        return session

    def released(self) -> None:
        """The batch's transaction has ended (committed or rolled back)."""
        self._held = False

    async def drop(self) -> None:
        """Roll back and give back a transaction opened ahead and never used (at close)."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return
        ahead.cancel()
        await asyncio.wait([ahead])
        if not ahead.cancelled() and ahead.exception() is None:
            await self._abandon(ahead.result())

    def _start(self) -> None:
        self._ahead = asyncio.get_running_loop().create_task(self._begin(), name="baton-lock-ahead")
