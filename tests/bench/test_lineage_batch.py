"""Group reads of the lineage: concurrent lookups share one query, and never read older data than asked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.lineage_batch import BatchedLineageReader, Coalescer


class _Store:
    """A store whose ``fetch`` records each query and answers lineage rows from a dict of jti → client."""

    def __init__(self) -> None:
        self.queries: list[tuple[Any, ...]] = []
        self.clients: dict[str, str] = {}
        self.gate: asyncio.Event | None = None

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        self.queries.append(args)
        if self.gate is not None:
            await self.gate.wait()
        snapshot = dict(self.clients)  # what the query sees when it runs
        return [_row(jti, client) for jti, client in snapshot.items() if jti in args]


def _row(jti: str, client: str) -> tuple[Any, ...]:
    """A lineage row as selected with LINEAGE_COLUMNS."""
    return (jti, None, jti, 1, "https://idp", "alice", "https://idp", "alice", client, '["orders"]', "[]", None,
            1000, 1300, 1, None, None, None, None, None)


async def test_concurrent_lookups_share_one_query() -> None:
    """Lookups asked in the same loop turn are answered by a single query, each with its own answer."""
    store = _Store()
    store.clients["t2"] = "billing"
    reader = BatchedLineageReader(store)  # type: ignore[arg-type]
    rows = await asyncio.gather(*(reader.get(jti) for jti in ("t1", "t2", "t2")))
    assert rows[0] is None and rows[1] is not None and rows[1].client_id == "billing" and rows[2] == rows[1]
    assert len(store.queries) == 1 and sorted(store.queries[0]) == ["t1", "t2"]


async def test_a_lookup_asked_during_a_query_waits_for_a_fresh_one() -> None:
    """A row committed after a query started but before a lookup was asked is still seen by that lookup."""
    store = _Store()
    store.gate = asyncio.Event()
    reader = BatchedLineageReader(store)  # type: ignore[arg-type]
    first = asyncio.create_task(reader.get("t3"))
    while not store.queries:
        await asyncio.sleep(0)
    store.clients["t3"] = "orders"  # committed while the first query is in flight
    second = asyncio.create_task(reader.get("t3"))
    await asyncio.sleep(0)
    store.gate.set()
    assert (await second) is not None
    assert len(store.queries) == 2
    await first


async def test_a_failed_query_fails_every_waiter_and_the_next_batch_runs() -> None:
    """When the query fails, each lookup of that batch raises; later lookups get a new query."""
    calls = 0

    async def fetch_many(keys: list[str]) -> dict[str, int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("down")
        return {k: 1 for k in keys}

    coalescer: Coalescer[str, int] = Coalescer(fetch_many, 0)
    results = await asyncio.gather(coalescer.load("a"), coalescer.load("b"), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await coalescer.load("a") == 1


@pytest.mark.parametrize("count", [1, 1201])
async def test_large_batches_are_split_into_bounded_queries(count: int) -> None:
    """More keys than one statement should carry are fetched in chunks, all answered."""
    sizes: list[int] = []

    async def fetch_many(keys: list[int]) -> dict[int, int]:
        sizes.append(len(keys))
        return {k: k * 2 for k in keys}

    coalescer: Coalescer[int, int] = Coalescer(fetch_many, -1)
    values = await asyncio.gather(*(coalescer.load(i) for i in range(count)))
    assert values == [i * 2 for i in range(count)]
    assert max(sizes) <= 500 and sum(sizes) == count
