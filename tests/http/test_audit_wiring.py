"""The running instance keeps the audit views caught up and serves them under /audit to auditors only."""

from __future__ import annotations

import asyncio

from app.types import TT_ACCESS_TOKEN
from tests.http.conftest import ADMIN_SECRET
from tests.support.harness import SECRETS, decode_claims


async def wait_for_rows(baton, path: str, count: int, **params) -> list[dict]:
    """Poll the audit API until the asynchronous runner has projected ``count`` rows."""
    for _ in range(100):
        response = await baton.http.get(path, params=params, auth=("auditor", SECRETS["auditor"]))
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        if len(items) >= count:
            return items
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never reached {count} rows")


async def test_exchanges_and_denials_reach_the_audit_api(baton):
    """An exchange and a refusal appear in /audit/exchanges and /audit/denied, found by actor and reason."""
    ok = await baton.exchange(baton.user_token(), audience="orders",
                              actor_token=baton.service_token("svc-frontend"), actor_token_type=TT_ACCESS_TOKEN)
    jti = decode_claims(ok.json()["access_token"])["jti"]
    await baton.exchange(baton.user_token(), audience="nowhere")
    (row,) = await wait_for_rows(baton, "/audit/exchanges", 1)
    assert row["issued_jti"] == jti and row["client_id"] == "frontend"
    by_actor = await wait_for_rows(baton, "/audit/exchanges", 1, actor_sub="svc-frontend")
    assert [r["issued_jti"] for r in by_actor] == [jti]
    denied = await wait_for_rows(baton, "/audit/denied", 1)
    assert denied[-1]["reason"] == "unknown_audience"


async def test_audit_api_requires_audit_rights(baton):
    """No credentials: 401; a client without audit rights: 403; the admin credential: 200."""
    assert (await baton.http.get("/audit/exchanges")).status_code == 401
    forbidden = await baton.http.get("/audit/exchanges", auth=("frontend", SECRETS["frontend"]))
    assert forbidden.status_code == 403
    admin = await baton.http.get("/audit/exchanges", headers={"Authorization": f"Bearer {ADMIN_SECRET}"})
    assert admin.status_code == 200
