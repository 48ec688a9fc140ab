"""Many-row INSERTs on PostgreSQL as one statement: ``INSERT … SELECT … FROM unnest(…)``.

asyncpg's ``executemany`` runs the prepared INSERT once per row: each row pays
the server's executor start-up and the client's per-row protocol work. Under
the append lock that cost is paid by every waiting writer. :class:`BulkInserts`
rewrites a plain ``INSERT INTO t (cols) VALUES ($1, …, $n) [ON CONFLICT …]``
into one statement (the column types are read from the catalog once per table),
so a batch of rows is one execution.

The rows travel in one of two shapes, both matched to the table's columns by
name:

- **One array of a row type of Baton's own** (``unnest($1::baton_rows_…[])``),
  where the store can create such a type: a composite type whose attributes are
  the statement's columns, named after them, with the table's types; the INSERT
  selects them by name (``SELECT r."id", r."name" …``). asyncpg then encodes a
  row in one step, where a column array costs it a container check per element
  (two per text value) — for a 22-column audit row most of the client's work.
  The type is named after a digest of its definition (``baton_rows_<digest>``)
  and never altered, so an instance's cached layout cannot go stale; it is
  created once, outside the inserting transaction (a rollback must not take it
  away), and used only when the catalog shows exactly that definition.
- **One array per column** (``unnest($1::bigint[], $2::text[], …)``) otherwise,
  e.g. for a runtime role that may not create types.

(The table's own row type would need no type of Baton's, but its values are
read by position: a migration that drops a column and adds another of the same
type under a running instance would shift values into the wrong columns
without any error.)

An upsert (``ON CONFLICT (keys) DO UPDATE``) goes as one statement only when
no two rows share their conflict keys: one statement may not update a row
twice, where per-row execution updates it once per row (the last row wins).
Anything else — other statement shapes, a column the catalog does not list, a
conflict key that is not an inserted column — goes through ``executemany``
unchanged.

:meth:`BulkInserts.execute_all` runs a queue of such inserts: consecutive ones
into distinct tables go as the parts of one statement.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, NamedTuple

import asyncpg
import structlog

from .batch import shift_parameters

_PLAIN_INSERT = re.compile(
    r"^\s*INSERT INTO (?P<table>[A-Za-z_][A-Za-z0-9_]*) \((?P<columns>[^)]*)\)\s*VALUES\s*\((?P<values>[^)]*)\)"
    r"(?P<tail>(\s+ON CONFLICT(\s*\([^)]*\))? DO NOTHING"
    r"|\s+ON CONFLICT\s*\((?P<keys>[^)]*)\)\s*DO UPDATE\s+SET\s.*)?)\s*$",
    re.S,
)
_PARAMETER = re.compile(r"\$\d")
_COLUMN_TYPES = (
    "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
    "WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped"
)
# the attributes of a composite type (schema, name), in order; none when there is no such type. Read from the
# catalog tables, not through to_regtype(): a name lookup that misses is cached by the backend
_ROW_TYPE_ATTRIBUTES = (
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_type t "
    "JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_attribute a ON a.attrelid = t.typrelid "
    "WHERE n.nspname = $1 AND t.typname = $2 AND t.typtype = 'c' AND a.attnum > 0 AND NOT a.attisdropped "
    "ORDER BY a.attnum"
)
_ROW_ALIAS = "bulk_row"
# what a statement over a row type dropped since it was prepared raises
_STALE_TYPES = (
    asyncpg.InternalServerError,  # "cache lookup failed for type …"
    asyncpg.UndefinedObjectError,  # "type … does not exist"
    asyncpg.exceptions.OutdatedSchemaCacheError,
    asyncpg.InternalClientError,  # "could not resolve query result and/or argument types"
)

#: a connection of its own, outside any transaction of the inserting one (e.g. the pool's ``acquire``)
SideConnection = Callable[[], AbstractAsyncContextManager[asyncpg.Connection]]

_log = structlog.get_logger(__name__)


class _Bulk(NamedTuple):
    #: the one-statement form, parameters ``$1`` … ``$width``
    statement: str
    table: str
    #: 1 for an array of rows of a row type, else one parameter (array) per column
    width: int
    #: for an upsert, the row indexes of its conflict keys, which must not repeat within one statement
    keys: tuple[int, ...] | None
    #: the rows go as one array of a row type (else as column arrays)
    row_type: bool = False

    def parameters(self, rows: Sequence[Sequence[Any]]) -> list[Any]:
        """The statement's parameters for ``rows``."""
        if self.row_type:
            # asyncpg reads a tuple inside an array as a record, any other sequence as a sub-array
            return [[row if type(row) is tuple else tuple(row) for row in rows]]
        return _columns_of(rows, self.width)



