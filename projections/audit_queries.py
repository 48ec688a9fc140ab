"""Audit queries shared by the HTTP API and the ``baton audit`` commands.

Every list query filters with AND, pages by log position (``after`` = the last
position seen, ``limit`` rows) and returns ``{"items": [...], "next": P}``
where ``next`` is the cursor for the following page or ``None`` at the end.
Rows are plain dicts (times as RFC 3339 UTC strings, lists as lists), ready
for JSON, CSV or a terminal table. SQL is ``$1``-style and runs unchanged on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from eventstore import EventStore, placeholders

from .audit import act_chain
from .audit_time import START_SQL, since_second

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
#: a delegation tree shows at most this many descendants (``truncated`` says when more exist)
MAX_TREE_NODES = 1000
MAX_ANCESTORS = 64


class Filter(msgspec.Struct, frozen=True):
    """A filter a list query accepts: its name (query parameter / CLI option), kind and help."""

    name: str
    kind: str  # "text" | "time"
    help: str


_SUBJECT = [
    Filter("subject_iss", "text", "subject issuer (iss)"),
    Filter("subject_sub", "text", "subject (sub)"),
]
_CLIENT = Filter("client_id", "text", "client that called Baton")
_TIME = [
    Filter("since", "time", "at or after this time (RFC 3339 or epoch seconds)"),
    Filter("until", "time", "before this time (RFC 3339 or epoch seconds)"),
]

#: filters of each list query, in the order the CLI shows them
FILTERS: dict[str, list[Filter]] = {
    "exchanges": [
        *_SUBJECT,
        Filter("actor_sub", "text", "an actor anywhere in the delegation chain (sub)"),
        Filter("actor_iss", "text", "that actor's issuer"),
        _CLIENT,
        Filter("audience", "text", "one audience of the issued token"),
        Filter("kind", "text", "delegation or impersonation"),
        Filter("jti", "text", "the issued token's jti"),
        *_TIME,
    ],
    "denied": [
        *_SUBJECT,
        _CLIENT,
        Filter("reason", "text", "machine reason code (depth_exceeded, revoked, …)"),
        Filter("event", "text", "ExchangeDenied or ClientAuthFailed"),
        *_TIME,
    ],
    "revocations": [
        Filter("kind", "text", "token, subject or client"),
        Filter("jti", "text", "revoked token's jti"),
        *_SUBJECT,
        _CLIENT,
        *_TIME,
    ],
}


def iso(ts: float | None) -> str | None:
    """Epoch seconds as an RFC 3339 UTC string (milliseconds)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(float(ts), UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


#: the epoch seconds of 0001-01-01 and 9999-12-31T23:59:59Z: what a time filter may name
_EARLIEST, _LATEST = -62_135_596_800.0, 253_402_300_799.0


def parse_time(value: str) -> float:
    """Epoch seconds from ``1700000000`` or ``2026-11-23T14:00:00Z`` (naive times are UTC); years 1–9999 only."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not _EARLIEST <= seconds <= _LATEST:  # also refuses inf and nan
            raise ValueError(f"time out of range: {text[:40]}")
        return seconds
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def check_page(after: int, limit: int) -> None:
    """Refuse a cursor or page size out of range (``ValueError``)."""
    if after < 0:
        raise ValueError("after must be a position >= 0")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")


class _Where:
    """WHERE clauses with numbered ``$n`` parameters."""

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.args: list[Any] = []
        #: the view and second whose time mark bounds the first position of a ``since`` filter
        self.start: tuple[str, int] | None = None
        #: the parameter of each column compared by :meth:`eq`
        self.placeholders: dict[str, str] = {}

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def add(self, template: str, *values: Any) -> None:
        """``template`` uses ``{}`` for each value, in order."""
        self.clauses.append(template.format(*(self.arg(v) for v in values)))

    def eq(self, column: str, value: Any) -> None:
        if value is not None:
            self.add(f"e.{column} = {{}}", value)
            self.placeholders[column] = f"${len(self.args)}"

    def time_range(self, view: str, since: float | None, until: float | None) -> None:
        if since is not None:
            self.add("e.at >= {}", since)
            self.start = (view, since_second(since))
        if until is not None:
            self.add("e.at < {}", until)

    def eqs(self, **columns: Any) -> _Where:
        """``column = value`` for each value that is not None."""
        for column, value in columns.items():
            self.eq(column, value)
        return self

    def sql(self) -> str:
        return " AND ".join(self.clauses) if self.clauses else "1 = 1"


async def _page(
    store: EventStore,
    source: str,
    columns: Sequence[str],
    where: _Where,
    after: int,
    limit: int,
    to_item: Callable[[dict[str, Any]], dict[str, Any]],
    drive: str = "e",
    by_issuer: str | None = None,
) -> dict[str, Any]:
    """One page from ``source`` (the view aliased ``e``, maybe joined), ordered by ``drive``'s position.

    The cursor and the order are on the driving table so the database walks
    its index in position order and stops after ``limit`` rows. ``by_issuer`` names
    the table when ``source`` is that table alone and it has a ``(subject_sub,
    subject_iss, position)`` index: a subject without its issuer is then listed
    issuer by issuer (:func:`_by_subject_across_issuers`).
    """
    check_page(after, limit)
    where.add(f"{drive}.position > {{}}", after)
    if where.start is not None:  # no row with at >= since comes before its time mark (projections/audit_time.py)
        view, second = where.start
        where.clauses.append(f"{drive}.position >= " + START_SQL.format(view=where.arg(view), second=where.arg(second)))
    select = ", ".join(f"e.{c}" for c in columns)
    sub = where.placeholders.get("subject_sub")
    if by_issuer is not None and sub is not None and "subject_iss" not in where.placeholders \
            and getattr(store, "dialect", "") == "postgresql":
        sql = _by_subject_across_issuers(by_issuer, select, where, sub, limit)
    else:
        sql = f"SELECT {select} FROM {source} WHERE {where.sql()} ORDER BY {drive}.position LIMIT {where.arg(limit + 1)}"
    rows = await store.fetch(sql, *where.args)
    items: list[dict[str, Any]] = []
    for row in rows[:limit]:
        # an actor named twice in one chain under different issuers joins twice
        if not items or items[-1]["position"] != row[0]:
            items.append(to_item(dict(zip(columns, row))))
    return {"items": items, "next": int(rows[limit - 1][0]) if len(rows) > limit else None}


def _by_subject_across_issuers(table: str, select: str, where: _Where, sub: str, limit: int) -> str:
    """The page of a filter naming ``subject_sub`` but no issuer, as one index walk per issuer (PostgreSQL).

    The index ``(subject_sub, subject_iss, position)`` gives a subject's rows in position
    order only issuer by issuer: asked for position order across issuers, PostgreSQL's
    generic plan read and sorted all of a heavy subject's rows (23–28 ms for 30,000 of
    300,000). Here a recursive query finds the subject's issuers (one index step each,
    as a skip scan), each issuer's first rows come from the index in order, and the
    page is the first of those; rows without an issuer get a walk of their own.
    """
    count = where.arg(limit + 1)
    filters = where.sql()
    issuers = (
        f"WITH RECURSIVE issuers(iss) AS ("
        f"(SELECT e.subject_iss FROM {table} e WHERE e.subject_sub = {sub} AND e.subject_iss IS NOT NULL "
        f"ORDER BY e.subject_iss LIMIT 1) "
        f"UNION ALL SELECT (SELECT e.subject_iss FROM {table} e WHERE e.subject_sub = {sub} "
        f"AND e.subject_iss > issuers.iss ORDER BY e.subject_iss LIMIT 1) FROM issuers WHERE issuers.iss IS NOT NULL)"
    )
    each = (
        # the recursion ends on a NULL row, which must not drive a walk of its own
        f"SELECT x.* FROM (SELECT iss FROM issuers WHERE iss IS NOT NULL) i CROSS JOIN LATERAL (SELECT {select} "
        f"FROM {table} e WHERE {filters} AND e.subject_iss = i.iss ORDER BY e.position LIMIT {count}) x"
    )
    without = (  # ordered as the index is (all NULL there): read in order, not sorted
        f"SELECT {select} FROM {table} e WHERE {filters} AND e.subject_iss IS NULL "
        f"ORDER BY e.subject_iss, e.position LIMIT {count}"
    )
    # the union's columns keep their names (position, …), read again through the alias e
    return f"{issuers} SELECT {select} FROM ({each} UNION ALL ({without})) e ORDER BY e.position LIMIT {count}"


def _split(value: str | None) -> list[str]:
    return value.split() if value else []


EXCHANGE_COLUMNS = (
    "position", "at", "request_id", "client_id", "kind", "subject_iss", "subject_sub", "subject_jti",
    "subject_token_type", "actor_iss", "actor_sub", "act", "issued_jti", "parent_jti", "root_jti", "depth",
    "audience", "resource", "scope", "issued_at", "expires_at", "source_address",
)  # fmt: skip


def exchange_item(row: dict[str, Any]) -> dict[str, Any]:
    """A row of ``audit_exchanges`` as the API shows it."""
    item = dict(row)
    item["position"], item["depth"] = int(row["position"]), int(row["depth"])
    item["at"] = iso(row["at"])
    item["act"] = json.loads(row["act"]) if row["act"] else None
    for key in ("audience", "resource", "scope"):
        item[key] = _split(row[key])
    item["issued_at"], item["expires_at"] = iso(row["issued_at"]), iso(row["expires_at"])
    return item


async def exchanges(
    store: EventStore,
    *,
    subject_iss: str | None = None,
    subject_sub: str | None = None,
    actor_sub: str | None = None,
    actor_iss: str | None = None,
    client_id: str | None = None,
    audience: str | None = None,
    kind: str | None = None,
    jti: str | None = None,
    since: float | None = None,
    until: float | None = None,
    after: int = 0,
    limit: int = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """Token exchanges, filtered by subject, any actor in the chain, client, audience, kind, jti, time."""
    where = _Where().eqs(
        subject_sub=subject_sub, subject_iss=subject_iss, client_id=client_id, kind=kind, issued_jti=jti
    )
    where.time_range("exchanges", since, until)
    source, drive = "audit_exchanges e", "e"
    if audience is not None:
        source += " JOIN audit_exchange_audiences au ON au.position = e.position"
        where.add("au.audience = {}", audience)
        drive = "au"
    if actor_sub is not None:
        source += " JOIN audit_exchange_actors a ON a.position = e.position"
        where.add("a.actor_sub = {}", actor_sub)
        if actor_iss is not None:
            where.add("a.actor_iss = {}", actor_iss)
        drive = "a"
    plain = "audit_exchanges" if drive == "e" else None
    return await _page(store, source, EXCHANGE_COLUMNS, where, after, limit, exchange_item, drive, by_issuer=plain)


DENIED_COLUMNS = (
    "position", "at", "event", "request_id", "endpoint", "client_id", "error", "reason", "description",
    "subject_iss", "subject_sub", "subject_jti", "actor_sub", "audience", "scope", "auth_method", "source_address",
)  # fmt: skip


def _denied_item(row: dict[str, Any]) -> dict[str, Any]:
    item = dict(row)
    item["position"], item["at"] = int(row["position"]), iso(row["at"])
    item["audience"], item["scope"] = _split(row["audience"]), _split(row["scope"])
    return item


async def denied(
    store: EventStore,
    *,
    subject_iss: str | None = None,
    subject_sub: str | None = None,
    client_id: str | None = None,
    reason: str | None = None,
    event: str | None = None,
    since: float | None = None,
    until: float | None = None,
    after: int = 0,
    limit: int = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """Refused exchanges and failed client authentications, with their reasons."""
    where = _Where().eqs(
        subject_sub=subject_sub, subject_iss=subject_iss, client_id=client_id, reason=reason, event=event
    )
    where.time_range("denied", since, until)
    return await _page(store, "audit_denied e", DENIED_COLUMNS, where, after, limit, _denied_item,
                       by_issuer="audit_denied")


REVOCATION_COLUMNS = (
    "position", "at", "kind", "jti", "cascades", "subject_iss", "subject_sub", "client_id", "revoked_before",
    "revoked_by", "reason", "request_id",
)  # fmt: skip


def _revocation_item(row: dict[str, Any]) -> dict[str, Any]:
    item = dict(row)
    item["position"], item["at"] = int(row["position"]), iso(row["at"])
    item["cascades"] = bool(row["cascades"])
    item["revoked_before"] = iso(row["revoked_before"])
    return item


async def revocations(
    store: EventStore,
    *,
    kind: str | None = None,
    jti: str | None = None,
    subject_iss: str | None = None,
    subject_sub: str | None = None,
    client_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
    after: int = 0,
    limit: int = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """Revocations of tokens, subjects and clients."""
    where = _Where().eqs(
        kind=kind, jti=jti, subject_sub=subject_sub, subject_iss=subject_iss, client_id=client_id
    )
    where.time_range("revocations", since, until)
    return await _page(store, "audit_revocations e", REVOCATION_COLUMNS, where, after, limit, _revocation_item)


LIST_QUERIES = {"exchanges": exchanges, "denied": denied, "revocations": revocations}


async def _top(store: EventStore, sql: str, *args: Any) -> list[dict[str, Any]]:
    return [{"value": str(r[0]), "exchanges": int(r[1])} for r in await store.fetch(sql, *args)]


async def subject_summary(store: EventStore, iss: str, sub: str, *, top: int = 10) -> dict[str, Any] | None:
    """Counts, first/last seen, and the clients, audiences and actors most seen for one subject."""
    rows = await store.fetch(
        "SELECT exchanges, denied, revocations, first_seen, last_seen FROM audit_subjects "
        "WHERE subject_iss = $1 AND subject_sub = $2",
        iss,
        sub,
    )
    if not rows:
        return None
    count, refused, revoked, first, last = rows[0]
    subject = "FROM audit_exchanges e WHERE e.subject_sub = $1 AND e.subject_iss = $2"
    return {
        "subject_iss": iss,
        "subject_sub": sub,
        "exchanges": int(count),
        "denied": int(refused),
        "revocations": int(revoked),
        "first_seen": iso(first),
        "last_seen": iso(last),
        "clients": await _top(
            store, f"SELECT e.client_id, COUNT(*) AS n {subject} GROUP BY e.client_id ORDER BY n DESC, 1 LIMIT $3",
            sub, iss, top,
        ),
        "audiences": await _top(
            store,
            "SELECT a.audience, COUNT(*) AS n FROM audit_exchange_audiences a JOIN audit_exchanges e "
            "ON e.position = a.position WHERE e.subject_sub = $1 AND e.subject_iss = $2 "
            "GROUP BY a.audience ORDER BY n DESC, 1 LIMIT $3",
            sub, iss, top,
        ),
        "actors": await _top(
            store,
            "SELECT a.actor_sub, COUNT(DISTINCT a.position) AS n FROM audit_exchange_actors a JOIN audit_exchanges e "
            "ON e.position = a.position WHERE e.subject_sub = $1 AND e.subject_iss = $2 "
            "GROUP BY a.actor_sub ORDER BY n DESC, 1 LIMIT $3",
            sub, iss, top,
        ),
    }  # fmt: skip


# --- delegation tree -------------------------------------------------------------------------------------------

_TREE_COLUMNS = (
    "position", "at", "issued_jti", "parent_jti", "root_jti", "depth", "client_id", "kind", "subject_iss",
    "subject_sub", "act", "audience", "scope", "issued_at", "expires_at",
)  # fmt: skip


def _node(row: Sequence[Any]) -> dict[str, Any]:
    r = dict(zip(_TREE_COLUMNS, row))
    act = json.loads(r["act"]) if r["act"] else None
    return {
        "jti": r["issued_jti"],
        "parent_jti": r["parent_jti"],
        "position": int(r["position"]),
        "at": iso(r["at"]),
        "depth": int(r["depth"]),
        "kind": r["kind"],
        "client_id": r["client_id"],
        "subject_iss": r["subject_iss"],
        "subject_sub": r["subject_sub"],
        "actors": [sub for _, sub in act_chain(act)],
        "audience": _split(r["audience"]),
        "scope": _split(r["scope"]),
        "issued_at": int(r["issued_at"]),
        "expires_at": iso(r["expires_at"]),
        "revoked": None,
        "children": [],
    }


async def _rows_in(store: EventStore, sql: str, values: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Run ``sql`` (with ``{in}`` for the list) over ``values`` in chunks of 500."""
    rows: list[tuple[Any, ...]] = []
    values = list(values)
    for start in range(0, len(values), 500):
        chunk = values[start : start + 500]
        marks = placeholders(1, len(chunk))
        rows.extend(await store.fetch(sql.format(marks=marks), *chunk))
    return rows


