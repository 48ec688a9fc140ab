"""Many-row INSERTs on PostgreSQL as one statement: ``INSERT … SELECT * FROM unnest($1::type[], …)``.

asyncpg's ``executemany`` runs the prepared INSERT once per row: each row pays
the server's executor start-up and the client's per-row protocol work. Under
the append lock that cost is paid by every waiting writer. :class:`BulkInserts`
rewrites a plain ``INSERT INTO t (cols) VALUES ($1, …, $n) [ON CONFLICT …]``
into one statement over column arrays (the column types are read from the
catalog once per table), so a batch of rows is one execution.

An upsert (``ON CONFLICT (keys) DO UPDATE``) goes as one statement only when
no two rows share their conflict keys: one statement may not update a row
twice, where per-row execution updates it once per row (the last row wins).
Anything else — other statement shapes, a column the catalog does not list, a
conflict key that is not an inserted column, a single row — goes through
``executemany`` unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import asyncpg

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
    statement: str
    width: int
    #: for an upsert, the row indexes of its conflict keys, which must not repeat within one statement
    keys: tuple[int, ...] | None


def _keys_repeat(rows: Sequence[Sequence[Any]], keys: tuple[int, ...]) -> bool:
    return len({tuple(row[i] for i in keys) for row in rows}) < len(rows)


class BulkInserts:
    """Rewrites and runs many-row INSERTs; holds the statement and column-type caches of one store."""

    def __init__(self) -> None:
        self._types: dict[str, dict[str, str]] = {}
        self._rewritten: dict[str, _Bulk | None] = {}

    async def executemany(self, conn: asyncpg.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows`` with one statement where ``sql`` and the rows allow it, else row by row."""
        if len(rows) > 1:
            bulk = await self._bulk_statement(conn, sql)
            if bulk is not None and (bulk.keys is None or not _keys_repeat(rows, bulk.keys)):
                await conn.execute(bulk.statement, *[[row[i] for row in rows] for i in range(bulk.width)])
                return
        await conn.executemany(sql, rows)

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
