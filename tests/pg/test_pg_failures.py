"""PostgreSQL going away: appends fail fast with StoreUnavailable, nothing acknowledged is lost, recovery is automatic."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from eventstore import StoreUnavailable, TokenRevoked
from eventstore.postgres import PostgresEventStore

from .proxy import FlakyProxy


def revoked(i: int) -> TokenRevoked:
    return TokenRevoked(at=1_700_000_000.0, jti=f"j{i}", by="load")


async def _append_until_ok(store: PostgresEventStore, attempts: int = 5) -> int:
    """Append once, retrying a few times; returns how many attempts failed before success."""
    for failed in range(attempts):
        try:
            await store.append("s", [revoked(failed)])
            return failed
        except StoreUnavailable:
            await asyncio.sleep(0.05)
    raise AssertionError("the store did not recover")


async def test_killed_connections_lose_no_acknowledged_append(pg_dsn: str) -> None:
    """Connections terminated mid-load: callers get StoreUnavailable or success, and every success is stored exactly once."""
    app = f"baton-test-{uuid.uuid4().hex[:8]}"
    store = PostgresEventStore(pg_dsn, max_batch=32, application_name=app, command_timeout=5)
    await store.open()
    acknowledged: list[str] = []
    failures: list[BaseException] = []
    stop = asyncio.Event()

    async def writer(w: int) -> None:
        n = 0
        while not stop.is_set():
            eid = f"{w}-{n}"
            n += 1
            try:
                await store.append(f"w{w}", [revoked(n)], event_ids=[eid])
                acknowledged.append(eid)
            except StoreUnavailable as exc:
                failures.append(exc)

    admin = await asyncpg.connect(pg_dsn, timeout=5)
    try:
        writers = [asyncio.create_task(writer(w)) for w in range(16)]
        killed = 0
        for _ in range(5):
            await asyncio.sleep(0.1)
            killed += len(
                await admin.fetch(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", app
                )
            )
        before_recovery = len(acknowledged)
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*writers)
        assert killed > 0
        assert len(acknowledged) > before_recovery  # it kept working after the last kill
        rows = await admin.fetch("SELECT event_id, count(*) FROM events GROUP BY event_id")
        stored = {r[0]: r[1] for r in rows}
        assert all(stored.get(eid) == 1 for eid in acknowledged)
        positions = [r[0] for r in await admin.fetch("SELECT position FROM events ORDER BY position")]
        assert positions == list(range(1, len(positions) + 1))
    finally:
        await admin.close()
        await store.close()


async def test_database_down_fails_fast_and_recovers(proxy: FlakyProxy) -> None:
    """With the server unreachable, append, fetch and ping answer at once; when it returns, the same store works again."""
    store = PostgresEventStore(proxy.dsn, connect_timeout=1, command_timeout=1)  # type: ignore[attr-defined]
    await store.open()
    try:
        await store.append("s", [revoked(0)])
        await proxy.stop()
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(store.append("s", [revoked(1)]), 10)
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(store.fetch("SELECT 1"), 10)
        assert await asyncio.wait_for(store.ping(), 10) is False
        await proxy.start()
        await asyncio.wait_for(_append_until_ok(store), 20)
        assert await store.ping() is True
    finally:
        await store.close()


async def test_black_holed_database_times_out_instead_of_hanging(proxy: FlakyProxy) -> None:
    """A network that swallows packets makes appends fail with StoreUnavailable (bounded), then recover."""
    store = PostgresEventStore(proxy.dsn, connect_timeout=0.5, command_timeout=0.5)  # type: ignore[attr-defined]
    await store.open()
    try:
        await store.append("s", [revoked(0)])
        proxy.frozen = True
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(store.append("s", [revoked(1)]), 15)
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(store.fetch("SELECT 1"), 15)
        proxy.frozen = False
        await asyncio.wait_for(_append_until_ok(store), 20)
    finally:
        proxy.frozen = False
        await store.close()


async def test_open_with_the_database_down_is_store_unavailable(proxy: FlakyProxy) -> None:
    """Opening the store while the server is down raises StoreUnavailable (start-up can report it)."""
    await proxy.stop()
    store = PostgresEventStore(proxy.dsn, connect_timeout=0.5)  # type: ignore[attr-defined]
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(store.open(), 10)
