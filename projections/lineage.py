"""The lineage projection: every issued token's place in its exchange chain.

Updated inline, in the transaction that appends ``TokenExchanged``, so a check
made right after a response already sees the new token. Per token: parent,
root, depth, the subject as issued and the origin subject (the external
identity at the root of the chain), client, audience, expiry and revocation
(when, by whom, why, directly or through an ancestor).

Revocation is materialized: revoking a token marks it and every descendant
(walked level by level through the parent index), so introspection and exchange need one indexed
lookup per token. A token appended after its ancestor (or its subject or
client) was revoked is born revoked, which closes the race between a
revocation and a concurrent exchange. Handlers are deterministic and depend
only on event order, never on batch boundaries, so a rebuild from position 0
produces exactly the live rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec

from eventstore.events import ClientRevoked, SubjectRevoked, TokenExchanged, TokenRevoked
from eventstore.store import EventStore, RecordedEvent, Tx, bigint_seconds, placeholders

LINEAGE_COLUMNS = (
    "jti, parent_jti, root_jti, depth, subject_iss, subject_sub, origin_iss, origin_sub, client_id, "
    "audience, scope, act, issued_at, expires_at, position, "
    "revoked_at, revoked_by, revoked_reason, revoked_direct, revoked_position"
)

_DDL = [
    """CREATE TABLE IF NOT EXISTS lineage (
        jti TEXT PRIMARY KEY,
        parent_jti TEXT,
        root_jti TEXT NOT NULL,
        depth INTEGER NOT NULL,
        subject_iss TEXT NOT NULL,
        subject_sub TEXT NOT NULL,
        origin_iss TEXT NOT NULL,
        origin_sub TEXT NOT NULL,
        client_id TEXT NOT NULL,
        audience TEXT NOT NULL,
        scope TEXT NOT NULL,
        act TEXT,
        issued_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        position BIGINT NOT NULL,
        revoked_at DOUBLE PRECISION,
        revoked_by TEXT,
        revoked_reason TEXT,
        revoked_direct INTEGER,
        revoked_position BIGINT
    )""",
    # first exchanges (most rows) have no parent: only children are indexed, for the cascade walk
    # (a database made before keeps its full index of that name: no rebuild at start-up)
    "CREATE INDEX IF NOT EXISTS lineage_parent ON lineage (parent_jti) WHERE parent_jti IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS lineage_origin ON lineage (origin_iss, origin_sub, issued_at)",
    "CREATE INDEX IF NOT EXISTS lineage_client ON lineage (client_id, issued_at)",
    """CREATE TABLE IF NOT EXISTS revoked_subjects (
        iss TEXT NOT NULL, sub TEXT NOT NULL, before DOUBLE PRECISION NOT NULL,
        revoked_by TEXT NOT NULL, reason TEXT NOT NULL, position BIGINT NOT NULL,
        PRIMARY KEY (iss, sub)
    )""",
    # every group commit with an exchange looks its subjects up by ``sub`` (any issuer), under the append lock:
    # without it that is a scan of every subject ever revoked (≈15 ms at 200,000 on PostgreSQL)
    "CREATE INDEX IF NOT EXISTS revoked_subjects_sub ON revoked_subjects (sub)",
    """CREATE TABLE IF NOT EXISTS revoked_clients (
        client_id TEXT PRIMARY KEY, before DOUBLE PRECISION NOT NULL,
        revoked_by TEXT NOT NULL, reason TEXT NOT NULL, position BIGINT NOT NULL
    )""",
]


_KEEP_LATEST = "CASE WHEN excluded.before > {t}.before THEN excluded.{c} ELSE {t}.{c} END"


class LineageRow(msgspec.Struct, frozen=True, kw_only=True):
    """One issued token as the lineage projection knows it."""

    jti: str
    parent_jti: str | None
    root_jti: str
    depth: int
    subject_iss: str
    subject_sub: str
    origin_iss: str
    origin_sub: str
    client_id: str
    audience: list[str]
    scope: list[str]
    act: dict[str, Any] | None
    issued_at: int
    expires_at: int
    position: int
    revoked_at: float | None
    revoked_by: str | None
    revoked_reason: str | None
    revoked_direct: bool | None
    revoked_position: int | None

    @property
    def revoked(self) -> bool:
        """True when the token was revoked, directly or through an ancestor, subject or client."""
        return self.revoked_at is not None


def row_from_tuple(row: Sequence[Any]) -> LineageRow:
    """Decode a row selected with :data:`LINEAGE_COLUMNS`."""
    return LineageRow(
        jti=row[0],
        parent_jti=row[1],
        root_jti=row[2],
        depth=int(row[3]),
        subject_iss=row[4],
        subject_sub=row[5],
        origin_iss=row[6],
        origin_sub=row[7],
        client_id=row[8],
        audience=json.loads(row[9]),
        scope=json.loads(row[10]),
        act=json.loads(row[11]) if row[11] else None,
        issued_at=int(row[12]),
        expires_at=int(row[13]),
        position=int(row[14]),
        revoked_at=None if row[15] is None else float(row[15]),
        revoked_by=row[16],
        revoked_reason=row[17],
        revoked_direct=None if row[18] is None else bool(row[18]),
        revoked_position=None if row[19] is None else int(row[19]),
    )


class PresentedToken(msgspec.Struct, frozen=True, kw_only=True):
    """A token from another issuer presented to an exchange (as ``subject`` or ``actor``)."""

    role: str
    iss: str
    sub: str
    #: the token's ``iat``; None when it has none (then any revocation of its subject covers it)
    issued_at: float | None


class ExchangeCondition(msgspec.Struct, frozen=True, kw_only=True):
    """The condition a ``TokenExchanged`` append carries (judged by :meth:`LineageProjection.refusals`).

    It holds while no committed revocation covers a presented token (its subject
    revoked before the token was issued: ``subject_revoked`` / ``actor_revoked``),
    the parent token, or the exchange itself (its subject or client revoked before
    the exchange happened: ``revoked_during_exchange``).
    """

    presented: tuple[PresentedToken, ...] = ()


_Cut = tuple[float, str, str, int]  # before, revoked_by, reason, position
_Parent = tuple[str, str, float | None, str | None, str | None, int | None]  # origin iss/sub, revoked at/by/why/position


class _Lookup:
    """What the lineage holds about a batch's parent tokens, subjects and clients (read in one query)."""

    __slots__ = ("parents", "subjects", "clients", "_keys")

    def __init__(self, parents: dict[str, _Parent], subjects: dict[tuple[str, str], _Cut],
                 clients: dict[str, _Cut], keys: tuple[set[str], set[str], set[str]]) -> None:
        self.parents = parents
        self.subjects = subjects
        self.clients = clients
        self._keys = keys

    def covers(self, parents: Sequence[str], subs: Sequence[str], clients: Sequence[str]) -> bool:
        """True when this lookup read every one of these keys."""
        return self._keys[0].issuperset(parents) and self._keys[1].issuperset(subs) and self._keys[2].issuperset(clients)

    def narrowed(self, parents: Sequence[str], subs: Sequence[str], clients: Sequence[str]) -> _Lookup:
        """This lookup as if only these keys had been read."""
        p, s, c = set(parents), set(subs), set(clients)
        return _Lookup(
            {k: v for k, v in self.parents.items() if k in p},
            {k: v for k, v in self.subjects.items() if k[1] in s},
            {k: v for k, v in self.clients.items() if k in c},
            (p, s, c),
        )

    def refusal(
        self, e: TokenExchanged, condition: ExchangeCondition, ahead: dict[tuple[str, str], _Cut] | None = None
    ) -> str | None:
        """Why ``condition`` no longer holds for ``e`` (None while it holds).

        ``ahead``: subject cuts of revocations earlier in the same batch, not committed yet.
        """
        subjects = _later_cuts(self.subjects, ahead) if ahead else self.subjects
        for token in condition.presented:
            cut = subjects.get((token.iss, token.sub))
            if cut is not None and (token.issued_at is None or token.issued_at < cut[0]):
                return f"{token.role}_revoked"
        parent = self.parents.get(e.parent_jti) if e.parent_jti else None
        if _covering(e, parent, subjects, self.clients, recorded_at=e.at)[0] is not None:
            return "revoked_during_exchange"
        return None


