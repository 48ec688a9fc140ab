"""Many-row INSERTs on PostgreSQL as one statement: ``INSERT … SELECT * FROM unnest($1::type[], …)``.

asyncpg's ``executemany`` runs the prepared INSERT once per row: each row pays
the server's executor start-up and the client's per-row protocol work. Under
the append lock that cost is paid by every waiting writer. :class:`BulkInserts`
rewrites a plain ``INSERT INTO t (cols) VALUES ($1, …, $n) [ON CONFLICT … DO
NOTHING]`` into one statement over column arrays (the column types are read
from the catalog once per table), so a batch of rows is one execution.

Anything else — other statement shapes, ``DO UPDATE`` (one statement may not
update a row twice, where per-row execution may), a column the catalog does not
list, a single row — goes through ``executemany`` unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import asyncpg

_PLAIN_INSERT = re.compile(
    r"^\s*INSERT INTO (?P<table>[A-Za-z_][A-Za-z0-9_]*) \((?P<columns>[^)]*)\)\s*VALUES\s*\((?P<values>[^)]*)\)"
    r"(?P<tail>(\s+ON CONFLICT(\s*\([^)]*\))? DO NOTHING)?)\s*$",
    re.S,
)
_COLUMN_TYPES = (
    "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
    "WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped"
)


class BulkInserts:
    """Rewrites and runs many-row INSERTs; holds the statement and column-type caches of one store."""

    def __init__(self) -> None:
        self._types: dict[str, dict[str, str]] = {}
        self._rewritten: dict[str, tuple[str, int] | None] = {}

    async def executemany(self, conn: asyncpg.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows`` with one statement where ``sql`` allows it, else row by row."""
        if len(rows) > 1:
            bulk = await self._bulk_statement(conn, sql)
            if bulk is not None:
                statement, width = bulk
                await conn.execute(statement, *[[row[i] for row in rows] for i in range(width)])
                return
        await conn.executemany(sql, rows)

    async def _bulk_statement(self, conn: asyncpg.Connection, sql: str) -> tuple[str, int] | None:
        if sql in self._rewritten:
            return self._rewritten[sql]
        bulk: tuple[str, int] | None = None
        match = _PLAIN_INSERT.match(sql)
        if match is not None:
            columns = [c.strip() for c in match["columns"].split(",")]
            values = [v.strip() for v in match["values"].split(",")]
            if values == [f"${i}" for i in range(1, len(columns) + 1)]:
                types = await self._column_types(conn, match["table"])
                if all(c in types for c in columns):
                    arrays = ", ".join(f"${i}::{types[c]}[]" for i, c in enumerate(columns, start=1))
                    bulk = (
                        f"INSERT INTO {match['table']} ({', '.join(columns)}) "
                        f"SELECT * FROM unnest({arrays}){match['tail']}",
                        len(columns),
                    )
        self._rewritten[sql] = bulk
        return bulk

    async def _column_types(self, conn: asyncpg.Connection, table: str) -> dict[str, str]:
        if table not in self._types:
            rows = await conn.fetch(_COLUMN_TYPES, table)
            self._types[table] = {r[0]: r[1] for r in rows}
        return self._types[table]
