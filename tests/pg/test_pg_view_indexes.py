"""PostgreSQL view indexes: BRIN on time, children-only parent indexes, room for HOT counter updates; old ones replaced."""

from __future__ import annotations

from eventstore.postgres import PostgresEventStore
from projections.audit import AuditProjection
from projections.lineage import LineageProjection
from projections.runner import ensure_schema

OLD_INDEXES = {
    "lineage_parent": "CREATE INDEX lineage_parent ON lineage (parent_jti)",
    "audit_exchanges_parent": "CREATE INDEX audit_exchanges_parent ON audit_exchanges (parent_jti)",
    "audit_exchanges_at": "CREATE INDEX audit_exchanges_at ON audit_exchanges (at)",
    "audit_denied_at": "CREATE INDEX audit_denied_at ON audit_denied (at)",
    "audit_revocations_at": "CREATE INDEX audit_revocations_at ON audit_revocations (at)",
}


async def _indexes(store: PostgresEventStore) -> dict[str, str]:
    rows = await store.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()")
    return {name: definition for name, definition in rows}


async def test_a_database_made_with_the_old_indexes_ends_with_the_new_ones(pg_dsn: str) -> None:
    """Opening over a schema that has the earlier B-trees drops them and builds their replacements, once."""
    store = PostgresEventStore(pg_dsn, [LineageProjection()])
    await store.open()
    try:
        await ensure_schema(store, [AuditProjection()])
        async with store.transaction() as tx:  # as an earlier release left it
            for name in OLD_INDEXES:
                await tx.execute(f"DROP INDEX IF EXISTS {name}")
            for ddl in OLD_INDEXES.values():
                await tx.execute(ddl)
        await ensure_schema(store, [AuditProjection()])
    finally:
        await store.close()
    reopened = PostgresEventStore(pg_dsn, [LineageProjection()])
    await reopened.open()
    try:
        await ensure_schema(reopened, [AuditProjection()])  # again: nothing changes
        indexes = await _indexes(reopened)
        options = await reopened.fetch("SELECT reloptions FROM pg_class WHERE relname = 'audit_subjects'")
    finally:
        await reopened.close()
    assert not set(OLD_INDEXES) & set(indexes)
    for table in ("audit_exchanges", "audit_denied", "audit_revocations"):
        assert "USING brin (at)" in indexes[f"{table}_at_brin"]
    assert indexes["lineage_children"].endswith("WHERE (parent_jti IS NOT NULL)")
    assert indexes["audit_exchanges_children"].endswith("WHERE (parent_jti IS NOT NULL)")
    assert options == [(["fillfactor=70"],)]