async def _mark_revocations(store: EventStore, root: dict[str, Any], nodes: list[dict[str, Any]]) -> None:
    """Annotate each node with why it is revoked: directly, by an ancestor, by subject or client revocation."""
    direct = {
        str(r[0]): {"how": "token", "at": iso(r[1]), "by": r[2], "reason": r[3], "cascades": bool(r[4])}
        for r in await _rows_in(
            store,
            "SELECT jti, at, revoked_by, reason, cascades FROM audit_revocations WHERE kind = 'token' AND jti IN ({marks})",
            [n["jti"] for n in nodes],
        )
    }
    by_subject: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for r in await _rows_in(
        store,
        "SELECT subject_iss, subject_sub, revoked_before, at, revoked_by, reason FROM audit_revocations "
        "WHERE kind = 'subject' AND subject_sub IN ({marks})",
        list({n["subject_sub"] for n in nodes}),
    ):
        by_subject.setdefault((str(r[0]), str(r[1])), []).append(r)
    by_client: dict[str, list[tuple[Any, ...]]] = {}
    for r in await _rows_in(
        store,
        "SELECT client_id, revoked_before, at, revoked_by, reason FROM audit_revocations "
        "WHERE kind = 'client' AND client_id IN ({marks})",
        list({n["client_id"] for n in nodes}),
    ):
        by_client.setdefault(str(r[0]), []).append(r)

    def own(node: dict[str, Any]) -> dict[str, Any] | None:
        if node["jti"] in direct:
            return direct[node["jti"]]
        for _, _, before, at, by, reason in by_subject.get((node["subject_iss"], node["subject_sub"]), []):
            if node["issued_at"] < float(before):
                return {"how": "subject", "at": iso(at), "by": by, "reason": reason, "cascades": True}
        for _, before, at, by, reason in by_client.get(node["client_id"], []):
            if node["issued_at"] < float(before):
                return {"how": "client", "at": iso(at), "by": by, "reason": reason, "cascades": True}
        return None

    def walk(node: dict[str, Any], inherited: dict[str, Any] | None) -> None:
        node["revoked"] = own(node) or inherited
        passed = node["revoked"]
        if passed is not None and passed.get("how") != "ancestor":
            passed = {"how": "ancestor", "jti": node["jti"]} if passed["cascades"] else None
        for child in node["children"]:
            walk(child, passed)

    walk(root, None)


