"""The audit views: the compliance read model, caught up from the log by the runner.

Tables (one ``AuditProjection``, one checkpoint, so the views agree with each other):

- ``audit_exchanges``: one row per ``TokenExchanged`` (keyed by position);
- ``audit_exchange_actors``: one row per actor anywhere in the ``act`` chain,
  so "exchanges by any actor" is an index lookup;
- ``audit_exchange_audiences``: one row per audience of an exchange;
- ``audit_denied``: ``ExchangeDenied`` and ``ClientAuthFailed`` with reasons;
- ``audit_revocations``: ``TokenRevoked`` / ``SubjectRevoked`` / ``ClientRevoked``;
- ``audit_subjects``: per-subject counts and first/last seen.

Rows are keyed by log position and inserted with ``ON CONFLICT DO NOTHING``;
the summary only takes a batch it has not counted yet (``last_position``), so
re-applying a batch changes nothing. Tables and columns are the same on SQLite
and PostgreSQL (``BIGINT``, ``DOUBLE PRECISION`` and ``TEXT`` mean the same
there); only index kinds and page fill differ (see ``_DIALECT``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from eventstore import (
    ClientAuthFailed,
    ClientRevoked,
    ExchangeDenied,
    RecordedEvent,
    SubjectRevoked,
    TokenExchanged,
    TokenRevoked,
    Tx,
    placeholders,
)

from . import audit_time

#: an ``act`` chain deeper than this is cut (Baton's own depth limits are far lower)
MAX_ACT_NESTING = 64

TABLES = (
    "audit_exchanges",
    "audit_exchange_actors",
    "audit_exchange_audiences",
    "audit_denied",
    "audit_revocations",
    "audit_subjects",
)

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS audit_exchanges (
        position BIGINT PRIMARY KEY,
        at DOUBLE PRECISION NOT NULL,
        request_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        subject_iss TEXT NOT NULL,
        subject_sub TEXT NOT NULL,
        subject_jti TEXT,
        subject_token_type TEXT NOT NULL,
        actor_iss TEXT,
        actor_sub TEXT,
        act TEXT,
        issued_jti TEXT NOT NULL,
        parent_jti TEXT,
        root_jti TEXT NOT NULL,
        depth INTEGER NOT NULL,
        audience TEXT NOT NULL,
        resource TEXT NOT NULL,
        scope TEXT NOT NULL,
        issued_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        source_address TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS audit_exchanges_subject ON audit_exchanges (subject_sub, subject_iss, position)",
    "CREATE INDEX IF NOT EXISTS audit_exchanges_client ON audit_exchanges (client_id, position)",
    "CREATE INDEX IF NOT EXISTS audit_exchanges_at ON audit_exchanges {at_using}(at)",
    "CREATE INDEX IF NOT EXISTS audit_exchanges_issued ON audit_exchanges (issued_jti)",
    # most exchanges are first exchanges (no parent): only children are indexed, for lineage trees
    "CREATE INDEX IF NOT EXISTS audit_exchanges_parent ON audit_exchanges (parent_jti) WHERE parent_jti IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS audit_exchange_actors (
        position BIGINT NOT NULL,
        nesting INTEGER NOT NULL,
        actor_iss TEXT NOT NULL,
        actor_sub TEXT NOT NULL,
        PRIMARY KEY (position, nesting)
    )""",
    "CREATE INDEX IF NOT EXISTS audit_exchange_actors_sub ON audit_exchange_actors (actor_sub, position)",
    "CREATE INDEX IF NOT EXISTS audit_exchange_actors_iss_sub ON audit_exchange_actors (actor_sub, actor_iss, position)",
    """CREATE TABLE IF NOT EXISTS audit_exchange_audiences (
        audience TEXT NOT NULL,
        position BIGINT NOT NULL,
        PRIMARY KEY (audience, position)
    )""",
    "CREATE INDEX IF NOT EXISTS audit_exchange_audiences_position ON audit_exchange_audiences (position)",
    """CREATE TABLE IF NOT EXISTS audit_denied (
        position BIGINT PRIMARY KEY,
        at DOUBLE PRECISION NOT NULL,
        event TEXT NOT NULL,
        request_id TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        client_id TEXT,
        error TEXT NOT NULL,
        reason TEXT NOT NULL,
        description TEXT NOT NULL,
        subject_iss TEXT,
        subject_sub TEXT,
        subject_jti TEXT,
        actor_sub TEXT,
        audience TEXT NOT NULL,
        scope TEXT NOT NULL,
        auth_method TEXT,
        source_address TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS audit_denied_subject ON audit_denied (subject_sub, subject_iss, position)",
    "CREATE INDEX IF NOT EXISTS audit_denied_client ON audit_denied (client_id, position)",
    "CREATE INDEX IF NOT EXISTS audit_denied_reason ON audit_denied (reason, position)",
    "CREATE INDEX IF NOT EXISTS audit_denied_at ON audit_denied {at_using}(at)",
    """CREATE TABLE IF NOT EXISTS audit_revocations (
        position BIGINT PRIMARY KEY,
        at DOUBLE PRECISION NOT NULL,
        kind TEXT NOT NULL,
        jti TEXT,
        cascades INTEGER NOT NULL,
        subject_iss TEXT,
        subject_sub TEXT,
        client_id TEXT,
        revoked_before DOUBLE PRECISION,
        revoked_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        request_id TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS audit_revocations_jti ON audit_revocations (jti)",
    "CREATE INDEX IF NOT EXISTS audit_revocations_subject ON audit_revocations (subject_sub, subject_iss)",
    "CREATE INDEX IF NOT EXISTS audit_revocations_client ON audit_revocations (client_id)",
    "CREATE INDEX IF NOT EXISTS audit_revocations_at ON audit_revocations {at_using}(at)",
    """CREATE TABLE IF NOT EXISTS audit_subjects (
        subject_iss TEXT NOT NULL,
        subject_sub TEXT NOT NULL,
        exchanges BIGINT NOT NULL,
        denied BIGINT NOT NULL,
        revocations BIGINT NOT NULL,
        first_seen DOUBLE PRECISION NOT NULL,
        last_seen DOUBLE PRECISION NOT NULL,
        first_position BIGINT NOT NULL,
        last_position BIGINT NOT NULL,
        PRIMARY KEY (subject_iss, subject_sub)
    ){subjects_storage}""",
]

