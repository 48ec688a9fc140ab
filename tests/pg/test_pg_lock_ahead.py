"""The append lock taken ahead on PostgreSQL: batches gather behind the lock, nothing holds it idle, timeouts fail once."""

from __future__ import annotations

import asyncio
import time

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


async def _wait_for_lock_waiters(conn: asyncpg.Connection, key: int, count: int) -> None:
    for _ in range(500):
        if sum(1 for granted, _pid in await _advisory_locks(conn, key) if not granted) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} session(s) never queued for the append lock")


async def test_appends_waiting_for_the_lock_go_as_one_batch(pg_dsn: str) -> None:
    """While another session holds the append lock, appends that arrive join the batch waiting for it."""
    store = PostgresEventStore(pg_dsn, pool_max=4)
    await store.open()
    holder = await asyncpg.connect(pg_dsn, timeout=5)
    sizes: list[int] = []
    store.committer.on_batch = lambda size, _seconds: sizes.append(size)
    try:
        key = await holder.fetchval(_KEY)
        await holder.execute("BEGIN")
        await holder.execute("SELECT pg_advisory_xact_lock($1)", key)
        appends = [asyncio.ensure_future(store.append("s-0", [_event(0)]))]
        await _wait_for_lock_waiters(holder, key, 1)
        appends += [asyncio.ensure_future(store.append(f"s-{n}", [_event(n)])) for n in range(1, 6)]
        await asyncio.sleep(0.05)
        await holder.execute("COMMIT")
        await asyncio.wait_for(asyncio.gather(*appends), 10)
        assert sizes == [6]
        assert [r.position for r in await store.read_all()] == list(range(1, 7))
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
        assert await _advisory_locks(watcher, key) == []
        idle = await watcher.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'lock-ahead-%' "
            "AND state LIKE 'idle in transaction%'"
        )
        assert idle == 0
    finally:
        await watcher.close()
        for s in stores:
            await s.close()


async def test_a_lock_wait_past_the_command_timeout_fails_its_batch_once(pg_dsn: str) -> None:
    """The begin sent ahead is the batch's own: a lock held too long fails the batch after one timeout (not a
    second wait on a fresh begin), and the store appends again once the lock is free."""
    store = PostgresEventStore(pg_dsn, pool_max=4, command_timeout=1.0)
    await store.open()
    holder = await asyncpg.connect(pg_dsn, timeout=5)
    try:
        key = await holder.fetchval(_KEY)
        await holder.execute("BEGIN")
        await holder.execute("SELECT pg_advisory_xact_lock($1)", key)
        started = time.monotonic()
        try:
            await asyncio.wait_for(store.append("s", [_event(0)]), 10)
        except StoreUnavailable:
            pass
        else:
            raise AssertionError("an append whose lock never came was reported written")
        assert time.monotonic() - started < 1.9
        await holder.execute("COMMIT")
        (record,) = await asyncio.wait_for(store.append("s", [_event(1)]), 10)
        assert record.position == 1
    finally:
        await holder.close()
        await store.close()
