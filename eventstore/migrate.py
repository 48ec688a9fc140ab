"""Versioned SQL migrations for the PostgreSQL event store.

Migrations are the files ``eventstore/migrations/NNNN_name.sql``, applied in
version order, each recorded in ``baton_schema_migrations`` with the SHA-256
of its text. A run takes a transaction-scoped advisory lock (per schema), so
several instances starting at once apply each migration exactly once; the
whole run is one transaction, so a failure leaves the schema as it was. An
applied file whose text changed is refused: a fresh database and an upgraded
one must end identical, which only holds if history is never edited.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from .errors import StoreError

MIGRATIONS_TABLE = "baton_schema_migrations"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('baton.migrate.' || current_schema(), 0))"


class MigrationError(StoreError):
    """The database schema cannot be brought to (or is not at) the expected version."""


@dataclass(frozen=True)
class Migration:
    """One versioned SQL file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file text, recorded when applied."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """The migrations shipped with Baton, in version order (versions must be 1, 2, 3 …)."""
    found: list[Migration] = []
    for entry in resources.files("eventstore").joinpath("migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration versions must be contiguous from 1: {[m.version for m in found]}")
    return found


async def applied_migrations(conn: Any) -> dict[int, str]:
    """Version → checksum of what is applied (empty when the table does not exist yet)."""
    if await conn.fetchval("SELECT to_regclass($1)", MIGRATIONS_TABLE) is None:
        return {}
    rows = await conn.fetch(f"SELECT version, checksum FROM {MIGRATIONS_TABLE}")
    return {int(r[0]): str(r[1]) for r in rows}


def _pending(migrations: Sequence[Migration], applied: dict[int, str]) -> list[Migration]:
    for m in migrations:
        if m.version in applied and applied[m.version] != m.checksum:
            raise MigrationError(f"migration {m.version:04d}_{m.name} was edited after it was applied")
    unknown = sorted(set(applied) - {m.version for m in migrations})
    if unknown:
        raise MigrationError(f"the database has migrations this Baton does not know: {unknown} (downgrade?)")
    return [m for m in migrations if m.version not in applied]


async def migrate(
    conn: Any,
    migrations: Sequence[Migration] | None = None,
    *,
    extra_ddl: Sequence[str] = (),
) -> list[Migration]:
    """Apply pending migrations, then ``extra_ddl`` (idempotent projection DDL); returns what was applied.

    ``conn`` is an asyncpg connection; its ``search_path`` selects the schema.
    """
    migrations = load_migrations() if migrations is None else migrations
    async with conn.transaction():
        await conn.execute(_LOCK)
        if await conn.fetchval("SELECT to_regclass($1)", MIGRATIONS_TABLE) is None:
            await conn.execute(
                f"CREATE TABLE {MIGRATIONS_TABLE} (version integer PRIMARY KEY, name text NOT NULL, "
                "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
        pending = _pending(migrations, await applied_migrations(conn))
        for m in pending:
            await conn.execute(m.sql)
            await conn.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (version, name, checksum) VALUES ($1, $2, $3)",
                m.version,
                m.name,
                m.checksum,
            )
        for ddl in extra_ddl:
            await conn.execute(ddl)
    return pending


async def ensure_current(conn: Any, migrations: Sequence[Migration] | None = None) -> None:
    """Raise :class:`MigrationError` unless every migration is applied (for stores opened without migrating)."""
    migrations = load_migrations() if migrations is None else migrations
    pending = _pending(migrations, await applied_migrations(conn))
    if pending:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in pending)
        raise MigrationError(f"the database schema is behind: run `baton migrate` (pending: {names})")


async def grant_runtime_role(conn: Any, role: str) -> None:
    """Give ``role`` what Baton needs at run time and no more: events are INSERT and SELECT only.

    Projection tables get full DML (they are rebuilt); the migrations table is
    read-only; default privileges cover tables the migrating role creates later.
    """
    if not _ROLE.match(role):
        raise MigrationError(f"not a plain role name: {role!r}")
    schema = await conn.fetchval("SELECT current_schema()")
    if schema is None:
        raise MigrationError("no schema selected (check search_path)")
    s = '"' + str(schema).replace('"', '""') + '"'
    r = f'"{role}"'
    async with conn.transaction():
        await conn.execute(f"GRANT USAGE ON SCHEMA {s} TO {r}")
        await conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r}")
        await conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {r}")
        await conn.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {s}.events FROM {r}")
        await conn.execute(f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {s}.{MIGRATIONS_TABLE} FROM {r}")
        await conn.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {r}")
