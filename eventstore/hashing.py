"""The hash chain: each record's hash commits to its predecessor and to its bytes.

``hash = SHA-256(prev_hash ‖ position ‖ record bytes)`` where ``position`` is
8 bytes big-endian and the record bytes are the envelope (stream, version,
event id, time) followed by the event's canonical bytes, exactly as stored.
Anyone holding an export can recompute it; signed checkpoints anchor the head.
"""

from __future__ import annotations

import hashlib
import struct

import msgspec

_envelope = msgspec.json.Encoder(order="deterministic")


def record_bytes(stream_id: str, stream_version: int, event_id: str, recorded_at: float, data: bytes) -> bytes:
    """The bytes the chain commits to for one record."""
    head = _envelope.encode([stream_id, stream_version, event_id, recorded_at])
    return head + b"\n" + data


def chain_hash(prev_hash: bytes, position: int, record: bytes) -> bytes:
    """``SHA-256(prev_hash ‖ position(8, big-endian) ‖ record)``."""
    return hashlib.sha256(prev_hash + struct.pack(">Q", position) + record).digest()
