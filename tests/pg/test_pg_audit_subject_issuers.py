"""Audit lists filtered by ``subject_sub`` alone, on PostgreSQL: one index walk per issuer of that subject.

The same rows, in the same order, page by page, as filtering every row would give (subjects under
several issuers, denied rows without an issuer, other filters alongside), and a heavy subject's page
reads a page's worth of rows, not all of the subject's, whichever plan PostgreSQL caches.
"""

from __future__ import annotations

import random
import re

from eventstore.postgres import PostgresEventStore
from projections import audit_queries as q
from projections.audit import AuditProjection
from projections.lineage import LineageProjection
from projections.runner import ensure_schema
from tests.support.recording import statements_sent

_ISSUERS = ["https://a.example", "https://b.example", "https://c.example"]


async def _open(dsn: str) -> PostgresEventStore:
    store = PostgresEventStore(dsn, [LineageProjection()], command_timeout=60)
    await store.open()
    await ensure_schema(store, [AuditProjection()])
    return store


async def _all_pages(fetch, **filters) -> list[int]:
    positions: list[int] = []
    after = 0
    while True:
        page = await fetch(after=after, limit=7, **filters)
        positions += [item["position"] for item in page["items"]]
        if page["next"] is None:
            return positions
        after = page["next"]


async def test_every_page_holds_what_filtering_every_row_gives(pg_dsn: str) -> None:
    """Random exchanges and denials over three issuers (and none), listed by subject alone with other filters."""
    rng = random.Random(7)
    store = await _open(pg_dsn)
    try:
        exchanges, denials = [], []
        for position in range(1, 401):
            sub, iss = rng.choice(["alice", "bob", "carol"]), rng.choice(_ISSUERS)
            client, at = rng.choice(["web", "batch"]), 1.8e9 + position
            kind, reason = rng.choice(["delegation", "impersonation"]), rng.choice(["revoked", "depth_exceeded"])
            exchanges.append((position, at, f"r{position}", client, kind, iss, sub, "at", f"j{position}",
                              f"j{position}", 1, "api", "", "read", int(at), int(at) + 300))
            denials.append((position, at, "ExchangeDenied", f"d{position}", "/token", client, "invalid_grant",
                            reason, "", rng.choice([*_ISSUERS, None]), sub, "api", "read"))
        await store.fetch(
            "INSERT INTO audit_exchanges (position, at, request_id, client_id, kind, subject_iss, subject_sub, "
            "subject_token_type, issued_jti, root_jti, depth, audience, resource, scope, issued_at, expires_at) "
            "SELECT * FROM unnest($1::bigint[], $2::float8[], $3::text[], $4::text[], $5::text[], $6::text[], "
            "$7::text[], $8::text[], $9::text[], $10::text[], $11::int[], $12::text[], $13::text[], $14::text[], "
            "$15::bigint[], $16::bigint[])",
            *[list(column) for column in zip(*exchanges)],
        )
        await store.fetch(
            "INSERT INTO audit_denied (position, at, event, request_id, endpoint, client_id, error, reason, "
            "description, subject_iss, subject_sub, audience, scope) SELECT * FROM unnest($1::bigint[], $2::float8[], "
            "$3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], "
            "$11::text[], $12::text[], $13::text[])",
            *[list(column) for column in zip(*denials)],
        )
        for view in ("exchanges", "denied"):  # as the runner keeps them: at rises by a second per position
            await store.fetch(
                "INSERT INTO audit_time_marks (view, second, first_position) "
                "SELECT $1, 1800000000 + g, g FROM generate_series(1, 400) g", view
            )
        for sub in ("alice", "bob", "nobody"):
            for client in (None, "web"):
                expected = [r[0] for r in exchanges if r[6] == sub and (client is None or r[3] == client)]
                assert await _all_pages(_bound(q.exchanges, store), subject_sub=sub, client_id=client) == expected
                expected = [r[0] for r in denials if r[10] == sub and (client is None or r[5] == client)]
                assert await _all_pages(_bound(q.denied, store), subject_sub=sub, client_id=client) == expected
            since, until = 1.8e9 + 250, 1.8e9 + 330
            expected = [r[0] for r in exchanges if r[6] == sub and since <= r[1] < until]
            assert await _all_pages(_bound(q.exchanges, store), subject_sub=sub, since=since, until=until) == expected
            expected = [r[0] for r in exchanges if r[6] == sub and r[1] < until and r[4] == "delegation"]
            assert await _all_pages(_bound(q.exchanges, store), subject_sub=sub, until=until, kind="delegation") == expected
            expected = [r[0] for r in denials if r[10] == sub and r[1] >= since and r[7] == "revoked"]
            assert await _all_pages(_bound(q.denied, store), subject_sub=sub, since=since, reason="revoked") == expected
    finally:
        await store.close()


def _bound(query, store: PostgresEventStore):
    async def fetch(**filters):
        return await query(store, **filters)

    return fetch


async def test_a_heavy_subjects_page_reads_a_page_of_rows_in_any_cached_plan(pg_dsn: str) -> None:
    """30,000 of 300,000 rows are one subject's: with the generic plan PostgreSQL caches after five runs, the
    page still reads tens of rows, not the subject's 30,000 (which it used to read and sort: 23–28 ms)."""
    store = await _open(pg_dsn)
    try:
        await store.fetch(
            "INSERT INTO audit_exchanges (position, at, request_id, client_id, kind, subject_iss, subject_sub, "
            "subject_token_type, issued_jti, root_jti, depth, audience, resource, scope, issued_at, expires_at) "
            "SELECT g, 1.8e9 + g / 10.0, 'r' || g, 'web', 'delegation', 'https://idp', "
            "CASE WHEN g % 10 = 0 THEN 'alice' ELSE 'u' || (g % 20000) END, 'at', 'j' || g, 'j' || g, 1, 'api', '', "
            "'read', 1800000000 + g / 10, 1800000300 + g / 10 FROM generate_series(1, 300000) g"
        )
        await store.fetch("ANALYZE audit_exchanges")
        page, sent = await statements_sent(store, lambda: q.exchanges(store, subject_sub="alice", limit=50))
        assert [i["position"] for i in page["items"]] == list(range(10, 510, 10))
        ((sql, args),) = sent
        # the plan PostgreSQL caches for the statement, whatever the values: PREPARE, then EXPLAIN EXECUTE it
        literals = ", ".join(str(a) if isinstance(a, int) else "'" + str(a).replace("'", "''") + "'" for a in args)
        async with store.transaction(write_lock=False) as tx:
            await tx.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            await tx.execute(f"PREPARE page AS {sql}")
            plan = "\n".join(r[0] for r in await tx.fetch(f"EXPLAIN (ANALYZE, COSTS OFF) EXECUTE page({literals})"))
            await tx.execute("DEALLOCATE page")
        read = [int(rows) * int(loops) for rows, loops in re.findall(r"rows=(\d+) loops=(\d+)", plan)]
        removed = [int(n) for n in re.findall(r"Rows Removed by Filter: (\d+)", plan)]
        assert max(read) <= 200 and sum(removed) <= 1000, plan
    finally:
        await store.close()
