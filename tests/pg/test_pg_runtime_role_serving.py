"""The documented least-privilege deployment: the owner runs ``baton migrate --grant``, Baton serves as that role.

With ``[store] migrate_on_start = false`` the instance may not create anything, so
every table it writes (the log, the lineage, the runner's and the audit views')
must come from ``baton migrate``.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from app.secrets import hash_secret
from ops import cmd_store
from tests.http.test_audit_wiring import wait_for_rows
from tests.support.harness import decode_claims, make_harness

ADMIN_SECRET = "runtime-role-admin"


def _baton(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="baton")
    cmd_store.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.fixture
async def runtime_role(pg_dsn: str, tmp_path: Path):
    """A schema migrated by the owner with ``baton migrate --grant ROLE``; yields the role's DSN."""
    role = f"baton_rt_{uuid.uuid4().hex[:10]}"
    owner = await asyncpg.connect(pg_dsn, timeout=5)
    await owner.execute(f'CREATE ROLE "{role}" LOGIN')
    config = tmp_path / "owner.toml"
    config.write_text(f'issuer = "https://baton.test"\n[store]\nurl = "{pg_dsn}"\n'
                      f'[signing]\nkeys = "{tmp_path / "owner-keys.json"}"\n')
    assert await asyncio.to_thread(_baton, ["migrate", "--config", str(config), "--grant", role]) == 0
    parts = urlsplit(pg_dsn)
    yield urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))
    await owner.execute(f'DROP OWNED BY "{role}"')
    await owner.execute(f'DROP ROLE "{role}"')
    await owner.close()


async def test_an_instance_under_the_runtime_role_exchanges_and_fills_the_audit_views(runtime_role: str, tmp_path) -> None:
    """Exchange, lineage lookup (introspection), a refusal, and both audit views: all without DDL rights."""
    store = {"url": runtime_role, "migrate_on_start": False}
    async with make_harness(tmp_path, store=store, admin={"token_hash": hash_secret(ADMIN_SECRET, log_n=10)}) as baton:
        ok = await baton.exchange(baton.user_token(), audience="orders")
        assert ok.status_code == 200, ok.text
        token = ok.json()["access_token"]
        introspected = await baton.post("/introspect", {"token": token})
        assert introspected.json()["active"] is True
        refused = await baton.exchange(baton.user_token(), audience="nowhere")
        assert refused.status_code == 400
        (row,) = await wait_for_rows(baton, "/audit/exchanges", 1)
        assert row["issued_jti"] == decode_claims(token)["jti"]
        denied = await wait_for_rows(baton, "/audit/denied", 1)
        assert denied[-1]["reason"] == "unknown_audience"


async def test_baton_migrate_makes_the_row_types_the_runtime_role_cannot(runtime_role: str) -> None:
    """The runtime role may not create types; after ``baton migrate`` every many-row insert of the log, the
    lineage and the audit views finds its row type in place, so the role's rows still go as one array each."""
    import contextlib

    from eventstore.batch import EVENTS_INSERT
    from eventstore.pg_bulk import BulkInserts
    from projections.schema import projection_bulk_inserts

    conn = await asyncpg.connect(runtime_role, timeout=5)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TYPE probe_t AS (a int)")
        bulk = BulkInserts(lambda: contextlib.nullcontext(conn))
        statements = [EVENTS_INSERT, *projection_bulk_inserts()]
        rewritten = [await bulk._bulk_statement(conn, sql) for sql in statements]
        assert [b is not None and b.row_type for b in rewritten] == [True] * len(statements)
    finally:
        await conn.close()
