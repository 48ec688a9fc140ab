"""PostgreSQL view indexes: BRIN on time, children-only parent indexes, room for HOT counter updates.

A database made by an earlier release keeps its B-trees: opening it must never
rebuild an index of a large table (the DDL runs under the append lock, within
the command timeout). A new index (``revoked_subjects (sub)``) is built once,
by ``baton migrate`` or the first open after the upgrade.
"""

from __future__ import annotations

from eventstore.postgres import PostgresEventStore
from projections.audit import AuditProjection
from projections.lineage import LineageProjection
from projections.runner import ensure_schema
from tests.support.recording import statements_sent

#: the index definitions of earlier releases, by name
EARLIER = {
    "lineage_parent": "CREATE INDEX lineage_parent ON lineage (parent_jti)",
    "audit_exchanges_parent": "CREATE INDEX audit_exchanges_parent ON audit_exchanges (parent_jti)",
    "audit_exchanges_at": "CREATE INDEX audit_exchanges_at ON audit_exchanges (at)",
    "audit_denied_at": "CREATE INDEX audit_denied_at ON audit_denied (at)",
    "audit_revocations_at": "CREATE INDEX audit_revocations_at ON audit_revocations (at)",
}


async def _open(dsn: str) -> PostgresEventStore:
    store = PostgresEventStore(dsn, [LineageProjection()])
    await store.open()
    await ensure_schema(store, [AuditProjection()])
    return store


async def _indexes(store: PostgresEventStore) -> dict[str, str]:
    rows = await store.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()")
    return {name: definition for name, definition in rows}


async def _opened_schema(dsn: str) -> tuple[dict[str, str], list]:
    """Open the store (running its DDL) and read back the indexes and the fill factor of ``audit_subjects``."""
    store = await _open(dsn)
    try:
        options = await store.fetch(
            "SELECT reloptions FROM pg_class WHERE oid = (current_schema() || '.audit_subjects')::regclass"
        )
        return await _indexes(store), options
    finally:
        await store.close()


async def test_a_new_database_gets_the_small_indexes(pg_dsn: str) -> None:
    """BRIN on the time columns, parent indexes holding children only, fillfactor 70 for the counters."""
    indexes, options = await _opened_schema(pg_dsn)
    for table in ("audit_exchanges", "audit_denied", "audit_revocations"):
        assert "USING brin (at)" in indexes[f"{table}_at"]
    assert indexes["lineage_parent"].endswith("WHERE (parent_jti IS NOT NULL)")
    assert indexes["audit_exchanges_parent"].endswith("WHERE (parent_jti IS NOT NULL)")
    assert options == [(["fillfactor=70"],)]


async def test_a_database_of_an_earlier_release_opens_unchanged_but_for_the_fill(pg_dsn: str) -> None:
    """Its B-trees stay (no rebuild at start-up); its subject table gets fillfactor 70 for the pages to come."""
    store = await _open(pg_dsn)
    try:
        async with store.transaction() as tx:  # as an earlier release left it
            for name, ddl in EARLIER.items():
                await tx.execute(f"DROP INDEX {name}")
                await tx.execute(ddl)
            await tx.execute("ALTER TABLE audit_subjects RESET (fillfactor)")
        before = await _indexes(store)
    finally:
        await store.close()
    after, options = await _opened_schema(pg_dsn)
    assert after == before
    assert all("brin" not in after[name] and "WHERE" not in after[name] for name in EARLIER)
    assert options == [(["fillfactor=70"],)]


