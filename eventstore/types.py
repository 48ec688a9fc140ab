"""Vocabulary of the event store: positions, stream ids, expected versions."""

from __future__ import annotations

from typing import Final

Position = int
StreamId = str
EventId = str

#: expected_version values besides an exact version number (0 = one event in the stream)
ANY: Final = -2
NO_STREAM: Final = -1
STREAM_EXISTS: Final = -3

GENESIS_HASH: Final = b"\x00" * 32
