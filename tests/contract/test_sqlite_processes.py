"""Several processes writing one SQLite file queue on an OS lock: each append waits its turn, none is lost,
a waiter that gives up leaves nothing locked, and a holder that never lets go turns into StoreUnavailable."""

from __future__ import annotations

import asyncio

import pytest

from eventstore import StoreUnavailable, TokenRevoked, open_store
from eventstore import sqlite as sqlite_store


def revoked(jti: str) -> TokenRevoked:
    return TokenRevoked(at=1.0, jti=jti, by="test")


@pytest.fixture
async def two_processes(tmp_path):
    """Two stores on one file: separate connections and separate lock descriptors, as two workers have."""
    url = f"sqlite:///{tmp_path}/events.db"
    first, second = open_store(url), open_store(url)
    await first.open()
    await second.open()
    yield first, second
    await first.close()
    await second.close()


async def test_a_writer_waits_for_the_other_process_then_appends(two_processes) -> None:
    """While one process holds its write transaction, the other's append waits; it lands right after, gap-free."""
    first, second = two_processes
    async with first.transaction():
        waiting = asyncio.create_task(second.append("s", [revoked("b")]))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # queued on the lock, not failed
    (record,) = await asyncio.wait_for(waiting, 5)
    await first.append("s", [revoked("c")])
    assert record.position == 1
    records = await first.read_all()
    assert [r.position for r in records] == [1, 2]
    assert records[1].prev_hash == records[0].hash  # one chain across both processes


async def test_a_cancelled_waiter_does_not_keep_the_lock(two_processes) -> None:
    """A writer cancelled while queued (its process shutting down) releases the lock once its thread gets it."""
    first, second = two_processes
    async with first.transaction():
        waiting = asyncio.create_task(_locked_write(second))
        await asyncio.sleep(0.1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    await asyncio.sleep(0.1)  # the abandoned waiter's thread takes and drops the lock
    await asyncio.wait_for(first.append("s", [revoked("next")]), 5)
    await asyncio.wait_for(second.append("s", [revoked("after")]), 5)
    assert [r.position for r in await first.read_all()] == [1, 2]


async def _locked_write(store) -> None:
    async with store.transaction():
        pass


async def test_a_holder_that_never_lets_go_makes_the_store_unavailable(two_processes, monkeypatch) -> None:
    """No append hangs forever behind a stuck process: after the lock timeout it is StoreUnavailable, nothing written."""
    monkeypatch.setattr(sqlite_store, "LOCK_TIMEOUT", 0.3)
    first, second = two_processes
    async with first.transaction():
        with pytest.raises(StoreUnavailable):
            await second.append("s", [revoked("late")])
    assert await first.read_all() == []


async def test_a_wait_given_up_and_retried_never_lets_a_third_writer_in(tmp_path, monkeypatch) -> None:
    """Timeout, retry, holder releases: the retrying process holds the lock alone; a third still has to wait."""
    monkeypatch.setattr(sqlite_store, "LOCK_TIMEOUT", 0.3)
    path = str(tmp_path / "events.db")
    a, b, c = (sqlite_store.ProcessWriteLock(path) for _ in range(3))
    for lock in (a, b, c):
        lock.open()
    await a.acquire()
    with pytest.raises(StoreUnavailable):
        await b.acquire()  # gives up; its thread keeps waiting
    retry = asyncio.create_task(b.acquire())
    await asyncio.sleep(0.05)
    a.release()
    await asyncio.wait_for(retry, 5)
    with pytest.raises(StoreUnavailable):
        await c.acquire()  # b holds it: nobody else gets in
    b.release()
    await asyncio.wait_for(c.acquire(), 5)
    c.release()


async def test_a_wait_given_up_for_good_hands_the_lock_back(tmp_path, monkeypatch) -> None:
    """A process that stops writing after giving up does not keep the lock when its waiting thread gets it."""
    monkeypatch.setattr(sqlite_store, "LOCK_TIMEOUT", 0.3)
    path = str(tmp_path / "events.db")
    a, b = sqlite_store.ProcessWriteLock(path), sqlite_store.ProcessWriteLock(path)
    a.open()
    b.open()
    await a.acquire()
    with pytest.raises(StoreUnavailable):
        await b.acquire()
    a.release()
    await asyncio.sleep(0.1)  # b's thread takes the lock and, unclaimed, drops it
    await asyncio.wait_for(a.acquire(), 1)
    a.release()