async def test_the_lineage_lookup_finds_revoked_subjects_by_index(pg_dsn: str) -> None:
    """Every group commit with an exchange looks its subjects up under the append lock: with many subjects revoked
    that lookup must use an index, not read them all."""
    from projections.lineage import _lookup_query

    store = await _open(pg_dsn)
    try:
        await store.fetch(
            "INSERT INTO revoked_subjects (iss, sub, before, revoked_by, reason, position) "
            "SELECT 'https://idp.test', 'user-' || g, 1.0, 'admin', 'offboarded', g FROM generate_series(1, 20000) g"
        )
        await store.fetch("ANALYZE revoked_subjects")
        sql, args = _lookup_query([], ["alice", "user-7"], ["frontend"])
        plan = "\n".join(r[0] for r in await store.fetch("EXPLAIN " + sql, *args))
        assert "revoked_subjects_sub" in plan and "Seq Scan on revoked_subjects" not in plan, plan
    finally:
        await store.close()


async def test_a_client_or_subject_revocation_reads_only_the_tokens_it_revokes(pg_dsn: str) -> None:
    """The rows a subject or client revocation marks are found through the lineage's (…, issued_at) indexes,
    bounded by the cut: a client with many tokens is not read in full under the append lock."""
    from projections.lineage import CLIENT_CUT, SUBJECT_CUT, _issued_before

    store = await _open(pg_dsn)
    try:
        await store.fetch(
            "INSERT INTO lineage (jti, root_jti, depth, subject_iss, subject_sub, origin_iss, origin_sub, client_id, "
            "audience, scope, issued_at, expires_at, position) SELECT 'j' || g, 'j' || g, 1, 'https://idp', 'u' || (g % 50), "
            "'https://idp', 'u' || (g % 50), 'busy', 'api', '', 1000000 + g, 2000000 + g, g FROM generate_series(1, 20000) g"
        )
        await store.fetch("ANALYZE lineage")
        for sql, args in (
            (f"SELECT jti FROM lineage WHERE {CLIENT_CUT}", ("busy", _issued_before(1_000_100.5))),
            (f"SELECT jti FROM lineage WHERE {SUBJECT_CUT}", ("https://idp", "u7", _issued_before(1_000_100.5))),
        ):
            plan = "\n".join(r[0] for r in await store.fetch("EXPLAIN " + sql, *args))
            assert "Index" in plan and "issued_at <" in plan.split("Index Cond:")[1].split("\n")[0], plan
    finally:
        await store.close()


async def test_a_time_filtered_audit_list_starts_at_its_time_mark(pg_dsn: str) -> None:
    """``since`` a minute before the newest of 30,000 rows: the list starts from the time mark (the primary key
    range begins there), instead of reading every older row to drop it."""
    from projections import audit_queries as q

    store = await _open(pg_dsn)
    try:
        await store.fetch(
            "INSERT INTO audit_exchanges (position, at, request_id, client_id, kind, subject_iss, subject_sub, "
            "subject_token_type, issued_jti, root_jti, depth, audience, resource, scope, issued_at, expires_at) "
            "SELECT g, 1.8e9 + g / 10.0, 'r' || g, 'web', 'delegation', 'https://idp', 'alice', 'at', 'j' || g, "
            "'j' || g, 1, 'api', '', 'read', 1800000000 + g / 10, 1800000300 + g / 10 FROM generate_series(1, 30000) g"
        )
        await store.fetch(  # what the runner keeps: where each second's rows begin
            "INSERT INTO audit_time_marks (view, second, first_position) "
            "SELECT 'exchanges', 1800000000 + s, s * 10 FROM generate_series(1, 3000) s"
        )
        await store.fetch("ANALYZE audit_exchanges")
        await store.fetch("ANALYZE audit_time_marks")
        page, sent = await statements_sent(store, lambda: q.exchanges(store, since=1.8e9 + 2940.0, limit=50))
        assert [i["position"] for i in page["items"]] == list(range(29400, 29450))
        ((sql, args),) = sent
        plan = "\n".join(r[0] for r in await store.fetch("EXPLAIN (ANALYZE, COSTS OFF) " + sql, *args))
        assert "audit_time_marks" in plan and "Rows Removed by Filter" not in plan, plan
    finally:
        await store.close()
