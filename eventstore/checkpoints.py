"""Signed chain checkpoints: the head of the hash chain, anchored outside the database.

A hash chain alone can be recomputed by anyone who can write to the database.
Every ``every`` events or ``seconds`` seconds (whichever comes first, and only
when something new was appended) the :class:`Checkpointer` signs
``(position, head hash, time)`` with a Baton signing key and appends it as a
``ChainCheckpoint`` event. Auditors keep exported copies; ``baton verify``
checks the chain against them.

The checkpoint stream is written with an expected version, so when several
instances run a checkpointer only one of them wins each round. The signer is
any object with ``kid`` and ``sign(payload) -> compact JWS``; this package
never imports the application's key ring.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import msgspec
import structlog

from .errors import ConcurrencyError, StoreError
from .events import ChainCheckpoint
from .store import EventStore, RecordedEvent
from .types import NO_STREAM

#: the stream every checkpoint is appended to
CHECKPOINT_STREAM = "$baton.checkpoints"
#: the JWS ``typ`` header of a checkpoint signature
CHECKPOINT_TYP = "baton-checkpoint+jwt"
#: the ``typ`` member inside the signed payload (so no other signed JSON can pass for a checkpoint)
PAYLOAD_TYPE = "baton.chain-checkpoint"

_log = structlog.get_logger(__name__)
_encoder = msgspec.json.Encoder(order="deterministic")


class Signer(Protocol):
    """Signs checkpoint payloads with one key (e.g. an adapter over ``app.keys.KeyRing``)."""

    kid: str

    def sign(self, payload: bytes) -> str:
        """A compact JWS over ``payload`` (the JSON object from :func:`checkpoint_payload`)."""


@dataclass(frozen=True)
class CallableSigner:
    """A :class:`Signer` from a key id and a function, for adapting any key holder."""

    kid: str
    sign_fn: Callable[[bytes], str]

    def sign(self, payload: bytes) -> str:
        return self.sign_fn(payload)


def checkpoint_payload(position: int, head_hash: bytes, at: float) -> bytes:
    """The signed statement: deterministic JSON with the position, head hash (hex) and time."""
    return _encoder.encode({"typ": PAYLOAD_TYPE, "position": position, "head_hash": head_hash.hex(), "at": at})


class Checkpointer:
    """Appends a signed :class:`ChainCheckpoint` every ``every`` events or ``seconds`` seconds."""

    def __init__(
        self,
        store: EventStore,
        signer: Signer,
        *,
        every: int = 1000,
        seconds: float = 300.0,
        poll: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._signer = signer
        self._every = every
        self._seconds = seconds
        self._poll = poll
        self._clock = clock
        self._loaded = False
        self._version = NO_STREAM
        self._last_record = 0  # position of the newest checkpoint event
        self._last_at = clock()
        self._task: asyncio.Task[None] | None = None

    async def _load(self) -> None:
        last = await self._store.last_in_stream(CHECKPOINT_STREAM)
        if last is not None:
            self._remember(last)
        self._loaded = True

    def _remember(self, record: RecordedEvent) -> None:
        self._version = record.stream_version
        self._last_record = record.position
        self._last_at = record.event.at  # type: ignore[union-attr]

    async def maybe_checkpoint(self) -> RecordedEvent | None:
        """Write a checkpoint if one is due; returns it (None when not due or another instance won)."""
        if not self._loaded:
            await self._load()
        position, _ = await self._store.head()
        fresh = position - self._last_record
        if fresh <= 0:
            return None
        if fresh < self._every and self._clock() - self._last_at < self._seconds:
            return None
        return await self.checkpoint()

    async def checkpoint(self) -> RecordedEvent | None:
        """Sign and append the current head now, if anything was appended since the last checkpoint."""
        if not self._loaded:
            await self._load()
        position, head_hash = await self._store.head()
        if position <= self._last_record:
            return None
        at = self._clock()
        event = ChainCheckpoint(
            at=at,
            position=position,
            head_hash=head_hash.hex(),
            kid=self._signer.kid,
            signature=self._signer.sign(checkpoint_payload(position, head_hash, at)),
        )
        try:
            [record] = await self._store.append(CHECKPOINT_STREAM, [event], expected_version=self._version)
        except ConcurrencyError:
            self._loaded = False  # another instance checkpointed; re-read its state next time
            return None
        self._remember(record)
        return record

    def start(self) -> None:
        """Run :meth:`maybe_checkpoint` every ``poll`` seconds on the running loop."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="baton-checkpointer")

    async def stop(self, *, final: bool = True) -> None:
        """Stop the loop; with ``final``, anchor the tail with one last checkpoint (best effort)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if final:
            try:
                await self.checkpoint()
            except StoreError as exc:
                _log.warning("checkpoint_failed", error=type(exc).__name__, final=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.maybe_checkpoint()
            except StoreError as exc:  # the store is down: try again next round
                _log.warning("checkpoint_failed", error=type(exc).__name__)
            except Exception as exc:  # a signer failure must not kill the loop silently
                _log.error("checkpoint_failed", error=type(exc).__name__, detail=str(exc))
            await asyncio.sleep(self._poll)
