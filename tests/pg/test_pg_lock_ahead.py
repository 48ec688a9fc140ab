"""The append lock taken ahead on PostgreSQL: batches gather behind the lock, nothing holds it idle, timeouts fail once."""

from __future__ import annotations

import asyncio

import asyncpg

from eventstore import TokenRevoked
from eventstore.errors import StoreUnavailable
from eventstore.postgres import PostgresEventStore

_KEY = "SELECT hashtextextended('baton.events.' || current_schema(), 0)"


def _event(n: int) -> TokenRevoked:
    return TokenRevoked(at=float(n), jti=f"j-{n}", by="t")


async def _advisory_locks(conn: asyncpg.Connection, key: int) -> list[tuple[bool, int]]:
    """(granted, pid) of every session holding or awaiting the append lock ``key``."""
    # a bigint key shows as its high and low 32 bits, each an unsigned oid
    rows = await conn.fetch(
        "SELECT granted, pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database()) AND classid = $1::oid AND objid = $2::oid",
        (key >> 32) & 0xFFFFFFFF,
        key & 0xFFFFFFFF,
    )
    return [(r["granted"], r["pid"]) for r in rows]


async def _hold_the_lock(conn: asyncpg.Connection) -> int:
    """Take the append lock in an open transaction of ``conn`` (as another instance's batch would); its key."""
    key = await conn.fetchval(_KEY)
    await conn.execute("BEGIN")
    await conn.execute("SELECT pg_advisory_xact_lock($1)", key)
    return key


async def _waiters(conn: asyncpg.Connection, key: int) -> list[int]:
    return [pid for granted, pid in await _advisory_locks(conn, key) if not granted]


async def _wait_for_lock_waiters(conn: asyncpg.Connection, key: int, count: int, *, besides: int = 0) -> list[int]:
    """The pids waiting for the append lock, once ``count`` of them (other than ``besides``) are."""
    for _ in range(500):
        waiting = [pid for pid in await _waiters(conn, key) if pid != besides]
        if len(waiting) >= count:
            return waiting
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} session(s) never queued for the append lock")


async def _nothing_left(conn: asyncpg.Connection, key: int, application_name: str) -> None:
    """No session holds or awaits the append lock, and none of the store's idles inside a transaction."""
    assert await _advisory_locks(conn, key) == []
    idle = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state LIKE 'idle in transaction%'",
        application_name,
    )
    assert idle == 0


async def test_appends_waiting_for_the_lock_go_as_one_batch(pg_dsn: str) -> None:
    """While another session holds the append lock, appends that arrive join the batch waiting for it."""
    store = PostgresEventStore(pg_dsn, pool_max=4, application_name="lock-ahead-batch")
    await store.open()
    holder = await asyncpg.connect(pg_dsn, timeout=5)
    sizes: list[int] = []
    store.committer.on_batch = lambda size, _seconds: sizes.append(size)
    try:
        key = await _hold_the_lock(holder)
        appends = [asyncio.ensure_future(store.append("s-0", [_event(0)]))]
        await _wait_for_lock_waiters(holder, key, 1)
        appends += [asyncio.ensure_future(store.append(f"s-{n}", [_event(n)])) for n in range(1, 6)]
        await asyncio.sleep(0.05)
        await holder.execute("COMMIT")
        await asyncio.wait_for(asyncio.gather(*appends), 10)
        assert sizes == [6]
        assert [r.position for r in await store.read_all()] == list(range(1, 7))
        await _nothing_left(holder, key, "lock-ahead-batch")
    finally:
        await holder.close()
        await store.close()


async def test_two_instances_take_turns_and_leave_no_lock_held(pg_dsn: str) -> None:
    """Two instances appending flat out each keep a lock request queued; both finish, the log is one
    contiguous hash chain, and once they are done no session holds or awaits the lock, none idles in a
    transaction."""
    stores = [PostgresEventStore(pg_dsn, pool_max=4, application_name=f"lock-ahead-{n}") for n in range(2)]
    for s in stores:
        await s.open()
    watcher = await asyncpg.connect(pg_dsn, timeout=5)
    try:
        key = await watcher.fetchval(_KEY)

        async def write(store: PostgresEventStore, w: int) -> None:
            for n in range(25):
                await store.append(f"i{id(store)}-{w}", [_event(n)])

        await asyncio.wait_for(asyncio.gather(*(write(s, w) for s in stores for w in range(12))), 60)
        records = await stores[0].read_all(limit=10_000)
        assert [r.position for r in records] == list(range(1, 2 * 12 * 25 + 1))
        assert all(b.prev_hash == a.hash for a, b in zip(records, records[1:]))
        for n in range(2):
            await _nothing_left(watcher, key, f"lock-ahead-{n}")
    finally:
        await watcher.close()
        for s in stores:
            await s.close()


async def test_a_lock_wait_past_the_command_timeout_fails_its_batch_once(pg_dsn: str) -> None:
    """The begin sent ahead is the batch's own: a lock held too long fails the batch after one timeout (not a
    second wait on a fresh begin), and the store appends again once the lock is free."""
    store = PostgresEventStore(pg_dsn, pool_max=4, command_timeout=1.0, application_name="lock-ahead-timeout")
    await store.open()
    holder = await asyncpg.connect(pg_dsn, timeout=5)
    try:
        key = await _hold_the_lock(holder)
        begins = 0
        begin = store._lock_ahead._begin

        async def counted():
            nonlocal begins
            begins += 1
            return await begin()

        store._lock_ahead._begin = counted  # type: ignore[method-assign]
        try:
            await asyncio.wait_for(store.append("s", [_event(0)]), 10)
        except StoreUnavailable:
            pass
        else:
            raise AssertionError("an append whose lock never came was reported written")
        assert begins == 1, "the timed-out begin was the batch's own: no second wait on a fresh one"
        await holder.execute("COMMIT")
        (record,) = await asyncio.wait_for(store.append("s", [_event(1)]), 10)
        assert record.position == 1
        await _nothing_left(holder, key, "lock-ahead-timeout")
    finally:
        await holder.close()
        await store.close()