def _keys_repeat(rows: Sequence[Sequence[Any]], keys: tuple[int, ...]) -> bool:
    return len({tuple(row[i] for i in keys) for row in rows}) < len(rows)


def _columns_of(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def row_type_name(definition: Sequence[tuple[str, str]]) -> str:
    """The name of Baton's row type for these ``(column, type)`` pairs: a digest of them, so one name is one layout."""
    digest = hashlib.sha256(repr(list(definition)).encode()).hexdigest()[:24]
    return f"baton_rows_{digest}"


async def create_row_types(conn: asyncpg.Connection, statements: Sequence[str]) -> int:
    """Make the row types of ``statements`` on ``conn`` (outside a transaction); the number now in place.

    ``baton migrate`` runs this as the schema owner, so that a runtime role that may not create types
    (``migrate_on_start = false``) finds them and its rows still go as one array each.
    """

    @asynccontextmanager
    async def same() -> AsyncIterator[asyncpg.Connection]:
        yield conn

    bulk = BulkInserts(same)
    made = [await bulk._bulk_statement(conn, sql) for sql in statements]
    return sum(1 for b in made if b is not None and b.row_type)


class BulkInserts:
    """Rewrites and runs many-row INSERTs; holds the statement and column-type caches of one store."""

    def __init__(self, side_connection: SideConnection | None = None) -> None:
        """With ``side_connection`` rows go as one array of a row type (made on it); without, as column arrays."""
        self._side_connection = side_connection
        self._types: dict[str, dict[str, str]] = {}
        self._rewritten: dict[str, _Bulk | None] = {}
        self._merged: dict[tuple[str, ...], str] = {}
        self._schema: str | None = None

    async def executemany(self, conn: asyncpg.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows`` with one statement where ``sql`` and the rows allow it, else row by row."""
        await self.execute_all(conn, [(sql, rows)])

    async def execute_all(self, conn: asyncpg.Connection, inserts: Sequence[tuple[str, Sequence[Sequence[Any]]]]) -> None:
        """Run queued INSERTs in order, as few statements as they allow.

        Consecutive inserts into distinct tables that each go as one statement travel
        together, as the parts of one statement (``WITH q1 AS (INSERT …) INSERT …``):
        one round trip and one execution instead of one each. Parts cannot see one
        another's rows, which is why a table that appears twice starts a new statement.
        """
        group: list[tuple[_Bulk, Sequence[Sequence[Any]]]] = []
        for sql, rows in inserts:
            bulk = await self._one_statement(conn, sql, rows) if rows else None
            if bulk is not None and all(b.table != bulk.table for b, _ in group):
                group.append((bulk, rows))
                continue
            await self._run(conn, group)
            group = []
            if bulk is not None:
                group.append((bulk, rows))
            elif rows:
                await conn.executemany(sql, rows)
        await self._run(conn, group)

    async def _one_statement(self, conn: asyncpg.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> _Bulk | None:
        bulk = await self._bulk_statement(conn, sql)
        if bulk is None or (bulk.keys is not None and _keys_repeat(rows, bulk.keys)):
            return None
        return bulk

    async def _run(self, conn: asyncpg.Connection, group: Sequence[tuple[_Bulk, Sequence[Sequence[Any]]]]) -> None:
        if not group:
            return
        if len(group) == 1:
            statement, parameters = group[0][0].statement, group[0][0].parameters(group[0][1])
        else:
            statement = self._merged_statement([b for b, _ in group])
            parameters = [parameter for bulk, rows in group for parameter in bulk.parameters(rows)]
        try:
            await conn.execute(statement, *parameters)
        except _STALE_TYPES:
            if any(bulk.row_type for bulk, _ in group):
                await self._forget_row_types(conn)
            raise

    async def _forget_row_types(self, conn: asyncpg.Connection) -> None:
        """A row type went missing under this instance (dropped by hand): look them up again on next use.

        The failed statement's transaction is lost; the next one re-checks (and re-creates) the types, and
        asyncpg forgets the connection's cached statements and type layouts."""
        self._rewritten = {sql: b for sql, b in self._rewritten.items() if b is None or not b.row_type}
        self._merged.clear()
        await conn.reload_schema_state()

    def _merged_statement(self, bulks: list[_Bulk]) -> str:
        key = tuple(b.statement for b in bulks)
        statement = self._merged.get(key)
        if statement is None:
            parts, first = [], 1
            for bulk in bulks:
                parts.append(shift_parameters(bulk.statement, first - 1))
                first += bulk.width
            ctes = ", ".join(f"q{i} AS ({part})" for i, part in enumerate(parts[:-1], start=1))
            statement = self._merged[key] = f"WITH {ctes} {parts[-1]}"
        return statement

    async def _bulk_statement(self, conn: asyncpg.Connection, sql: str) -> _Bulk | None:
        if sql in self._rewritten:
            return self._rewritten[sql]
        bulk: _Bulk | None = None
        match = _PLAIN_INSERT.match(sql)
        if match is not None:
            columns = [c.strip() for c in match["columns"].split(",")]
            values = [v.strip() for v in match["values"].split(",")]
            # parameters in the DO UPDATE clause would meet arrays, not the row's values
            plain_tail = _PARAMETER.search(match["tail"]) is None
            if plain_tail and values == [f"${i}" for i in range(1, len(columns) + 1)]:
                types = await self._column_types(conn, match["table"])
                keys = [k.strip() for k in match["keys"].split(",")] if match["keys"] is not None else None
                if all(c in types for c in columns) and (keys is None or all(k in columns for k in keys)):
                    key_indexes = None if keys is None else tuple(columns.index(k) for k in keys)
                    head = f"INSERT INTO {match['table']} ({', '.join(columns)}) SELECT "
                    row_type = await self._row_type(conn, [(c, types[c]) for c in columns])
                    if row_type is not None:
                        selected = ", ".join(f"{_ROW_ALIAS}.{_quoted(c)}" for c in columns)
                        statement = f"{head}{selected} FROM unnest($1::{row_type}[]) {_ROW_ALIAS}{match['tail']}"
                        bulk = _Bulk(statement, match["table"], 1, key_indexes, row_type=True)
                    else:
                        arrays = ", ".join(f"${i}::{types[c]}[]" for i, c in enumerate(columns, start=1))
                        statement = f"{head}* FROM unnest({arrays}){match['tail']}"
                        bulk = _Bulk(statement, match["table"], len(columns), key_indexes)
        self._rewritten[sql] = bulk
        return bulk

    async def _row_type(self, conn: asyncpg.Connection, definition: list[tuple[str, str]]) -> str | None:
        """The schema-qualified row type for ``definition``, created if missing; None to use column arrays.

        The type is looked up and created on a connection of its own, outside ``conn``'s transaction: a
        rollback must not take it away, and ``conn`` must not look its name up before it exists (PostgreSQL
        would cache the miss for the rest of the transaction).
        """
        if self._side_connection is None:
            return None
        if self._schema is None:
            self._schema = (await conn.fetch("SELECT current_schema()"))[0][0]
        name = row_type_name(definition)
        qualified = f"{_quoted(self._schema)}.{name}"
        try:
            async with self._side_connection() as side:
                found = [tuple(r) for r in await side.fetch(_ROW_TYPE_ATTRIBUTES, self._schema, name)]
                if not found:
                    attributes = ", ".join(f"{_quoted(column)} {type_}" for column, type_ in definition)
                    try:
                        await side.execute(f"CREATE TYPE {qualified} AS ({attributes})")
                    except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
                        pass  # another instance created it meanwhile
                    found = [tuple(r) for r in await side.fetch(_ROW_TYPE_ATTRIBUTES, self._schema, name)]
        except Exception as exc:  # noqa: BLE001 - any failure leaves the column arrays, which are correct
            # e.g. a runtime role without CREATE on the schema, or no free connection: only slower
            _log.warning("bulk_row_type_unavailable", type=qualified, error=type(exc).__name__)
            return None
        return qualified if found == definition else None

    async def _column_types(self, conn: asyncpg.Connection, table: str) -> dict[str, str]:
        if table not in self._types:
            rows = await conn.fetch(_COLUMN_TYPES, table)
            self._types[table] = {r[0]: r[1] for r in rows}
        return self._types[table]
