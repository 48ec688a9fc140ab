"""Several Baton instances appending at once: a reader following the log never sees a gap or skips a position."""

from __future__ import annotations

import asyncio

import asyncpg

from eventstore import TokenRevoked
from eventstore.postgres import PostgresEventStore


async def test_tailing_reader_never_skips_under_concurrent_writers(pg_dsn: str) -> None:
    """Three store instances (own pools, own group committers) × 8 writers, and a reader polling ``position > last``.

    Every page the reader gets starts right after what it saw last and is
    contiguous: no event ever becomes visible after a higher position, so
    a follower that keeps only its last position misses nothing.
    """
    stores = [PostgresEventStore(pg_dsn, max_batch=b, pool_max=3) for b in (1, 8, 64)]
    for s in stores:
        await s.open()
    per_writer = 40
    done = asyncio.Event()
    observed: list[int] = []

    async def write(store: PostgresEventStore, w: int) -> None:
        for n in range(per_writer):
            await store.append(f"w{id(store)}-{w}", [TokenRevoked(at=float(n), jti=f"{w}-{n}", by="t")])

    async def tail(conn: asyncpg.Connection) -> None:
        last = 0
        while True:
            finished = done.is_set()
            rows = await conn.fetch("SELECT position FROM events WHERE position > $1 ORDER BY position LIMIT 50", last)
            for (position,) in rows:
                assert position == last + 1, f"reader saw {position} right after {last}"
                last = position
                observed.append(position)
            if finished and not rows:
                return
            if not rows:
                await asyncio.sleep(0)

    reader = await asyncpg.connect(pg_dsn, timeout=5)
    try:
        tailer = asyncio.create_task(tail(reader))
        await asyncio.gather(*(write(s, w) for s in stores for w in range(8)))
        done.set()
        await tailer
    finally:
        await reader.close()
        for s in stores:
            await s.close()
    total = len(stores) * 8 * per_writer
    assert observed == list(range(1, total + 1))


async def test_appends_stay_ordered_when_the_server_defaults_to_repeatable_read(pg_dsn: str) -> None:
    """With ``default_transaction_isolation = 'repeatable read'`` (a server, database or role setting), an append
    that waited for another instance's lock would read the chain head from a snapshot taken before the wait.
    The store's transactions are READ COMMITTED whatever the default: two instances' appends all succeed, in
    one contiguous, hash-linked log."""
    dsn = f"{pg_dsn}&default_transaction_isolation=repeatable%20read"
    probe = await asyncpg.connect(dsn, timeout=5)
    try:
        assert await probe.fetchval("SHOW default_transaction_isolation") == "repeatable read"
    finally:
        await probe.close()
    stores = [PostgresEventStore(dsn, max_batch=4, pool_max=3) for _ in range(2)]
    for s in stores:
        await s.open()
    try:
        async def write(store: PostgresEventStore, w: int) -> None:
            for n in range(15):
                await store.append(f"rr-{id(store)}-{w}", [TokenRevoked(at=float(n), jti=f"{w}-{n}", by="t")])

        await asyncio.gather(*(write(s, w) for s in stores for w in range(4)))
        records = await stores[0].read_all()
        assert [r.position for r in records] == list(range(1, 2 * 4 * 15 + 1))
        assert all(b.prev_hash == a.hash for a, b in zip(records, records[1:]))
    finally:
        for s in stores:
            await s.close()