def _later_cuts(committed: dict[tuple[str, str], _Cut], ahead: dict[tuple[str, str], _Cut]) -> dict[tuple[str, str], _Cut]:
    """Committed subject cuts with those of the same batch folded in, the later ``before`` winning."""
    merged = dict(committed)
    for key, cut in ahead.items():
        if key not in merged or cut[0] > merged[key][0]:
            merged[key] = cut
    return merged


def _covering(
    e: TokenExchanged, parent: _Parent | None, subjects: dict[tuple[str, str], _Cut], clients: dict[str, _Cut],
    *, recorded_at: float,
) -> tuple[Any, ...]:
    """The revocation an exchange is born with: its parent's, or a cut of its origin subject or client
    that postdates the exchange; (revoked at, by, reason, direct, position), all None when there is none."""
    if parent is not None and parent[2] is not None:
        return (parent[2], parent[3], parent[4], 0, parent[5])
    origin = (parent[0], parent[1]) if parent else (e.subject_iss, e.subject_sub)
    for cut in (subjects.get(origin), clients.get(e.client_id)):
        # e.at is when the exchange happened (sub-second); the token's iat is whole seconds
        if cut is not None and e.at < cut[0]:
            return (recorded_at, cut[1], cut[2], 1, cut[3])
    return (None, None, None, None, None)


