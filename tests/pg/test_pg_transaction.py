"""``PostgresEventStore.transaction``: the append lock is held from BEGIN to COMMIT; a failure leaves nothing behind."""

from __future__ import annotations

import asyncio

import pytest

from eventstore import TokenRevoked
from eventstore.postgres import PostgresEventStore


@pytest.fixture
async def stores(pg_dsn: str):
    pair = [PostgresEventStore(pg_dsn, pool_max=2), PostgresEventStore(pg_dsn, pool_max=2)]
    for store in pair:
        await store.open()
    await pair[0].fetch("CREATE TABLE tx_probe (name TEXT PRIMARY KEY)")
    yield pair
    for store in pair:
        await store.close()


async def test_an_open_write_transaction_holds_back_other_instances_appends(stores) -> None:
    """Another instance's append waits for the whole transaction, and then lands after it."""
    first, second = stores
    async with first.transaction() as tx:
        await tx.execute("INSERT INTO tx_probe VALUES ('held')")
        waiting = asyncio.create_task(second.append("s-1", [TokenRevoked(at=1.0, jti="j1", by="t")]))
        done, _ = await asyncio.wait({waiting}, timeout=0.3)
        assert not done, "an append went through while another instance held the write lock"
    (record,) = await waiting
    assert record.position == 1
    assert await first.fetch("SELECT name FROM tx_probe WHERE name = 'held'") == [("held",)]


async def test_a_failed_transaction_rolls_back_and_the_connection_is_reused_clean(stores) -> None:
    """An error inside the block undoes its writes, releases the lock, and leaves no open transaction in the pool."""
    first, second = stores
    loop_errors: list[dict] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: loop_errors.append(context))

    with pytest.raises(RuntimeError):
        async with first.transaction() as tx:
            await tx.execute("INSERT INTO tx_probe VALUES ('lost')")
            raise RuntimeError("boom")
    with pytest.raises(Exception):
        async with first.transaction() as tx:
            await tx.execute("SELECT 1 / 0")

    (record,) = await asyncio.wait_for(second.append("s-2", [TokenRevoked(at=1.0, jti="j2", by="t")]), 5)
    assert record.position == 1
    assert await first.fetch("SELECT name FROM tx_probe WHERE name = 'lost'") == []
    async with first.transaction(write_lock=False) as tx:
        assert await tx.fetch("SELECT count(*) FROM events") == [(1,)]
    assert loop_errors == []
