"""Group reads of the lineage: concurrent lookups share one query, and never read older data than asked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.lineage_batch import BatchedLineageReader, Coalescer


class _Store:
    """A store whose ``fetch`` records each query and answers revoked subjects from a dict."""

    def __init__(self) -> None:
        self.queries: list[tuple[Any, ...]] = []
        self.revoked: dict[tuple[str, str], float] = {}
        self.gate: asyncio.Event | None = None

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        self.queries.append(args)
        if self.gate is not None:
            await self.gate.wait()
        snapshot = dict(self.revoked)  # what the query sees when it runs
        return [(iss, sub, before) for (iss, sub), before in snapshot.items() if sub in args]


async def test_concurrent_lookups_share_one_query() -> None:
    """Lookups asked in the same loop turn are answered by a single query, each with its own answer."""
    store = _Store()
    store.revoked[("https://idp", "bob")] = 100.0
    reader = BatchedLineageReader(store)  # type: ignore[arg-type]
    answers = await asyncio.gather(*(reader.subject_revoked_before("https://idp", s) for s in ("alice", "bob", "bob")))
    assert answers == [None, 100.0, 100.0]
    assert len(store.queries) == 1 and sorted(store.queries[0]) == ["alice", "bob"]


async def test_issuer_must_match_as_well_as_subject() -> None:
    """A revocation of (issuer A, sub) does not answer for (issuer B, sub)."""
    store = _Store()
    store.revoked[("https://a", "bob")] = 100.0
    reader = BatchedLineageReader(store)  # type: ignore[arg-type]
    assert await reader.subject_revoked_before("https://b", "bob") is None
    assert await reader.subject_revoked_before("https://a", "bob") == 100.0


async def test_a_lookup_asked_during_a_query_waits_for_a_fresh_one() -> None:
    """A revocation committed after a query started but before a lookup was asked is still seen by that lookup."""
    store = _Store()
    store.gate = asyncio.Event()
    reader = BatchedLineageReader(store)  # type: ignore[arg-type]
    first = asyncio.create_task(reader.subject_revoked_before("https://idp", "carol"))
    while not store.queries:
        await asyncio.sleep(0)
    store.revoked[("https://idp", "carol")] = 50.0  # committed while the first query is in flight
    second = asyncio.create_task(reader.subject_revoked_before("https://idp", "carol"))
    await asyncio.sleep(0)
    store.gate.set()
    assert await second == 50.0
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