def _lookup_query(wanted: list[str], subs: list[str], clients: list[str]) -> tuple[str, list[Any]]:
    """The one query behind a :class:`_Lookup`: SQL (``$1``-style) and its arguments."""
    n_w, n_s = len(wanted), len(subs)
    parts = [
        f"SELECT 1, iss, sub, NULL, before, revoked_by, reason, position FROM revoked_subjects WHERE sub IN ({placeholders(n_w + 1, n_s)})",
        f"SELECT 2, client_id, NULL, NULL, before, revoked_by, reason, position FROM revoked_clients "
        f"WHERE client_id IN ({placeholders(n_w + n_s + 1, len(clients))})",
    ]
    if wanted:
        parts.insert(0, "SELECT 0, jti, origin_iss, origin_sub, revoked_at, revoked_by, revoked_reason, revoked_position "
                        f"FROM lineage WHERE jti IN ({placeholders(1, n_w)})")
    return " UNION ALL ".join(parts), [*wanted, *subs, *clients]


async def _lookup(tx: Tx, wanted: list[str], subs: list[str], clients: list[str]) -> _Lookup:
    sql, args = _lookup_query(wanted, subs, clients)
    return _lookup_from(await tx.fetch(sql, *args), wanted, subs, clients)


def _lookup_from(rows: Sequence[Sequence[Any]], wanted: list[str], subs: list[str], clients: list[str]) -> _Lookup:
    parents: dict[str, _Parent] = {
        r[1]: (r[2], r[3], None if r[4] is None else float(r[4]), r[5], r[6], None if r[7] is None else int(r[7]))
        for r in rows if r[0] == 0
    }
    subjects = {(r[1], r[2]): (float(r[4]), r[5], r[6], int(r[7])) for r in rows if r[0] == 1}
    revoked_clients = {r[1]: (float(r[4]), r[5], r[6], int(r[7])) for r in rows if r[0] == 2}
    return _Lookup(parents, subjects, revoked_clients, (set(wanted), set(subs), set(clients)))


def _refusal_keys(appends: Sequence[tuple[Sequence[Any], Any]]) -> tuple[list[str], list[str], list[str]] | None:
    """The parents, subjects and clients whose lineage judges ``appends`` (None: no exchange is conditional)."""
    exchanges = [(e, c) for events, c in appends for e in events if isinstance(e, TokenExchanged)]
    if not any(isinstance(c, ExchangeCondition) for _, c in exchanges):
        return None
    subs = {e.subject_sub for e, _ in exchanges}
    subs.update(t.sub for _, c in exchanges if isinstance(c, ExchangeCondition) for t in c.presented)
    return (
        sorted({e.parent_jti for e, _ in exchanges if e.parent_jti}),
        sorted(subs),
        sorted({e.client_id for e, _ in exchanges}),
    )


_sorted_json = msgspec.json.Encoder(order="sorted")


def _dumps(value: Any) -> str:
    """Compact JSON with sorted keys: one spelling per value, so live and rebuilt rows are equal."""
    return _sorted_json.encode(value).decode()


_LINEAGE_INSERT = f"INSERT INTO lineage ({LINEAGE_COLUMNS}) VALUES ({placeholders(1, 20)}) ON CONFLICT (jti) DO NOTHING"


