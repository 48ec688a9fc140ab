"""Many-row INSERTs on PostgreSQL as one statement: ``INSERT … SELECT … FROM unnest($1::table[])``.

asyncpg's ``executemany`` runs the prepared INSERT once per row: each row pays
the server's executor start-up and the client's per-row protocol work. Under
the append lock that cost is paid by every waiting writer. :class:`BulkInserts`
rewrites a plain ``INSERT INTO t (cols) VALUES ($1, …, $n) [ON CONFLICT …]``
into one statement over one parameter: an array of the table's own row type
(the column order is read from the catalog once per table). The rows travel
as composite values, encoded field by field; an array per column would cost
asyncpg a container check per element, which for a wide audit row was most of
the client's work. Columns the statement does not name travel as NULL and are
not selected, so they still get their defaults.

An upsert (``ON CONFLICT (keys) DO UPDATE``) goes as one statement only when
no two rows share their conflict keys: one statement may not update a row
twice, where per-row execution updates it once per row (the last row wins).
Anything else — other statement shapes, a column the catalog does not list, a
conflict key that is not an inserted column, a single row — goes through
``executemany`` unchanged.

A row value must have exactly the table's columns. When a migration adds or
drops a column under a running instance, the server refuses the old shape
(``wrong number of columns``); :class:`RowTypeChanged` is raised after the
cached layout is dropped, and a retry of the transaction uses the new one.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import asyncpg

from .errors import StoreUnavailable

_PLAIN_INSERT = re.compile(
    r"^\s*INSERT INTO (?P<table>[A-Za-z_][A-Za-z0-9_]*) \((?P<columns>[^)]*)\)\s*VALUES\s*\((?P<values>[^)]*)\)"
    r"(?P<tail>(\s+ON CONFLICT(\s*\([^)]*\))? DO NOTHING"
    r"|\s+ON CONFLICT\s*\((?P<keys>[^)]*)\)\s*DO UPDATE\s+SET\s.*)?)\s*$",
    re.S,
)
_PARAMETER = re.compile(r"\$\d")
_TABLE_COLUMNS = (
    "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped "
    "ORDER BY attnum"
)


class RowTypeChanged(StoreUnavailable):
    """A table's columns changed since its layout was cached (a migration ran); retry the transaction."""


class _Bulk(NamedTuple):
    #: the statement is ``head + "$1" + rest``; inside a merged statement the parameter is renumbered
    head: str
    rest: str
    table: str
    #: a statement row → the table row (NULL in the columns the statement does not name)
    shape: Callable[[Sequence[Any]], tuple[Any, ...]]
    #: for an upsert, the row indexes of its conflict keys, which must not repeat within one statement
    keys: tuple[int, ...] | None

    @property
    def statement(self) -> str:
        """The statement on its own."""
        return f"{self.head}$1{self.rest}"


def _keys_repeat(rows: Sequence[Sequence[Any]], keys: tuple[int, ...]) -> bool:
    return len({tuple(row[i] for i in keys) for row in rows}) < len(rows)


def _row_type_changed(exc: asyncpg.PostgresError) -> bool:
    """The server refused a row value of an outdated layout, or the table (and its row type) was recreated."""
    if isinstance(exc, asyncpg.DatatypeMismatchError):  # "wrong number of columns", "binary data has type …"
        return True
    return isinstance(exc, asyncpg.InternalServerError) and str(exc).startswith("cache lookup failed for type")


def _shaper(columns: list[str], table_columns: list[str]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """Reorders a row given in ``columns`` order into ``table_columns`` order; a missing column is None."""
    if columns == table_columns:
        return tuple
    # index len(columns) is the None appended to every row
    picks = [columns.index(c) if c in columns else len(columns) for c in table_columns]
    if len(picks) == 1:
        return lambda row: ((*row, None)[picks[0]],)
    pick = operator.itemgetter(*picks)
    return lambda row: pick((*row, None))  # type: ignore[no-any-return]


class BulkInserts:
    """Rewrites and runs many-row INSERTs; holds the statement and column caches of one store."""

    def __init__(self) -> None:
        self._columns: dict[str, list[str]] = {}
        self._rewritten: dict[str, _Bulk | None] = {}

    async def executemany(self, conn: asyncpg.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows`` with one statement where ``sql`` and the rows allow it, else row by row."""
        if len(rows) > 1:
            bulk = await self._one_statement(conn, sql, rows)
            if bulk is not None:
                await self._run(conn, [(bulk, rows)])
                return
        await conn.executemany(sql, rows)

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
        bulks = [bulk for bulk, _ in group]
        ctes = ", ".join(f"q{i} AS ({b.head}${i}{b.rest})" for i, b in enumerate(bulks[:-1], start=1))
        last = bulks[-1]
        statement = (f"WITH {ctes} " if ctes else "") + f"{last.head}${len(bulks)}{last.rest}"
        try:
            await conn.execute(statement, *[[bulk.shape(row) for row in rows] for bulk, rows in group])
        except asyncpg.PostgresError as exc:
            if not _row_type_changed(exc):
                raise
            for bulk, _ in group:
                await self._forget(conn, bulk.table)
            raise RowTypeChanged(f"the columns of {', '.join(b.table for b, _ in group)} changed: {exc}") from exc

    async def _forget(self, conn: asyncpg.Connection, table: str) -> None:
        self._columns.pop(table, None)
        self._rewritten = {sql: b for sql, b in self._rewritten.items() if b is None or b.table != table}
        await conn.reload_schema_state()  # asyncpg's own cached layout of the row type

    async def _bulk_statement(self, conn: asyncpg.Connection, sql: str) -> _Bulk | None:
        if sql in self._rewritten:
            return self._rewritten[sql]
        bulk: _Bulk | None = None
        match = _PLAIN_INSERT.match(sql)
        if match is not None:
            columns = [c.strip() for c in match["columns"].split(",")]
            values = [v.strip() for v in match["values"].split(",")]
            # parameters in the DO UPDATE clause would meet the array, not the row's values
            plain_tail = _PARAMETER.search(match["tail"]) is None
            if plain_tail and values == [f"${i}" for i in range(1, len(columns) + 1)]:
                table = match["table"]
                table_columns = await self._table_columns(conn, table)
                keys = [k.strip() for k in match["keys"].split(",")] if match["keys"] is not None else None
                if all(c in table_columns for c in columns) and (keys is None or all(k in columns for k in keys)):
                    named = ", ".join(columns)
                    bulk = _Bulk(
                        f"INSERT INTO {table} ({named}) SELECT {named} FROM unnest(",
                        f"::{table}[]){match['tail']}",
                        table,
                        _shaper(columns, table_columns),
                        None if keys is None else tuple(columns.index(k) for k in keys),
                    )
        self._rewritten[sql] = bulk
        return bulk

    async def _table_columns(self, conn: asyncpg.Connection, table: str) -> list[str]:
        if table not in self._columns:
            self._columns[table] = [r[0] for r in await conn.fetch(_TABLE_COLUMNS, table)]
        return self._columns[table]
