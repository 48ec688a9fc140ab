"""Lineage-aware introspection (RFC 7662), cascading revocation (RFC 7009), admin revocation."""

from __future__ import annotations

import asyncio
import time

import pytest
from joserfc import jws

from app.secrets import hash_secret
from app.types import TT_ACCESS_TOKEN
from ops.cli import main as baton_cli
from tests.support.harness import BATON, decode_claims, decode_header, make_harness

from tests.http.conftest import ADMIN_SECRET




async def chain(baton) -> tuple[str, str, str]:
    """A (frontend→billing), B (billing→orders), C (orders→ledger): a three-token lineage."""
    a = (await baton.exchange(baton.user_token(), audience="billing")).json()["access_token"]
    b = (await baton.exchange(a, client="billing", audience="orders")).json()["access_token"]
    c = (await baton.exchange(b, client="orders", audience="ledger")).json()["access_token"]
    return a, b, c


async def introspect(baton, token: str, client: str = "frontend", **kwargs) -> dict:
    response = await baton.post("/introspect", {"token": token}, client=client, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    return response.json()


async def revoke(baton, token: str, client: str, **form) -> int:
    response = await baton.post("/revoke", {"token": token, **form}, client=client)
    return response.status_code


async def test_introspection_of_an_active_token_reports_lineage(baton):
    """An active token: standard RFC 7662 fields plus act, depth and root jti."""
    a, b, _ = await chain(baton)
    body = await introspect(baton, b)
    claims_b, claims_a = decode_claims(b), decode_claims(a)
    assert body["active"] is True
    assert body["sub"] == "alice" and body["aud"] == "orders" and body["client_id"] == "billing"
    assert body["iss"] == BATON and body["exp"] == claims_b["exp"] and body["jti"] == claims_b["jti"]
    assert body["token_type"] == "Bearer"
    assert "scope" not in body  # A held only billing scopes, so nothing for orders survived the narrowing
    assert body["depth"] == 2 and body["root_jti"] == claims_a["jti"] and body["parent_jti"] == claims_a["jti"]


async def test_revoking_the_middle_of_a_chain(baton):
    """Revoke B in A→B→C: B and C inactive and unexchangeable, A still active."""
    a, b, c = await chain(baton)
    assert await revoke(baton, b, client="billing") == 200
    assert (await introspect(baton, a))["active"] is True
    assert (await introspect(baton, b)) == {"active": False}
    assert (await introspect(baton, c)) == {"active": False}
    refused = await baton.exchange(c, client="orders", audience="ledger")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"
    assert (await baton.events("ExchangeDenied"))[-1].reason == "subject_revoked"
    again = await baton.exchange(a, client="billing", audience="orders")
    assert again.status_code == 200
    (event,) = await baton.events("TokenRevoked")
    assert event.jti == decode_claims(b)["jti"] and event.cascade and event.by == "client:billing"


async def test_revoked_actor_token_is_refused(baton):
    """A Baton token that was revoked cannot serve as an actor token either."""
    a, _, _ = await chain(baton)
    await revoke(baton, a, client="frontend")
    response = await baton.exchange(baton.user_token(), audience="orders", actor_token=a, actor_token_type=TT_ACCESS_TOKEN)
    assert response.status_code == 400
    assert (await baton.events("ExchangeDenied"))[-1].reason == "actor_revoked"


async def test_a_client_may_revoke_tokens_derived_from_its_own(baton):
    """frontend holds A, so it may revoke C (derived from A); orders may not revoke A."""
    a, _, c = await chain(baton)
    assert await revoke(baton, a, client="orders") == 400
    assert (await introspect(baton, a))["active"] is True
    assert await revoke(baton, c, client="frontend") == 200
    assert (await introspect(baton, c))["active"] is False


@pytest.mark.parametrize("token", ["not-a-token", "a.b.c"])
async def test_revoking_unknown_or_invalid_tokens_is_200(baton, token):
    """RFC 7009 §2.2: invalid tokens do not cause an error response, and nothing is recorded."""
    assert await revoke(baton, token, client="frontend") == 200
    assert await baton.events("TokenRevoked") == []


async def test_token_type_hint_is_honoured_but_not_trusted(baton):
    """A wrong ``token_type_hint`` still finds and revokes the access token."""
    a, _, _ = await chain(baton)
    assert await revoke(baton, a, client="frontend", token_type_hint="refresh_token") == 200
    assert (await introspect(baton, a))["active"] is False


async def test_revoking_twice_records_once(baton):
    """A second revocation of a revoked token is a quiet 200."""
    a, _, _ = await chain(baton)
    await revoke(baton, a, client="frontend")
    await revoke(baton, a, client="frontend")
    assert len(await baton.events("TokenRevoked")) == 1


async def test_introspection_inactive_cases(baton, monkeypatch):
    """Foreign, unknown (forged jti) and expired tokens are ``active: false``."""
    foreign = baton.user_token()
    assert await introspect(baton, foreign) == {"active": False}
    unknown = baton.runtime.keyring.sign({"iss": BATON, "sub": "x", "jti": "never-issued", "exp": int(time.time()) + 60, "iat": int(time.time())})
    assert await introspect(baton, unknown) == {"active": False}
    a, _, _ = await chain(baton)
    real_time = time.time
    monkeypatch.setattr("app.endpoints.time.time", lambda: real_time() + 3600)
    assert await introspect(baton, a) == {"active": False}


async def test_introspection_requires_client_authentication(baton):
    """An unauthenticated introspection is 401 ``invalid_client``."""
    response = await baton.http.post("/introspect", data={"token": "x"})
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


async def test_introspection_as_signed_jwt(baton):
    """Accept: application/token-introspection+jwt returns an RFC 9701 signed response."""
    a, _, _ = await chain(baton)
    response = await baton.post("/introspect", {"token": a}, headers={"Accept": "application/token-introspection+jwt"})
    assert response.headers["content-type"].startswith("application/token-introspection+jwt")
    signed = response.text
    assert decode_header(signed)["typ"] == "token-introspection+jwt"
    jws.deserialize_compact(signed, baton.runtime.keyring.verification_keys(), algorithms=["ES256"])
    claims = decode_claims(signed)
    assert claims["iss"] == BATON and claims["aud"] == "frontend"
    assert claims["token_introspection"]["active"] is True and claims["token_introspection"]["depth"] == 1


async def admin(baton, form: dict, secret: str = ADMIN_SECRET):
    return await baton.http.post("/admin/revoke", data=form, headers={"Authorization": f"Bearer {secret}"})


async def test_admin_revokes_every_token_of_a_subject(baton):
    """Admin subject revocation: alice's earlier tokens (and descendants) die; bob's live; old alice tokens are refused."""
    old_alice = baton.user_token(iat=int(time.time()) - 30)
    a, b, c = await chain(baton)
    bob = (await baton.exchange(baton.user_token("bob"), audience="orders")).json()["access_token"]
    response = await admin(baton, {"iss": baton.idp.issuer, "sub": "alice", "before": str(time.time() + 1), "reason": "compromised"})
    assert response.status_code == 200 and response.json()["event_type"] == "SubjectRevoked"
    for token in (a, b, c):
        assert (await introspect(baton, token))["active"] is False
    assert (await introspect(baton, bob))["active"] is True
    exchanged_before = len(await baton.events("TokenExchanged"))
    refused = await baton.exchange(old_alice, audience="orders")
    assert refused.status_code == 400 and (await baton.events("ExchangeDenied"))[-1].reason == "subject_revoked"
    assert len(await baton.events("TokenExchanged")) == exchanged_before  # refused before anything was written


async def test_admin_revokes_a_client(baton):
    """Client revocation kills the client's tokens and what was derived from them."""
    a, b, _ = await chain(baton)
    other = (await baton.exchange(baton.user_token(), client="poster", audience="orders")).json()["access_token"]
    response = await admin(baton, {"client_id": "frontend"})
    assert response.status_code == 200
    assert (await introspect(baton, a))["active"] is False and (await introspect(baton, b))["active"] is False
    assert (await introspect(baton, other))["active"] is True


async def test_admin_endpoint_refuses_bad_credentials_and_requests(baton):
    """Wrong admin secret is 401, a non-admin client 403, an ambiguous request 400."""
    assert (await admin(baton, {"jti": "x"}, secret="wrong")).status_code == 401
    response = await baton.post("/admin/revoke", {"jti": "x"}, client="frontend")
    assert response.status_code == 403
    assert (await admin(baton, {"jti": "x", "client_id": "y"})).status_code == 400
    assert (await admin(baton, {"sub": "alice"})).status_code == 400
    assert await baton.events("TokenRevoked") == []


async def test_admin_jti_revocation_cascades(baton):
    """Admin revocation by jti takes the descendants down too."""
    a, b, c = await chain(baton)
    assert (await admin(baton, {"jti": decode_claims(a)["jti"]})).status_code == 200
    for token in (a, b, c):
        assert (await introspect(baton, token))["active"] is False


async def test_cli_revoke_reaches_a_running_instance(baton, tmp_path):
    """``baton revoke --jti`` appends to the same store; the running instance refuses the token at once."""
    a, b, _ = await chain(baton)
    config_file = tmp_path / "baton.toml"
    config_file.write_text(
        f'issuer = "{BATON}"\n[store]\nurl = "{baton.config.store.url}"\n[signing]\nkeys = "{baton.config.signing.keys}"\n'
    )
    code = await asyncio.to_thread(baton_cli, ["revoke", "--config", str(config_file), "--jti", decode_claims(b)["jti"], "--reason", "test"])
    assert code == 0
    assert (await introspect(baton, b))["active"] is False
    assert (await introspect(baton, a))["active"] is True
    (event,) = await baton.events("TokenRevoked")
    assert event.by.startswith("operator:") and event.reason == "test"


async def test_baton_actor_token_presented_by_a_stranger(baton):
    """A Baton token used as actor_token must come from its client or its audience, like a subject token."""
    a, _, _ = await chain(baton)  # a: issued to frontend for billing
    response = await baton.exchange(baton.user_token(), client="poster", audience="orders",
                                    actor_token=a, actor_token_type=TT_ACCESS_TOKEN)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert (await baton.events("ExchangeDenied"))[-1].reason == "actor_not_presentable"
    own = await baton.exchange(baton.user_token(), client="frontend", audience="orders",
                               actor_token=a, actor_token_type=TT_ACCESS_TOKEN)
    assert own.status_code == 200, own.text
