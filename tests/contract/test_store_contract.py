"""The event store contract, the same on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from eventstore import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    ConcurrencyError,
    StoreError,
    StoreUnavailable,
    TokenRevoked,
)
from eventstore.hashing import chain_hash, record_bytes
from eventstore.types import GENESIS_HASH

from .conftest import Backend, SeenProjection


def revoked(jti: str = "j1") -> TokenRevoked:
    return TokenRevoked(at=1_700_000_000.0, jti=jti, by="tester", reason="test")


async def test_append_and_read_back(store) -> None:
    """What was appended comes back from read_all, read_stream and head, byte for byte."""
    [a] = await store.append("s1", [revoked("a")])
    b, c = await store.append("s2", [revoked("b"), revoked("c")])
    assert [r.position for r in (a, b, c)] == [1, 2, 3]
    assert [(r.stream_id, r.stream_version) for r in (a, b, c)] == [("s1", 0), ("s2", 0), ("s2", 1)]
    assert await store.read_all() == [a, b, c]
    assert await store.read_all(2, limit=1) == [b]
    assert await store.read_stream("s2") == [b, c]
    assert await store.read_stream("nope") == []
    assert await store.last_in_stream("s2") == c and await store.last_in_stream("nope") is None
    assert await store.head() == (3, c.hash)
    assert c.event == revoked("c")


async def test_empty_store_head_is_genesis(store) -> None:
    """An empty log's head is position 0 with the genesis hash."""
    assert await store.head() == (0, GENESIS_HASH)
    assert await store.read_all() == []


async def test_concurrent_appends_get_gap_free_positions(store) -> None:
    """Appends racing from many tasks end as positions 1…N with no gap, and per-stream versions 0…k."""
    results = await asyncio.gather(*(store.append(f"s{i % 7}", [revoked(str(i))]) for i in range(120)))
    positions = sorted(r[0].position for r in results)
    assert positions == list(range(1, 121))
    for s in range(7):
        versions = [r.stream_version for r in await store.read_stream(f"s{s}")]
        assert versions == list(range(len(versions)))


@pytest.mark.parametrize(
    ("setup", "expected", "ok"),
    [
        (0, NO_STREAM, True),
        (1, NO_STREAM, False),
        (0, STREAM_EXISTS, False),
        (2, STREAM_EXISTS, True),
        (2, 1, True),
        (2, 0, False),
        (2, 5, False),
        (0, ANY, True),
        (3, ANY, True),
    ],
)
async def test_expected_version(store, setup: int, expected: int, ok: bool) -> None:
    """Optimistic concurrency: NO_STREAM, STREAM_EXISTS, an exact version, or ANY; a conflict writes nothing."""
    for i in range(setup):
        await store.append("s", [revoked(str(i))])
    if ok:
        [record] = await store.append("s", [revoked("x")], expected_version=expected)
        assert record.stream_version == setup
    else:
        with pytest.raises(ConcurrencyError) as info:
            await store.append("s", [revoked("x")], expected_version=expected)
        assert info.value.actual == setup - 1
        assert (await store.head())[0] == setup


async def test_stream_versions_hold_in_batches_too_large_for_one_read(store) -> None:
    """Batches of ~256 appends (ids and streams read in chunks) still see every stream's current version.

    A long stream keeps counting; new streams start at 0; an append expecting a
    stream to be new fails once it exists, in the same large batch or a later one.
    """
    for i in range(30):
        await store.append("long", [revoked(f"l{i}")])
    firsts = await asyncio.gather(
        *(store.append(f"new-{i}", [revoked(f"n{i}")], expected_version=NO_STREAM) for i in range(400)),
        store.append("long", [revoked("l30")], expected_version=29),
    )
    assert [r[0].stream_version for r in firsts] == [0] * 400 + [30]
    again = await asyncio.gather(
        *(store.append(f"new-{i}", [revoked(f"m{i}")], expected_version=NO_STREAM) for i in range(400)),
        store.append("long", [revoked("l31")], expected_version=30),
        return_exceptions=True,
    )
    assert all(isinstance(r, ConcurrencyError) and r.actual == 0 for r in again[:400])
    assert again[400][0].stream_version == 31
    assert (await store.head())[0] == 30 + 401 + 1


async def test_conflict_fails_only_its_own_append(store) -> None:
    """In one group-committed batch, a conflicting append fails alone; the others are stored."""
    await store.append("s", [revoked("first")])
    results = await asyncio.gather(
        store.append("s", [revoked("bad")], expected_version=NO_STREAM),
        *(store.append(f"other{i}", [revoked(str(i))]) for i in range(5)),
        return_exceptions=True,
    )
    assert isinstance(results[0], ConcurrencyError)
    assert all(isinstance(r, list) for r in results[1:])
    assert [r.position for r in await store.read_all()] == list(range(1, 7))