async def test_a_begin_sent_ahead_on_a_connection_that_dies_is_sent_again(pg_dsn: str) -> None:
    """The session waiting for the lock is killed (as by a failover): the batch begins on a fresh connection,
    no second request of the store's is queued meanwhile, and every append lands once."""
    store = PostgresEventStore(pg_dsn, pool_max=4, application_name="lock-ahead-kill")
    await store.open()
    holder = await asyncpg.connect(pg_dsn, timeout=5)
    try:
        key = await _hold_the_lock(holder)
        appends = [asyncio.ensure_future(store.append("s-0", [_event(0)]))]
        (first,) = await _wait_for_lock_waiters(holder, key, 1)
        assert await holder.fetchval("SELECT pg_terminate_backend($1)", first)
        await _wait_for_lock_waiters(holder, key, 1, besides=first)
        appends += [asyncio.ensure_future(store.append(f"s-{n}", [_event(n)])) for n in range(1, 4)]
        await asyncio.sleep(0.1)
        assert len(await _waiters(holder, key)) == 1, "one lock request of the store's at a time"
        await holder.execute("COMMIT")
        await asyncio.wait_for(asyncio.gather(*appends), 10)
        records = await store.read_all()
        assert sorted(r.stream_id for r in records) == [f"s-{n}" for n in range(4)]
        assert [r.position for r in records] == list(range(1, 5))
        await _nothing_left(holder, key, "lock-ahead-kill")
    finally:
        await holder.close()
        await store.close()


async def test_a_pool_too_small_for_a_second_connection_takes_the_lock_batch_by_batch(pg_dsn: str) -> None:
    """pool_max 2: the group commit never holds both connections, so a read always finds one free."""
    store = PostgresEventStore(pg_dsn, pool_max=2, application_name="lock-ahead-small")
    await store.open()
    watcher = await asyncpg.connect(pg_dsn, timeout=5)
    try:
        key = await watcher.fetchval(_KEY)
        busiest = 0

        async def watch() -> None:
            nonlocal busiest
            while True:
                busiest = max(busiest, len(await _advisory_locks(watcher, key)))
                await asyncio.sleep(0)

        watching = asyncio.create_task(watch())

        async def write(w: int) -> None:
            for n in range(20):
                await store.append(f"small-{w}", [_event(n)])
                assert await store.read_all(limit=1)

        await asyncio.wait_for(asyncio.gather(*(write(w) for w in range(8))), 30)
        watching.cancel()
        assert busiest == 1, "never a second lock request of the store's"
        assert len(await store.read_all(limit=1000)) == 160
        await _nothing_left(watcher, key, "lock-ahead-small")
    finally:
        await watcher.close()
        await store.close()


class _Paused:
    """An inline projection that holds the first batch it sees until let go (the batch holds the lock meanwhile)."""

    name = "paused"

    def __init__(self) -> None:
        self.inside = asyncio.Event()
        self.go = asyncio.Event()

    def schema(self, dialect: str) -> list[str]:
        return []

    async def apply(self, tx: object, events: object) -> None:
        if not self.go.is_set():
            self.inside.set()
            await self.go.wait()

    async def reset(self, tx: object) -> None:
        return None


async def test_a_batch_and_the_lock_taken_ahead_both_lost_are_retried_on_fresh_connections(pg_dsn: str) -> None:
    """A server-side kill of every session of the store's while a batch is written and the next batch's lock
    is being taken ahead: the retry meets the dead begin too, begins anew, and no append is lost or doubled."""
    paused = _Paused()
    store = PostgresEventStore(pg_dsn, [paused], pool_max=4, application_name="lock-ahead-both")
    await store.open()
    watcher = await asyncpg.connect(pg_dsn, timeout=5)
    try:
        key = await watcher.fetchval(_KEY)
        appends = [asyncio.ensure_future(store.append("s-0", [_event(0)]))]
        await asyncio.wait_for(paused.inside.wait(), 10)
        appends += [asyncio.ensure_future(store.append(f"s-{n}", [_event(n)])) for n in range(1, 4)]
        (ahead,) = await _wait_for_lock_waiters(watcher, key, 1)
        (writer,) = [pid for granted, pid in await _advisory_locks(watcher, key) if granted]
        for pid in (writer, ahead):
            assert await watcher.fetchval("SELECT pg_terminate_backend($1)", pid)
        paused.go.set()
        await asyncio.wait_for(asyncio.gather(*appends), 15)
        records = await store.read_all()
        assert sorted(r.stream_id for r in records) == [f"s-{n}" for n in range(4)]
        assert [r.position for r in records] == list(range(1, 5))
        assert all(b.prev_hash == a.hash for a, b in zip(records, records[1:]))
        await _nothing_left(watcher, key, "lock-ahead-both")
    finally:
        await watcher.close()
        await store.close()