class LineageProjection:
    """The inline lineage projection (an :class:`eventstore.store.InlineProjection`)."""

    name = "lineage"
    tables = ("lineage", "revoked_subjects", "revoked_clients")
    #: its many-row INSERTs (``baton migrate`` makes their row types, see :mod:`eventstore.pg_bulk`)
    bulk_inserts: tuple[str, ...] = (_LINEAGE_INSERT,)

    def schema(self, dialect: str) -> list[str]:
        return list(_DDL)

    async def reset(self, tx: Tx) -> None:
        for table in self.tables:
            await tx.execute(f"DELETE FROM {table}")

    async def apply(self, tx: Tx, events: Sequence[RecordedEvent]) -> None:
        run: list[tuple[RecordedEvent, TokenExchanged]] = []
        for record in events:
            if record.event_type not in _HANDLED:
                continue
            event = record.event
            if isinstance(event, TokenExchanged):
                run.append((record, event))
                continue
            if run:
                await self._exchanged(tx, run)
                run = []
            tx.lineage_lookup = None  # type: ignore[attr-defined]  # what was read before this revocation is stale
            if isinstance(event, TokenRevoked):
                await self._token_revoked(tx, record.position, event)
            elif isinstance(event, SubjectRevoked):
                await self._subject_revoked(tx, record.position, event)
            elif isinstance(event, ClientRevoked):
                await self._client_revoked(tx, record.position, event)
        if run:
            await self._exchanged(tx, run)

    def prefetch(self, appends: Sequence[tuple[Sequence[Any], Any]]) -> tuple[str, list[Any]] | None:
        """The read :meth:`refusals` needs for ``appends`` (None: none), for the store to send with its own.

        Under the write lock every round trip counts: on PostgreSQL the store sends this
        query in the same statement as its state read and hands the rows back on
        ``tx.prefetched[name]``.
        """
        keys = _refusal_keys(appends)
        return None if keys is None else _lookup_query(*keys)

    async def refusals(self, tx: Tx, appends: Sequence[tuple[Sequence[Any], Any]]) -> dict[int, str]:
        """Refuse ``TokenExchanged`` appends whose :class:`ExchangeCondition` a committed revocation breaks.

        Runs under the write lock, so a revocation committed before this batch is
        always seen: the exchange is refused and nothing is written. A subject
        revocation ahead of the exchange in the same batch refuses it too (it covers
        presented subject and actor tokens by their ``iat``); a token or client
        revocation there is caught by :meth:`apply`, which records the token born
        revoked. The lineage read made here is kept on ``tx`` for :meth:`apply`, so
        judging costs no extra round trip.
        """
        keys = _refusal_keys(appends)
        if keys is None:
            return {}
        # read by the store together with its own state read when it could (see prefetch)
        prefetched = getattr(tx, "prefetched", {}).get(self.name)
        lookup = _lookup_from(prefetched, *keys) if prefetched is not None else await _lookup(tx, *keys)
        tx.lineage_lookup = lookup  # type: ignore[attr-defined]
        refused: dict[int, str] = {}
        # a subject revocation earlier in this batch commits before the exchange: it covers it too
        # (counted even if that append then fails its own checks: refusing is the safe side)
        ahead: dict[tuple[str, str], _Cut] = {}
        for index, (events, condition) in enumerate(appends):
            for event in events:
                if isinstance(event, TokenExchanged) and isinstance(condition, ExchangeCondition) and index not in refused:
                    reason = lookup.refusal(event, condition, ahead)
                    if reason is not None:
                        refused[index] = reason
                elif isinstance(event, SubjectRevoked):
                    cut = ahead.get((event.iss, event.sub))
                    if cut is None or event.before > cut[0]:
                        ahead[(event.iss, event.sub)] = (event.before, event.by, event.reason, 0)
        return refused

    async def stored_notes(self, tx: Tx, records: Sequence[RecordedEvent]) -> dict[str, str]:
        """``born_revoked`` again for exchanges of a retried append that were recorded revoked at birth.

        Born revoked means the covering revocation precedes the exchange in the log; a
        revocation recorded after it does not make the exchange a refused one.
        """
        jtis = {r.event.issued_jti: r.event_id for r in records if r.event_type == "TokenExchanged"}
        born: list[str] = []
        for chunk in _chunks(list(jtis)):
            rows = await tx.fetch(
                f"SELECT jti FROM lineage WHERE jti IN ({placeholders(1, len(chunk))}) AND revoked_at IS NOT NULL "
                "AND (revoked_position IS NULL OR revoked_position < position)",  # unknown order: fail closed
                *chunk,
            )
            born.extend(str(r[0]) for r in rows)
        return {jtis[jti]: "born_revoked" for jti in born}

    async def _exchanged(self, tx: Tx, run: list[tuple[RecordedEvent, TokenExchanged]]) -> None:
        notes: dict[str, str] | None = getattr(tx, "notes", None)
        # parents, revoked subjects and revoked clients in one round trip (this runs under the append lock),
        # unless refusals() already read them for this batch
        wanted = sorted({e.parent_jti for _, e in run if e.parent_jti})
        subs = sorted({e.subject_sub for _, e in run})
        clients = sorted({e.client_id for _, e in run})
        lookup: _Lookup | None = getattr(tx, "lineage_lookup", None)
        if lookup is None or not lookup.covers(wanted, subs, clients):
            lookup = await _lookup(tx, wanted, subs, clients)
        else:  # only what a fresh read of this run would have found, so live rows equal rebuilt ones
            lookup = lookup.narrowed(wanted, subs, clients)
        parents = dict(lookup.parents)
        rows: list[tuple[Any, ...]] = []
        for record, e in run:
            parent = parents.get(e.parent_jti) if e.parent_jti else None
            origin_iss, origin_sub = (parent[0], parent[1]) if parent else (e.subject_iss, e.subject_sub)
            revocation = _covering(e, parent, lookup.subjects, lookup.clients, recorded_at=record.recorded_at)
            if revocation[0] is not None and notes is not None:
                notes[record.event_id] = "born_revoked"  # a revocation raced this exchange: do not hand it out
            rows.append(
                (
                    e.issued_jti, e.parent_jti, e.root_jti, e.depth, e.subject_iss, e.subject_sub,
                    origin_iss, origin_sub, e.client_id, _dumps(e.audience), _dumps(e.scope),
                    _dumps(e.act) if e.act else None, e.issued_at, e.expires_at, record.position,
                    *revocation,
                )
            )
            parents[e.issued_jti] = (origin_iss, origin_sub, revocation[0], revocation[1], revocation[2], revocation[4])
        await tx.executemany(_LINEAGE_INSERT, rows)

    async def _revoke(
        self, tx: Tx, position: int, e: TokenRevoked | SubjectRevoked | ClientRevoked, where: str, *args: Any
    ) -> None:
        """Mark the rows matching ``where`` directly, then (cascading) every descendant, level by level.

        Descendants are found through the parent index one level at a time, so the
        work is proportional to the subtree, never to the table; a descendant that a
        non-cascading revocation already marked is still walked through.
        """
        direct = [r[0] for r in await tx.fetch(f"SELECT jti FROM lineage WHERE {where}", *args)]
        await self._mark(tx, direct, position, e, direct=True)
        frontier = direct if getattr(e, "cascade", True) else []
        while frontier:
            children: list[str] = []
            for chunk in _chunks(frontier):
                rows = await tx.fetch(f"SELECT jti FROM lineage WHERE parent_jti IN ({placeholders(1, len(chunk))})", *chunk)
                children.extend(r[0] for r in rows)
            await self._mark(tx, children, position, e, direct=False)
            frontier = children

    async def _mark(
        self, tx: Tx, jtis: list[str], position: int, e: TokenRevoked | SubjectRevoked | ClientRevoked, *, direct: bool
    ) -> None:
        for chunk in _chunks(jtis):
            await tx.execute(
                "UPDATE lineage SET revoked_at = $1, revoked_by = $2, revoked_reason = $3, revoked_direct = $4, "
                f"revoked_position = $5 WHERE jti IN ({placeholders(6, len(chunk))}) AND revoked_at IS NULL",
                e.at, e.by, e.reason, 1 if direct else 0, position, *chunk,
            )

    async def _token_revoked(self, tx: Tx, position: int, e: TokenRevoked) -> None:
        await self._revoke(tx, position, e, "jti = $1", e.jti)

    async def _subject_revoked(self, tx: Tx, position: int, e: SubjectRevoked) -> None:
        latest = {c: _KEEP_LATEST.format(t="revoked_subjects", c=c) for c in ("revoked_by", "reason", "position")}
        await tx.execute(
            "INSERT INTO revoked_subjects (iss, sub, before, revoked_by, reason, position) VALUES ($1, $2, $3, $4, $5, $6) "
            "ON CONFLICT (iss, sub) DO UPDATE SET "
            f"revoked_by = {latest['revoked_by']}, reason = {latest['reason']}, position = {latest['position']}, "
            "before = CASE WHEN excluded.before > revoked_subjects.before THEN excluded.before ELSE revoked_subjects.before END",
            e.iss, e.sub, e.before, e.by, e.reason, position,
        )
        await self._revoke(
            tx, position, e, SUBJECT_CUT, e.iss, e.sub, _issued_before(e.before)
        )

    async def _client_revoked(self, tx: Tx, position: int, e: ClientRevoked) -> None:
        latest = {c: _KEEP_LATEST.format(t="revoked_clients", c=c) for c in ("revoked_by", "reason", "position")}
        await tx.execute(
            "INSERT INTO revoked_clients (client_id, before, revoked_by, reason, position) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (client_id) DO UPDATE SET "
            f"revoked_by = {latest['revoked_by']}, reason = {latest['reason']}, position = {latest['position']}, "
            "before = CASE WHEN excluded.before > revoked_clients.before THEN excluded.before ELSE revoked_clients.before END",
            e.client_id, e.before, e.by, e.reason, position,
        )
        await self._revoke(tx, position, e, CLIENT_CUT, e.client_id, _issued_before(e.before))


