"""The chain walker behind ``baton verify``, on in-memory logs: any single tampering is found at or before it."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc.jwk import KeySet

from eventstore import TokenRevoked, encode_event
from eventstore.hashing import chain_hash, record_bytes
from eventstore.store import RecordedEvent
from eventstore.types import GENESIS_HASH
from eventstore.verify import ChainWalker, Problem


def build_log(n: int) -> list[RecordedEvent]:
    records, prev = [], GENESIS_HASH
    for p in range(1, n + 1):
        data = encode_event(TokenRevoked(at=float(p), jti=f"jti-{p}", by="tester"))
        digest = chain_hash(prev, p, record_bytes(f"s{p % 3}", p // 3, f"id{p}", float(p), data))
        records.append(
            RecordedEvent(
                position=p, stream_id=f"s{p % 3}", stream_version=p // 3, event_id=f"id{p}",
                event_type="TokenRevoked", recorded_at=float(p), data=data, prev_hash=prev, hash=digest,
            )
        )
        prev = digest
    return records


async def walk(records: list[RecordedEvent]) -> Problem | None:
    async def no_stored(position: int) -> bytes | None:
        return None

    walker = ChainWalker(KeySet([]), 1, GENESIS_HASH, no_stored)
    for record in records:
        problem = await walker.feed(record)
        if problem:
            return problem
    return None


def tamper(records: list[RecordedEvent], k: int, kind: str, byte: int) -> list[RecordedEvent]:
    out = list(records)
    r = out[k - 1]
    if kind == "delete":
        del out[k - 1]
    elif kind == "swap":
        a, b = out[k - 1], out[k]
        out[k - 1] = RecordedEvent(**{**_fields(b), "position": a.position})
        out[k] = RecordedEvent(**{**_fields(a), "position": b.position})
    elif kind == "data":
        i = byte % len(r.data)
        out[k - 1] = RecordedEvent(**{**_fields(r), "data": r.data[:i] + bytes([r.data[i] ^ 0x01]) + r.data[i + 1 :]})
    elif kind == "time":
        out[k - 1] = RecordedEvent(**{**_fields(r), "recorded_at": r.recorded_at + 1})
    elif kind == "version":
        out[k - 1] = RecordedEvent(**{**_fields(r), "stream_version": r.stream_version + 1})
    elif kind == "hash":
        out[k - 1] = RecordedEvent(**{**_fields(r), "hash": bytes(32)})
    return out


def _fields(r: RecordedEvent) -> dict:
    return {f: getattr(r, f) for f in r.__struct_fields__}


def test_untouched_log_passes() -> None:
    """A log built by the chain rules walks clean."""
    assert asyncio.run(walk(build_log(20))) is None


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(3, 25),
    data=st.data(),
    kind=st.sampled_from(["delete", "swap", "data", "time", "version", "hash"]),
    byte=st.integers(0, 10_000),
)
def test_any_single_tampering_is_found_at_or_before_it(n: int, data: st.DataObject, kind: str, byte: int) -> None:
    """Deleting, swapping, or changing any hashed field of any non-final row is reported at that row or earlier."""
    k = data.draw(st.integers(1, n - 1))
    problem = asyncio.run(walk(tamper(build_log(n), k, kind, byte)))
    assert problem is not None
    assert problem.position <= k
