"""Many-row INSERTs on PostgreSQL as one statement: ``INSERT … SELECT * FROM unnest($1::type[], …)``.

asyncpg's ``executemany`` runs the prepared INSERT once per row: each row pays
the server's executor start-up and the client's per-row protocol work. Under
the append lock that cost is paid by every waiting writer. :class:`BulkInserts`
rewrites a plain ``INSERT INTO t (cols) VALUES ($1, …, $n) [ON CONFLICT …]``
into one statement over column arrays (the column types are read from the
catalog once per table), so a batch of rows is one execution.

The rows travel as one array per column, matched to the table's columns by
name. (One array of the table's own row type would spare asyncpg a container
check per array element, but row values are read by position: a migration that
drops a column and adds another of the same type under a running instance
would shift values into the wrong columns without any error.)

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

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import asyncpg

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


class _Bulk(NamedTuple):
    #: the one-statement form, parameters ``$1`` … ``$width`` (one array per column)
    statement: str
    table: str
    width: int
    #: for an upsert, the row indexes of its conflict keys, which must not repeat within one statement
    keys: tuple[int, ...] | None



def _keys_repeat(rows: Sequence[Sequence[Any]], keys: tuple[int, ...]) -> bool:
    return len({tuple(row[i] for i in keys) for row in rows}) < len(rows)


def _columns_of(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


class BulkInserts:
    """Rewrites and runs many-row INSERTs; holds the statement and column-type caches of one store."""

    def __init__(self) -> None:
        self._types: dict[str, dict[str, str]] = {}
        self._rewritten: dict[str, _Bulk | None] = {}
        self._merged: dict[tuple[str, ...], str] = {}

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
            bulk, rows = group[0]
            await conn.execute(bulk.statement, *_columns_of(rows, bulk.width))
            return
        await conn.execute(self._merged_statement([b for b, _ in group]),
                           *[column for bulk, rows in group for column in _columns_of(rows, bulk.width)])

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
                    arrays = ", ".join(f"${i}::{types[c]}[]" for i, c in enumerate(columns, start=1))
                    bulk = _Bulk(
                        f"INSERT INTO {match['table']} ({', '.join(columns)}) "
                        f"SELECT * FROM unnest({arrays}){match['tail']}",
                        match["table"],
                        len(columns),
                        None if keys is None else tuple(columns.index(k) for k in keys),
                    )
        self._rewritten[sql] = bulk
        return bulk

    async def _column_types(self, conn: asyncpg.Connection, table: str) -> dict[str, str]:
        if table not in self._types:
            rows = await conn.fetch(_COLUMN_TYPES, table)
            self._types[table] = {r[0]: r[1] for r in rows}
        return self._types[table]
