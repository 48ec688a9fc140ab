"""``verify`` and the checkpointer on both backends: a clean log passes, every tampering is named."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.keys import KeyRing, generate_key
from eventstore import ChainCheckpoint, TokenRevoked
from eventstore.checkpoints import CHECKPOINT_STREAM, Checkpointer, checkpoint_payload
from eventstore.hashing import chain_hash, record_bytes
from eventstore.verify import checkpoint_records, export_lines, read_checkpoints_file, verify
from ops.cmd_store import keyring_signer

from .conftest import Backend


@pytest.fixture(scope="module")
def ring() -> KeyRing:
    return KeyRing([generate_key("ES256")])


def revoked(i: int) -> TokenRevoked:
    return TokenRevoked(at=1_700_000_000.0 + i, jti=f"j{i}", by="tester")


async def fill(store, ring: KeyRing, events: int = 30, every: int = 10) -> Checkpointer:
    """Append ``events`` events with a checkpoint after every ``every``; returns the checkpointer."""
    cp = Checkpointer(store, keyring_signer(ring), every=every, seconds=1e9)
    for i in range(events):
        await store.append(f"s{i % 4}", [revoked(i)])
        await cp.maybe_checkpoint()
    return cp


async def test_clean_log_verifies(store, ring: KeyRing) -> None:
    """An untouched log with checkpoints verifies; the report says how far the signatures reach and what is unanchored."""
    await fill(store, ring)
    head, _ = await store.head()
    seen: list[tuple[int, int]] = []
    report = await verify(store, ring.verification_keys(), progress=lambda d, t: seen.append((d, t)), page=7)
    assert report.ok, report.problem
    assert report.checked_events == head == 33
    assert report.checked_checkpoints == 3
    assert report.anchored_through == 32
    assert seen[-1] == (head, head)
    assert report.notes == []  # only the last checkpoint itself follows the signed head
    await store.append("s", [revoked(99)])
    later = await verify(store, ring.verification_keys())
    assert later.ok and "33…34 are chained but not yet covered" in later.notes[0]


async def test_checkpointer_is_due_by_count_or_time(store, ring: KeyRing) -> None:
    """A checkpoint is written after N events or T seconds with news, never for nothing new."""
    now = [1000.0]
    cp = Checkpointer(store, keyring_signer(ring), every=5, seconds=60, clock=lambda: now[0])
    assert await cp.maybe_checkpoint() is None  # empty log
    for i in range(4):
        await store.append("s", [revoked(i)])
    assert await cp.maybe_checkpoint() is None  # 4 < 5 and no time passed
    await store.append("s", [revoked(4)])
    first = await cp.maybe_checkpoint()
    assert first is not None and first.event.position == 5
    now[0] += 120
    assert await cp.maybe_checkpoint() is None  # only the checkpoint itself is new
    await store.append("s", [revoked(5)])
    second = await cp.maybe_checkpoint()
    assert second is not None and second.event.position == 7


async def test_two_checkpointers_write_one_checkpoint_per_round(store, ring: KeyRing) -> None:
    """Two instances racing to checkpoint the same head: one wins, the other backs off."""
    for i in range(5):
        await store.append("s", [revoked(i)])
    a = Checkpointer(store, keyring_signer(ring), every=1)
    b = Checkpointer(store, keyring_signer(ring), every=1)
    results = await asyncio.gather(a.checkpoint(), b.checkpoint())
    assert sum(r is not None for r in results) == 1
    assert len(await store.read_stream(CHECKPOINT_STREAM)) == 1
    assert await b.maybe_checkpoint() is None  # re-reads the winner's state: nothing new since


async def test_stop_anchors_the_tail(store, ring: KeyRing) -> None:
    """Stopping the checkpointer signs the last events, so a clean shutdown leaves nothing unanchored."""
    cp = Checkpointer(store, keyring_signer(ring), every=1000, seconds=1e9, poll=3600)
    cp.start()
    await store.append("s", [revoked(1)])
    await cp.stop()
    report = await verify(store, ring.verification_keys())
    assert report.ok and report.anchored_through == 1


async def _tamper(backend: Backend, *statements: tuple[str, tuple]) -> None:
    await backend.drop_append_only_guard()
    for sql, args in statements:
        await backend.raw(sql, *args)


async def _alter_data(store, backend: Backend, position: int) -> None:
    """Rewrite one event's stored bytes (``tester`` becomes ``mallet``)."""
    [record] = await store.read_all(position, 1)
    forged = record.data.replace(b"tester", b"mallet")
    assert forged != record.data
    await _tamper(backend, ("UPDATE events SET data = $1 WHERE position = $2", (forged, position)))