async def test_event_id_is_idempotent(store) -> None:
    """The same event id appended twice (in turn or at once) is stored once; the stored record is returned."""
    [first] = await store.append("s", [revoked()], event_ids=["id-1"])
    [again] = await store.append("s", [revoked()], event_ids=["id-1"], expected_version=NO_STREAM)
    assert again == first
    one, two = await asyncio.gather(
        store.append("t", [revoked()], event_ids=["id-2"]), store.append("t", [revoked()], event_ids=["id-2"])
    )
    assert one == two
    assert [r.event_id for r in await store.read_all()] == ["id-1", "id-2"]


async def test_partly_stored_append_is_refused(store) -> None:
    """An append whose ids are partly stored already is an error, not a half write."""
    await store.append("s", [revoked()], event_ids=["id-1"])
    with pytest.raises(StoreError):
        await store.append("s", [revoked(), revoked()], event_ids=["id-1", "id-2"])
    assert len(await store.read_all()) == 1


async def test_inline_projection_runs_in_the_append_transaction(store) -> None:
    """The inline projection sees the new events inside the same transaction and commits with them."""
    await asyncio.gather(*(store.append(f"s{i}", [revoked(str(i))]) for i in range(10)))
    rows = await store.fetch("SELECT position, visible FROM test_seen ORDER BY position")
    assert rows == [(p, 1) for p in range(1, 11)]


async def test_failing_projection_rolls_the_batch_back(backend: Backend) -> None:
    """When a projection fails, the append fails with StoreUnavailable and leaves no trace: no event, no gap."""
    store = backend.make([SeenProjection(fail_on_stream="boom")])
    await store.open()
    try:
        await store.append("ok", [revoked("1")])
        with pytest.raises(StoreUnavailable):
            await store.append("boom", [revoked("2")])
        assert await store.read_stream("boom") == []
        [after] = await store.append("ok", [revoked("3")])
        assert after.position == 2
        assert after.prev_hash == (await store.read_all(1, 1))[0].hash
        assert await store.fetch("SELECT position FROM test_seen ORDER BY position") == [(1,), (2,)]
    finally:
        await store.close()


async def test_transaction_rollback_leaves_no_trace(store) -> None:
    """An exception inside ``transaction()`` rolls back everything written in it."""
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.execute("INSERT INTO test_seen (position, visible) VALUES ($1, $2)", 99, 0)
            raise RuntimeError("abort")
    assert await store.fetch("SELECT count(*) FROM test_seen") == [(0,)]
    async with store.transaction() as tx:
        await tx.executemany("INSERT INTO test_seen (position, visible) VALUES ($1, $2)", [(7, 0), (8, 0)])
        assert await tx.fetch("SELECT position FROM test_seen ORDER BY position") == [(7,), (8,)]
    assert await store.fetch("SELECT count(*) FROM test_seen") == [(2,)]


async def test_records_form_a_hash_chain(store) -> None:
    """Each record's prev_hash is its predecessor's hash, and its hash recomputes from the stored bytes."""
    await asyncio.gather(*(store.append(f"s{i % 3}", [revoked(str(i))]) for i in range(20)))
    prev = GENESIS_HASH
    for r in await store.read_all():
        assert r.prev_hash == prev
        assert r.hash == chain_hash(prev, r.position, record_bytes(r.stream_id, r.stream_version, r.event_id, r.recorded_at, r.data))
        prev = r.hash


async def test_reopened_store_continues_the_log(backend: Backend) -> None:
    """A second store instance on the same database continues positions, versions and the chain."""
    first = backend.make()
    await first.open()
    [a] = await first.append("s", [revoked()])
    await first.close()
    second = backend.make()
    await second.open()
    try:
        [b] = await second.append("s", [revoked()], expected_version=0)
        assert (b.position, b.stream_version, b.prev_hash) == (2, 1, a.hash)
    finally:
        await second.close()


async def test_database_refuses_update_and_delete_of_events(store, backend: Backend) -> None:
    """The events table is append-only even for the owner: UPDATE and DELETE are refused by a trigger."""
    await store.append("s", [revoked()])
    with pytest.raises(Exception, match="append-only"):
        await backend.raw("UPDATE events SET data = $1 WHERE position = 1", b"{}")
    with pytest.raises(Exception, match="append-only"):
        await backend.raw("DELETE FROM events WHERE position = 1")
    assert len(await store.read_all()) == 1


async def test_ping_and_fetch(store) -> None:
    """An open store answers ping and read-only queries."""
    assert await store.ping() is True
    assert await store.fetch("SELECT $1 + 1", 41) == [(42,)]


async def test_mismatched_event_ids_are_rejected(store) -> None:
    """Event ids must pair with events one to one."""
    with pytest.raises(ValueError):
        await store.append("s", [revoked()], event_ids=["a", "b"])