#: the tokens a subject revocation marks directly: ``$3`` is :func:`_issued_before` of its cut
SUBJECT_CUT = "origin_iss = $1 AND origin_sub = $2 AND issued_at < $3"
#: the tokens a client revocation marks directly: ``$2`` is :func:`_issued_before` of its cut
CLIENT_CUT = "client_id = $1 AND issued_at < $2"


def _issued_before(before: float) -> int:
    """The whole second that ``issued_at < before`` means for whole-second ``issued_at``: ``ceil(before)``.

    Compared as integers, the lineage's ``(…, issued_at)`` indexes bound the scan; compared
    with a double, PostgreSQL casts every ``issued_at`` and reads all of the client's or
    subject's tokens (≈15 ms under the append lock for a client with 30,000).
    """
    return bigint_seconds(before, up=True)


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


_HANDLED = frozenset({"TokenExchanged", "TokenRevoked", "SubjectRevoked", "ClientRevoked"})


class LineageReader:
    """Read side of the lineage projection: one indexed lookup per question."""

    def __init__(self, store: EventStore) -> None:
        self._store = store

    async def get(self, jti: str) -> LineageRow | None:
        """The lineage of an issued token, or None when Baton never issued it."""
        rows = await self._store.fetch(f"SELECT {LINEAGE_COLUMNS} FROM lineage WHERE jti = $1", jti)
        return row_from_tuple(rows[0]) if rows else None

    async def subject_revoked_before(self, iss: str, sub: str) -> float | None:
        """The instant before which every token of subject (iss, sub) is revoked, if any."""
        rows = await self._store.fetch("SELECT before FROM revoked_subjects WHERE iss = $1 AND sub = $2", iss, sub)
        return float(rows[0][0]) if rows else None

    async def client_revoked_before(self, client_id: str) -> float | None:
        """The instant before which every token issued to ``client_id`` is revoked, if any."""
        rows = await self._store.fetch("SELECT before FROM revoked_clients WHERE client_id = $1", client_id)
        return float(rows[0][0]) if rows else None

    async def rows(self) -> list[LineageRow]:
        """Every row in jti order (rebuild comparisons, small installations)."""
        rows = await self._store.fetch(f"SELECT {LINEAGE_COLUMNS} FROM lineage ORDER BY jti")
        return [row_from_tuple(r) for r in rows]

    async def is_descendant_or_self(self, jti: str, ancestor_jtis: set[str], max_depth: int = 64) -> bool:
        """True when ``jti`` or one of its ancestors is in ``ancestor_jtis`` (walks parents, O(depth))."""
        current: str | None = jti
        for _ in range(max_depth + 1):
            if current is None:
                return False
            if current in ancestor_jtis:
                return True
            rows = await self._store.fetch("SELECT parent_jti FROM lineage WHERE jti = $1", current)
            current = rows[0][0] if rows else None
        return False