async def test_verify_names_an_updated_row(store, backend: Backend, ring: KeyRing) -> None:
    """Changing one event's data is found at that position."""
    await fill(store, ring)
    await _alter_data(store, backend, 12)
    report = await verify(store, ring.verification_keys())
    assert report.problem is not None and report.problem.position == 12
    assert "altered" in report.problem.reason


async def test_verify_names_a_deleted_row(store, backend: Backend, ring: KeyRing) -> None:
    """Deleting a row leaves a hole that is named."""
    await fill(store, ring)
    await _tamper(backend, ("DELETE FROM events WHERE position = 5", ()))
    report = await verify(store, ring.verification_keys())
    assert report.problem is not None and report.problem.position == 5
    assert "missing" in report.problem.reason


async def test_verify_names_reordered_rows(store, backend: Backend, ring: KeyRing) -> None:
    """Swapping two rows' positions breaks the chain at the first of them."""
    await fill(store, ring)
    await _tamper(
        backend,
        ("UPDATE events SET position = 1000 WHERE position = 7", ()),
        ("UPDATE events SET position = 7 WHERE position = 8", ()),
        ("UPDATE events SET position = 8 WHERE position = 1000", ()),
    )
    report = await verify(store, ring.verification_keys())
    assert report.problem is not None and report.problem.position == 7


async def test_verify_catches_a_rewritten_chain(store, backend: Backend, ring: KeyRing) -> None:
    """Altering an old event and recomputing every hash after it is caught by the signed checkpoint."""
    await fill(store, ring)
    await _alter_data(store, backend, 3)
    records = await store.read_all(1, 1000)
    prev = records[1].hash
    for r in records[2:]:
        digest = chain_hash(prev, r.position, record_bytes(r.stream_id, r.stream_version, r.event_id, r.recorded_at, r.data))
        await backend.raw("UPDATE events SET prev_hash = $1, hash = $2 WHERE position = $3", prev, digest, r.position)
        prev = digest
    report = await verify(store, ring.verification_keys())
    assert report.problem is not None
    assert report.problem.position == 10  # the first signed head at or after the change
    assert "rewritten" in report.problem.reason


async def test_exported_checkpoints_catch_a_cut_log(store, backend: Backend, ring: KeyRing, tmp_path: Path) -> None:
    """Cutting the newest events (checkpoints included) is caught by an exported checkpoints file."""
    await fill(store, ring)
    export = tmp_path / "checkpoints.jsonl"
    export.write_bytes(b"".join(export_lines(await checkpoint_records(store))))
    assert len(read_checkpoints_file(export)) == 3
    await _tamper(backend, ("DELETE FROM events WHERE position > 20", ()))
    assert (await verify(store, ring.verification_keys())).ok  # the cut is invisible from inside
    report = await verify(store, ring.verification_keys(), exported=read_checkpoints_file(export))
    assert report.problem is not None and report.problem.position == 21
    assert "truncated" in report.problem.reason


async def test_checkpoint_signed_by_an_unknown_key_fails(store, ring: KeyRing) -> None:
    """A checkpoint whose signature does not verify with the given keys is named."""
    await store.append("s", [revoked(0)])
    stranger = KeyRing([generate_key("ES256")])
    await Checkpointer(store, keyring_signer(stranger)).checkpoint()
    report = await verify(store, ring.verification_keys())
    assert report.problem is not None and report.problem.position == 2
    assert "signature" in report.problem.reason


async def test_checkpoint_fields_must_match_the_signature(store, ring: KeyRing) -> None:
    """A checkpoint event whose plain fields differ from its signed payload is named."""
    [r] = await store.append("s", [revoked(0)])
    signer = keyring_signer(ring)
    signed = signer.sign(checkpoint_payload(1, r.hash, 5.0))
    forged = ChainCheckpoint(at=5.0, position=1, head_hash="00" * 32, kid=signer.kid, signature=signed)
    await store.append(CHECKPOINT_STREAM, [forged])
    report = await verify(store, ring.verification_keys())
    assert report.problem is not None and report.problem.position == 2


async def test_verify_checks_the_event_type_column(store, backend: Backend, ring: KeyRing) -> None:
    """The unhashed event_type column must agree with the hashed data."""
    await fill(store, ring, events=5, every=100)
    await _tamper(backend, ("UPDATE events SET event_type = $1 WHERE position = 2", ("ExchangeDenied",)))
    report = await verify(store, ring.verification_keys())
    assert report.problem is not None and report.problem.position == 2


async def test_verify_from_a_position(store, backend: Backend, ring: KeyRing) -> None:
    """``--from P`` re-walks from P only: damage before P is outside what it checks, after P is found."""
    await fill(store, ring)
    await _alter_data(store, backend, 25)
    report = await verify(store, ring.verification_keys(), from_position=20)
    assert report.problem is not None and report.problem.position == 25
    assert report.checked_events == 5