async def token_tree(store: EventStore, jti: str, *, max_nodes: int = MAX_TREE_NODES) -> dict[str, Any] | None:
    """The delegation tree of ``jti``: its ancestors up to the root, then every descendant below it.

    ``root`` is the topmost known ancestor with nested ``children``; the path
    down to ``jti`` holds only the ancestors (not their other branches).
    """
    cols = ", ".join(_TREE_COLUMNS)
    rows = await store.fetch(f"SELECT {cols} FROM audit_exchanges WHERE issued_jti = $1", jti)
    if not rows:
        return None
    token = _node(rows[0])
    chain = [token]
    seen = {jti}
    while chain[0]["parent_jti"] and chain[0]["parent_jti"] not in seen and len(chain) <= MAX_ANCESTORS:
        parent = chain[0]["parent_jti"]
        seen.add(parent)
        found = await store.fetch(
            f"SELECT {cols} FROM audit_exchanges WHERE issued_jti = $1", parent
        )
        if not found:
            break
        chain.insert(0, _node(found[0]))
    for upper, lower in zip(chain, chain[1:]):
        upper["children"].append(lower)

    level, count, truncated = [token], 0, False
    while level and not truncated:
        rows = await _rows_in(
            store,
            f"SELECT {cols} FROM audit_exchanges WHERE parent_jti IN ({{marks}}) ORDER BY position",
            [n["jti"] for n in level],
        )
        by_jti = {n["jti"]: n for n in level}
        next_level = []
        for row in rows:
            child = _node(row)
            if child["jti"] in seen:
                continue
            if count >= max_nodes:
                truncated = True
                break
            seen.add(child["jti"])
            by_jti[child["parent_jti"]]["children"].append(child)
            next_level.append(child)
            count += 1
        level = next_level
    nodes = chain + [n for n in _flatten(token) if n is not token]
    await _mark_revocations(store, chain[0], nodes)
    return {
        "jti": jti,
        "ancestors": [n["jti"] for n in chain[:-1]],
        "descendants": count,
        "truncated": truncated,
        "root": chain[0],
    }


def _flatten(node: dict[str, Any]) -> list[dict[str, Any]]:
    out, stack = [], [node]
    while stack:
        current = stack.pop()
        out.append(current)
        stack.extend(reversed(current["children"]))
    return out
