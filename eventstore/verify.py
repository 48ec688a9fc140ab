"""Re-walk the hash chain and check every signed checkpoint; name the first bad position.

For each record from position P on: the position is the next one (a deleted
or moved row leaves a hole), ``prev_hash`` is the hash just computed, the hash
recomputes from the stored bytes, and the ``event_type`` column matches the
data. Each ``ChainCheckpoint`` found in the log, and each checkpoint from an
exported file, must carry a valid signature by one of the given public keys,
and the head hash it signs must equal the chain's hash at that position — a
chain rewritten after a checkpoint fails here even if every link is
consistent. An exported checkpoint beyond the head means the log was cut.

Only the :class:`eventstore.store.EventStore` protocol is used, so the same
walk checks SQLite and PostgreSQL. Events after the last signed checkpoint are
linked but not anchored; :attr:`VerifyReport.anchored_through` says how far
the signatures reach.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from .batch import RECORD_COLUMNS, row_to_record
from .checkpoints import PAYLOAD_TYPE
from .events import ChainCheckpoint, decode_event, event_type
from .hashing import chain_hash, record_bytes
from .store import EventStore, RecordedEvent
from .types import GENESIS_HASH

#: JWS algorithms a checkpoint may be signed with (Baton's signing algorithms)
ALGORITHMS = ["ES256", "RS256", "PS256", "EdDSA", "Ed25519"]
_PAGE = 2000
_WINDOW = 65_536  # recent hashes kept in memory; checkpoints sign a head just before themselves

Progress = Callable[[int, int], None]


class SignedHead(msgspec.Struct, frozen=True):
    """The verified content of a checkpoint signature."""

    typ: str
    position: int
    head_hash: str
    at: float


class ExportedCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    """One line of an exported checkpoints file (JSON Lines). Only ``signature`` is trusted."""

    record_position: int
    position: int
    head_hash: str
    at: float
    kid: str
    signature: str


@dataclass(frozen=True)
class Problem:
    """The first thing found wrong: where, and why."""

    position: int
    reason: str


@dataclass
class VerifyReport:
    """What ``verify`` checked and what it found."""

    from_position: int
    to_position: int = 0
    checked_events: int = 0
    checked_checkpoints: int = 0
    anchored_through: int = 0
    problem: Problem | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was found wrong."""
        return self.problem is None


class CheckpointError(Exception):
    """A checkpoint signature that does not verify."""


def open_signature(signature: str, keys: KeySet) -> SignedHead:
    """Verify a checkpoint JWS against ``keys`` and return what it signs."""
    try:
        obj = jws.deserialize_compact(signature, keys, algorithms=ALGORITHMS)
    except JoseError as exc:
        raise CheckpointError(f"signature does not verify ({exc.error})") from exc
    except ValueError as exc:  # malformed compact serialization
        raise CheckpointError(f"signature is malformed ({exc})") from exc
    try:
        head = msgspec.json.decode(obj.payload, type=SignedHead)
    except msgspec.DecodeError as exc:
        raise CheckpointError(f"signed payload is not a checkpoint ({exc})") from exc
    if head.typ != PAYLOAD_TYPE:
        raise CheckpointError(f"signed payload has typ {head.typ!r}, not a checkpoint")
    return head


def read_checkpoints_file(path: str | Path) -> list[ExportedCheckpoint]:
    """Load an exported checkpoints file (JSON Lines)."""
    decoder = msgspec.json.Decoder(ExportedCheckpoint)
    lines = Path(path).read_bytes().splitlines()
    return [decoder.decode(line) for line in lines if line.strip()]


def export_lines(records: Iterable[RecordedEvent]) -> Iterable[bytes]:
    """JSON Lines for the ``ChainCheckpoint`` records among ``records``."""
    encoder = msgspec.json.Encoder(order="deterministic")
    for record in records:
        event = record.event
        if isinstance(event, ChainCheckpoint):
            yield encoder.encode(
                ExportedCheckpoint(
                    record_position=record.position,
                    position=event.position,
                    head_hash=event.head_hash,
                    at=event.at,
                    kid=event.kid,
                    signature=event.signature,
                )
            ) + b"\n"


async def checkpoint_records(store: EventStore) -> list[RecordedEvent]:
    """Every ``ChainCheckpoint`` record in the log, in position order."""
    rows = await store.fetch(
        f"SELECT {RECORD_COLUMNS} FROM events WHERE event_type = $1 ORDER BY position", "ChainCheckpoint"
    )
    return [row_to_record(r) for r in rows]


