"""The group committer with a lock taken ahead: the next batch's lock is asked for while a batch is written.

A fake database lock (an ``asyncio.Lock``) stands in for PostgreSQL's advisory lock: ``begin``
waits for it, COMMIT (the end of the flush) releases it. tests/pg/test_pg_lock_ahead.py runs
the same against PostgreSQL.
"""

from __future__ import annotations

import asyncio

import pytest

from eventstore.batch import GroupCommitter, PendingAppend
from eventstore.errors import StoreUnavailable
from eventstore.lock_ahead import LockAhead


def _pending(n: int) -> PendingAppend:
    future: asyncio.Future = asyncio.get_running_loop().create_future()
    return PendingAppend(f"s-{n}", [], [f"e-{n}"], -2, future, data=[])


class FakeDatabase:
    """One lock; ``begin`` takes it (as BEGIN + pg_advisory_xact_lock), the flush's COMMIT gives it back."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.begins = 0
        self.failures: list[BaseException] = []  # raised by the next begins, in order
        self.abandoned: list[int] = []
        self.batches: list[list[str]] = []
        self.writing = asyncio.Event()  # set while a flush is inside its batch
        self.hold = asyncio.Event()  # a flush waits for this before it commits
        self.hold.set()
        self.committer: GroupCommitter | None = None
        self.ahead: LockAhead[int] = LockAhead(self.begin, self.abandon, lambda: self.committer.queued() > 0)

    async def begin(self) -> int:
        self.begins += 1
        if self.failures:
            raise self.failures.pop(0)
        await self.lock.acquire()
        return self.begins

    async def abandon(self, conn: int) -> None:
        self.abandoned.append(conn)
        self.lock.release()

    async def flush(self, batch: list[PendingAppend]) -> None:
        await self.ahead.hold()
        assert self.lock.locked()
        try:
            self.batches.append([item.event_ids[0] for item in batch])
            self.writing.set()
            await self.hold.wait()
            for item in batch:
                item.result = []
        finally:
            self.writing.clear()
            self.lock.release()  # COMMIT
            self.ahead.released()


def _committer(db: FakeDatabase, **kwargs: float) -> GroupCommitter:
    committer = GroupCommitter(db.flush, lock=db.ahead, **kwargs)  # type: ignore[arg-type]
    db.committer = committer
    committer.start()
    return committer


async def test_the_next_batch_asks_for_its_lock_while_a_batch_is_written() -> None:
    """Appends queued behind a batch being written start the next batch's begin at once, not after COMMIT."""
    db = FakeDatabase()
    committer = _committer(db)
    db.hold.clear()
    first = asyncio.ensure_future(committer.submit(_pending(0)))
    await asyncio.wait_for(db.writing.wait(), 5)
    assert db.begins == 1
    later = [asyncio.ensure_future(committer.submit(_pending(n))) for n in range(1, 4)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert db.begins == 2, "the second batch's begin is under way while the first is still written"
    assert db.ahead.pending()
    db.hold.set()
    await asyncio.wait_for(asyncio.gather(first, *later), 5)
    await committer.stop()
    assert db.batches == [["e-0"], ["e-1", "e-2", "e-3"]]
    assert db.begins == 2 and db.abandoned == []
    assert not db.ahead.pending() and not db.lock.locked()


async def test_nothing_is_locked_ahead_when_no_append_waits() -> None:
    """Appends one after another: one begin per batch, and between batches the lock is free."""
    db = FakeDatabase()
    committer = _committer(db)
    for n in range(5):
        await asyncio.wait_for(committer.submit(_pending(n)), 5)
        assert not db.lock.locked(), "no lock is held while nothing is being written"
        assert not db.ahead.pending()
    await committer.stop()
    assert db.begins == 5 and len(db.batches) == 5 and db.abandoned == []


async def test_appends_arriving_while_the_lock_is_awaited_join_the_batch() -> None:
    """The batch is gathered once its lock is held: appends that came during the wait go with it."""
    db = FakeDatabase()
    await db.lock.acquire()  # another writer holds the lock
    committer = _committer(db)
    appends = [asyncio.ensure_future(committer.submit(_pending(0)))]
    await asyncio.sleep(0.01)
    appends += [asyncio.ensure_future(committer.submit(_pending(n))) for n in range(1, 6)]
    await asyncio.sleep(0.01)
    assert db.batches == []
    assert db.begins == 1, "while a batch's own begin waits, no second one goes out"
    db.lock.release()
    await asyncio.wait_for(asyncio.gather(*appends), 5)
    await committer.stop()
    assert db.batches == [[f"e-{n}" for n in range(6)]]


async def test_the_gathering_window_is_skipped_when_the_lock_is_already_asked_for() -> None:
    """batch_wait_ms grows batches by waiting; an append whose lock is already on its way need not wait."""
    db = FakeDatabase()
    committer = _committer(db, max_batch=2, max_wait=60.0)
    db.hold.clear()
    full = [asyncio.ensure_future(committer.submit(_pending(n))) for n in range(2)]  # a full batch: no window
    await asyncio.wait_for(db.writing.wait(), 5)
    waiting = asyncio.ensure_future(committer.submit(_pending(2)))
    await asyncio.sleep(0)
    db.hold.set()
    # the window is a minute long: this returns in time only because its lock was asked for already
    await asyncio.wait_for(asyncio.gather(*full, waiting), 5)
    await committer.stop()
    assert db.batches == [["e-0", "e-1"], ["e-2"]]


async def test_a_failed_begin_fails_its_own_batch_and_the_next_one_recovers() -> None:
    """The begin started ahead is the batch's own: its failure reaches that batch's appends, nothing else."""
    db = FakeDatabase()
    committer = _committer(db)
    db.failures.append(StoreUnavailable("lock wait timed out"))
    with pytest.raises(StoreUnavailable, match="lock wait timed out"):
        await asyncio.wait_for(committer.submit(_pending(0)), 5)
    await asyncio.wait_for(committer.submit(_pending(1)), 5)
    await committer.stop()
    assert db.batches == [["e-1"]] and not db.lock.locked()


async def test_drop_gives_back_a_lock_taken_ahead_and_never_used() -> None:
    """At close: a transaction opened ahead is rolled back; one still waiting for the lock is cancelled."""
    db = FakeDatabase()
    db.ahead.wanted()
    await db.ahead.take()
    assert db.lock.locked()
    await db.ahead.drop()
    assert db.abandoned == [1] and not db.lock.locked() and not db.ahead.pending()

    await db.lock.acquire()  # held elsewhere: the next begin waits
    taking = asyncio.ensure_future(db.ahead.take())
    await asyncio.sleep(0.01)
    assert db.begins == 2 and db.ahead.pending()
    await db.ahead.drop()
    await taking
    assert db.abandoned == [1] and not db.ahead.pending()
    db.lock.release()
    assert not db.lock.locked()


async def test_a_full_batch_asks_for_the_next_lock_at_once() -> None:
    """Appends left queued behind a full batch need no further submit to have the next lock asked for."""
    db = FakeDatabase()
    committer = _committer(db, max_batch=2)
    db.hold.clear()
    appends = [asyncio.ensure_future(committer.submit(_pending(n))) for n in range(5)]
    await asyncio.wait_for(db.writing.wait(), 5)
    await asyncio.sleep(0)
    assert db.batches == [["e-0", "e-1"]] and db.begins == 2
    db.hold.set()
    await asyncio.wait_for(asyncio.gather(*appends), 5)
    await committer.stop()
    assert db.batches == [["e-0", "e-1"], ["e-2", "e-3"], ["e-4"]] and not db.lock.locked()


async def test_without_lock_ahead_each_batch_begins_its_own() -> None:
    """``enabled=False`` (a pool too small for a second connection): no begin goes out before its batch."""
    db = FakeDatabase()
    db.ahead = LockAhead(db.begin, db.abandon, lambda: True, enabled=False)
    committer = _committer(db)
    db.hold.clear()
    first = asyncio.ensure_future(committer.submit(_pending(0)))
    await asyncio.wait_for(db.writing.wait(), 5)
    later = [asyncio.ensure_future(committer.submit(_pending(n))) for n in range(1, 3)]
    await asyncio.sleep(0.01)
    assert db.begins == 1 and not db.ahead.pending()
    db.hold.set()
    await asyncio.wait_for(asyncio.gather(first, *later), 5)
    await committer.stop()
    assert db.begins == 2 and db.batches == [["e-0"], ["e-1", "e-2"]]