#: How the DDL differs by dialect. Rows arrive in time order, so on PostgreSQL a BRIN index
#: (a few pages, next to nothing to maintain) serves time ranges where SQLite needs a B-tree;
#: the per-subject counters are updated in place, so PostgreSQL leaves room in each page for
#: HOT updates (no new index entry per update). Index names are those of earlier releases:
#: a database made before keeps its B-trees (``IF NOT EXISTS``), so no start-up ever rebuilds
#: an index of a large table under the append lock; see docs/audit.md to swap them.
_DIALECT = {
    "postgresql": {"at_using": "USING brin ", "subjects_storage": " WITH (fillfactor = 70)"},
    "sqlite": {"at_using": "", "subjects_storage": ""},
}
#: also for audit_subjects tables made before (metadata only: applies to pages filled from now on)
_POSTGRESQL_ONLY = ["ALTER TABLE audit_subjects SET (fillfactor = 70)"]


_json = msgspec.json.Encoder(order="deterministic")


def _join(values: Sequence[str]) -> str:
    return " ".join(values)


def act_chain(act: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The actors of an ``act`` claim, outermost (current) first, as ``(iss or "", sub)``."""
    actors: list[tuple[str, str]] = []
    node = act
    while isinstance(node, dict) and len(actors) < MAX_ACT_NESTING:
        sub = node.get("sub") or node.get("client_id")
        if isinstance(sub, str):
            iss = node.get("iss")
            actors.append((iss if isinstance(iss, str) else "", sub))
        node = node.get("act")
    return actors


def exchange_actors(event: TokenExchanged) -> list[tuple[str, str]]:
    """Everyone who acted in an exchange: the ``act`` chain, or the actor token's identity when there is no chain."""
    actors = act_chain(event.act)
    if not actors and event.actor_sub:
        actors = [(event.actor_iss or "", event.actor_sub)]
    return actors


class _Summary:
    """One subject's contribution from a batch."""

    __slots__ = ("exchanges", "denied", "revocations", "first_seen", "last_seen", "first_position", "last_position")

    def __init__(self, position: int, at: float) -> None:
        self.exchanges = self.denied = self.revocations = 0
        self.first_seen = self.last_seen = at
        self.first_position = self.last_position = position

    def see(self, position: int, at: float) -> None:
        self.first_seen, self.last_seen = min(self.first_seen, at), max(self.last_seen, at)
        self.last_position = position


class _Batch:
    """Rows of one batch, grouped by table."""

    def __init__(self) -> None:
        self.exchanges: list[tuple[Any, ...]] = []
        self.actors: list[tuple[Any, ...]] = []
        self.audiences: list[tuple[Any, ...]] = []
        self.denied: list[tuple[Any, ...]] = []
        self.revocations: list[tuple[Any, ...]] = []
        self.subjects: dict[tuple[str, str], _Summary] = {}

    def subject(self, iss: str, sub: str, position: int, at: float) -> _Summary:
        summary = self.subjects.get((iss, sub))
        if summary is None:
            summary = self.subjects[(iss, sub)] = _Summary(position, at)
        else:
            summary.see(position, at)
        return summary

    def add(self, position: int, event: Any) -> None:
        if isinstance(event, TokenExchanged):
            self._exchange(position, event)
        elif isinstance(event, ExchangeDenied):
            self.denied.append(
                (position, event.at, "ExchangeDenied", event.request_id, event.endpoint, event.client_id,
                 event.error, event.reason, event.description, event.subject_iss, event.subject_sub,
                 event.subject_jti, event.actor_sub, _join(event.audience), _join(event.scope), None,
                 event.source_address)
            )  # fmt: skip
            if event.subject_iss and event.subject_sub:
                self.subject(event.subject_iss, event.subject_sub, position, event.at).denied += 1
        elif isinstance(event, ClientAuthFailed):
            self.denied.append(
                (position, event.at, "ClientAuthFailed", event.request_id, event.endpoint, event.client_id,
                 "invalid_client", event.reason, "client authentication failed", None, None, None, None, "", "",
                 event.method, event.source_address)
            )  # fmt: skip
        elif isinstance(event, TokenRevoked):
            self.revocations.append(
                (position, event.at, "token", event.jti, int(event.cascade), None, None, None, None, event.by,
                 event.reason, event.request_id)
            )  # fmt: skip
        elif isinstance(event, SubjectRevoked):
            self.revocations.append(
                (position, event.at, "subject", None, 1, event.iss, event.sub, None, event.before, event.by,
                 event.reason, None)
            )  # fmt: skip
            self.subject(event.iss, event.sub, position, event.at).revocations += 1
        elif isinstance(event, ClientRevoked):
            self.revocations.append(
                (position, event.at, "client", None, 1, None, None, event.client_id, event.before, event.by,
                 event.reason, None)
            )  # fmt: skip

    def _exchange(self, position: int, e: TokenExchanged) -> None:
        self.exchanges.append(
            (position, e.at, e.request_id, e.client_id, e.kind, e.subject_iss, e.subject_sub, e.subject_jti,
             e.subject_token_type, e.actor_iss, e.actor_sub, _json.encode(e.act).decode() if e.act else None,
             e.issued_jti, e.parent_jti, e.root_jti, e.depth, _join(e.audience), _join(e.resource),
             _join(e.scope), e.issued_at, e.expires_at, e.source_address)
        )  # fmt: skip
        seen: set[tuple[str, str]] = set()
        for nesting, actor in enumerate(exchange_actors(e)):
            if actor not in seen:  # one row per distinct actor, at its outermost place
                seen.add(actor)
                self.actors.append((position, nesting, *actor))
        for audience in dict.fromkeys(e.audience):
            self.audiences.append((audience, position))
        self.subject(e.subject_iss, e.subject_sub, position, e.at).exchanges += 1


def _insert(table: str, columns: str) -> str:
    values = placeholders(1, len(columns.split(",")))
    return f"INSERT INTO {table} ({columns}) VALUES ({values}) ON CONFLICT DO NOTHING"


_EXCHANGE_COLUMNS = (
    "position, at, request_id, client_id, kind, subject_iss, subject_sub, subject_jti, subject_token_type, "
    "actor_iss, actor_sub, act, issued_jti, parent_jti, root_jti, depth, audience, resource, scope, "
    "issued_at, expires_at, source_address"
)
_DENIED_COLUMNS = (
    "position, at, event, request_id, endpoint, client_id, error, reason, description, subject_iss, "
    "subject_sub, subject_jti, actor_sub, audience, scope, auth_method, source_address"
)
_REVOCATION_COLUMNS = (
    "position, at, kind, jti, cascades, subject_iss, subject_sub, client_id, revoked_before, revoked_by, reason, request_id"
)
_INSERTS = {
    "exchanges": _insert("audit_exchanges", _EXCHANGE_COLUMNS),
    "actors": _insert("audit_exchange_actors", "position, nesting, actor_iss, actor_sub"),
    "audiences": _insert("audit_exchange_audiences", "audience, position"),
    "denied": _insert("audit_denied", _DENIED_COLUMNS),
    "revocations": _insert("audit_revocations", _REVOCATION_COLUMNS),
}

# A batch's counts are added only if none of its events for that subject were counted before.
_UPSERT_SUBJECT = """INSERT INTO audit_subjects (subject_iss, subject_sub, exchanges, denied, revocations,
        first_seen, last_seen, first_position, last_position)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT (subject_iss, subject_sub) DO UPDATE SET
        exchanges = audit_subjects.exchanges + excluded.exchanges,
        denied = audit_subjects.denied + excluded.denied,
        revocations = audit_subjects.revocations + excluded.revocations,
        first_seen = CASE WHEN excluded.first_seen < audit_subjects.first_seen
                     THEN excluded.first_seen ELSE audit_subjects.first_seen END,
        last_seen = CASE WHEN excluded.last_seen > audit_subjects.last_seen
                    THEN excluded.last_seen ELSE audit_subjects.last_seen END,
        last_position = excluded.last_position
    WHERE audit_subjects.last_position < excluded.first_position"""


class AuditProjection:
    """The audit views as an :class:`projections.runner.AsyncProjection`."""

    name = "audit"
    #: its many-row INSERTs (``baton migrate`` makes their row types, see :mod:`eventstore.pg_bulk`)
    bulk_inserts: tuple[str, ...] = (*_INSERTS.values(), _UPSERT_SUBJECT, audit_time.MARK_INSERT, audit_time.COVER_UPSERT)

    def schema(self, dialect: str) -> list[str]:
        """The DDL for ``dialect``: the same tables, columns and keys on SQLite and PostgreSQL."""
        statements = [statement.format(**_DIALECT[dialect]) for statement in SCHEMA] + audit_time.SCHEMA
        return statements + (_POSTGRESQL_ONLY if dialect == "postgresql" else [])

    async def apply(self, tx: Tx, records: Sequence[RecordedEvent]) -> None:
        """Add the rows for ``records``; events the audit does not track are skipped."""
        batch = _Batch()
        for record in records:
            if record.event_type in _TRACKED:
                batch.add(record.position, record.event)
        await audit_time.mark(tx, {view: getattr(batch, view) for view in audit_time.VIEWS})
        for key, sql in _INSERTS.items():
            await tx.executemany(sql, getattr(batch, key))
        await tx.executemany(
            _UPSERT_SUBJECT,
            [
                (iss, sub, s.exchanges, s.denied, s.revocations, s.first_seen, s.last_seen, s.first_position,
                 s.last_position)
                for (iss, sub), s in batch.subjects.items()
            ],
        )  # fmt: skip

    async def reset(self, tx: Tx) -> None:
        """Empty every audit table."""
        for table in (*TABLES, *audit_time.TABLES):
            await tx.execute(f"DELETE FROM {table}")


_TRACKED = frozenset(
    {"TokenExchanged", "ExchangeDenied", "ClientAuthFailed", "TokenRevoked", "SubjectRevoked", "ClientRevoked"}
)