class ChainWalker:
    """Checks records fed in position order; stops at the first problem."""

    def __init__(
        self,
        keys: KeySet,
        start: int,
        prev_hash: bytes,
        stored_hash: Callable[[int], Awaitable[bytes | None]],
        exported: Sequence[SignedHead] = (),
    ) -> None:
        self.keys = keys
        self.next_position = start
        self.prev_hash = prev_hash
        self.checked_checkpoints = 0
        self.anchored_through = 0
        self.last_event = 0  # newest position that is not itself a checkpoint
        self._start = start
        self._stored_hash = stored_hash
        self._recent: OrderedDict[int, bytes] = OrderedDict()
        self._exported = sorted(exported, key=lambda h: h.position)

    async def _hash_at(self, position: int) -> bytes | None:
        if position in self._recent:
            return self._recent[position]
        if position == 0:
            return GENESIS_HASH
        return await self._stored_hash(position)  # walked already (so trusted) or before the start

    async def _check_head(self, head: SignedHead, where: str) -> Problem | None:
        actual = await self._hash_at(head.position)
        if actual is None:
            return Problem(head.position, f"{where} signs position {head.position}, which is not in the log")
        if actual.hex() != head.head_hash:
            return Problem(
                head.position,
                f"{where} signs head hash {head.head_hash[:16]}… for position {head.position}, "
                f"the chain has {actual.hex()[:16]}… (history rewritten at or before this position)",
            )
        self.checked_checkpoints += 1
        self.anchored_through = max(self.anchored_through, head.position)
        return None

    async def check_exported_before_start(self) -> Problem | None:
        """Check exported checkpoints for positions before the walk starts (against stored hashes)."""
        while self._exported and self._exported[0].position < self._start:
            problem = await self._check_head(self._exported.pop(0), "exported checkpoint")
            if problem:
                return problem
        return None

    async def feed(self, record: RecordedEvent) -> Problem | None:
        """Check one record (the next in position order)."""
        p = record.position
        if p != self.next_position:
            return Problem(self.next_position, f"position {self.next_position} is missing (found {p} next)")
        if record.prev_hash != self.prev_hash:
            return Problem(p, f"prev_hash does not match the hash of position {p - 1} (row moved or replaced)")
        payload = record_bytes(record.stream_id, record.stream_version, record.event_id, record.recorded_at, record.data)
        digest = chain_hash(self.prev_hash, p, payload)
        if digest != record.hash:
            return Problem(p, "hash does not match the stored bytes (record altered)")
        try:
            event = decode_event(record.data)
        except msgspec.DecodeError as exc:
            return Problem(p, f"event data does not decode ({exc})")
        if event_type(event) != record.event_type:
            return Problem(p, f"event_type column {record.event_type!r} does not match the data ({event_type(event)!r})")
        self._recent[p] = digest
        if len(self._recent) > _WINDOW:
            self._recent.popitem(last=False)
        self.prev_hash, self.next_position = digest, p + 1
        if isinstance(event, ChainCheckpoint):
            problem = await self._check_logged(p, event)
            if problem:
                return problem
        else:
            self.last_event = p
        while self._exported and self._exported[0].position <= p:
            problem = await self._check_head(self._exported.pop(0), "exported checkpoint")
            if problem:
                return problem
        return None

    async def _check_logged(self, p: int, event: ChainCheckpoint) -> Problem | None:
        try:
            head = open_signature(event.signature, self.keys)
        except CheckpointError as exc:
            return Problem(p, f"checkpoint (kid {event.kid!r}): {exc}")
        if (head.position, head.head_hash, head.at) != (event.position, event.head_hash, event.at):
            return Problem(p, "checkpoint fields differ from what its signature says")
        if head.position >= p:
            return Problem(p, f"checkpoint signs position {head.position}, not before itself")
        return await self._check_head(head, f"checkpoint at position {p}")

    def finish(self, head_position: int) -> Problem | None:
        """After the walk: an exported checkpoint beyond the head means the log was cut."""
        for head in self._exported:
            if head.position > head_position:
                return Problem(
                    head_position + 1,
                    f"log truncated: an exported checkpoint signs position {head.position}, "
                    f"the log ends at {head_position}",
                )
        return None


async def verify(
    store: EventStore,
    keys: KeySet,
    *,
    from_position: int = 1,
    exported: Sequence[ExportedCheckpoint] = (),
    progress: Progress | None = None,
    page: int = _PAGE,
) -> VerifyReport:
    """Re-walk the chain from ``from_position`` up to the head seen at start; see the module docstring."""
    start = max(1, from_position)
    report = VerifyReport(from_position=start)
    heads: list[SignedHead] = []
    for line in exported:
        try:
            heads.append(open_signature(line.signature, keys))
        except CheckpointError as exc:
            report.problem = Problem(line.position, f"exported checkpoint (kid {line.kid!r}): {exc}")
            return report

    async def stored_hash(position: int) -> bytes | None:
        rows = await store.read_all(position, 1)
        return rows[0].hash if rows and rows[0].position == position else None

    head_position, _ = await store.head()
    report.to_position = head_position
    prev = GENESIS_HASH if start == 1 else await stored_hash(start - 1)
    if prev is None:
        report.problem = Problem(start - 1, f"position {start - 1} is missing (needed to start at {start})")
        return report
    if start > 1:
        report.notes.append(f"positions before {start} were not re-walked; the hash of {start - 1} is trusted")
    walker = ChainWalker(keys, start, prev, stored_hash, heads)
    report.problem = await walker.check_exported_before_start()
    position = start
    while report.problem is None and position <= head_position:
        records = await store.read_all(position, min(page, head_position - position + 1))
        if not records:
            report.problem = Problem(position, f"positions {position}…{head_position} are missing")
            break
        for record in records:
            report.problem = await walker.feed(record)
            if report.problem:
                break
            report.checked_events += 1
        position = walker.next_position
        if progress is not None:
            progress(min(position - 1, head_position), head_position)
    if report.problem is None:
        report.problem = walker.finish(head_position)
    report.checked_checkpoints = walker.checked_checkpoints
    report.anchored_through = walker.anchored_through
    if report.problem is None and report.anchored_through < walker.last_event:
        report.notes.append(
            f"positions {report.anchored_through + 1}…{head_position} are chained but not yet covered "
            "by a signed checkpoint"
        )
    return report
