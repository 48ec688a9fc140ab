"""An event that cannot be stored faithfully fails its own append only, never its batch-mates."""

from __future__ import annotations

import asyncio

import pytest

from eventstore import SubjectRevoked, TokenRevoked
from eventstore.errors import InvalidEvent


@pytest.mark.parametrize("before", [float("nan"), float("inf")])
async def test_unrepresentable_event_fails_alone(store, before):
    """A NaN/∞ instant (stored as JSON null) is refused for its caller; concurrent appends commit."""
    bad = SubjectRevoked(at=1.0, iss="https://idp", sub="alice", before=before, by="t")
    good = [TokenRevoked(at=1.0, jti=f"j{i}", by="t") for i in range(5)]
    results = await asyncio.gather(
        store.append("bad", [bad]), *(store.append(f"good-{i}", [e]) for i, e in enumerate(good)),
        return_exceptions=True,
    )
    assert isinstance(results[0], InvalidEvent)
    assert all(isinstance(r, list) and len(r) == 1 for r in results[1:])
    assert [r.event_type for r in await store.read_all()] == ["TokenRevoked"] * 5


async def test_unpaired_surrogate_is_refused(store):
    """Text that is not Unicode (a lone surrogate) cannot become canonical bytes."""
    with pytest.raises(InvalidEvent):
        await store.append("bad", [TokenRevoked(at=1.0, jti="\ud800", by="t")])
    assert await store.read_all() == []


def test_in_memory_sqlite_is_refused_with_a_reason():
    """``sqlite://:memory:`` cannot work (reads use a second connection): refused up front, not 503s later."""
    from eventstore import open_store

    with pytest.raises(ValueError, match="memory"):
        open_store("sqlite://:memory:")
