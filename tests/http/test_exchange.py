"""POST /token: successful exchanges by impersonation and delegation, over HTTP to the ASGI app."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from joserfc import jws
from joserfc.jwk import KeySet

from app.types import TT_ACCESS_TOKEN, TT_JWT
from tests.support.harness import BATON, decode_claims, decode_header, make_harness




async def verify_with_jwks(baton, token: str) -> dict:
    """Verify an issued token with the keys Baton publishes at /jwks."""
    published = (await baton.http.get("/jwks")).json()
    keys = KeySet.import_key_set(published)
    alg = decode_header(token)["alg"]
    jws.deserialize_compact(token, keys, algorithms=[alg])  # raises unless the signature verifies
    return decode_claims(token)


async def test_impersonation_issues_a_narrower_rfc9068_token(baton):
    """A user token for Baton becomes a token for billing with only the requested scope."""
    subject = baton.user_token(email="alice@example.com", department="sales")
    response = await baton.exchange(subject, audience="billing", scope="billing:read")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["issued_token_type"] == TT_ACCESS_TOKEN
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "billing:read"
    assert 0 < body["expires_in"] <= 120  # the billing audience's ttl
    token = body["access_token"]
    header = decode_header(token)
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256" and header["kid"] == baton.runtime.keyring.kid
    claims = await verify_with_jwks(baton, token)
    assert claims["iss"] == BATON and claims["sub"] == "alice" and claims["aud"] == "billing"
    assert claims["client_id"] == "frontend" and claims["scope"] == "billing:read"
    assert claims["exp"] - claims["iat"] == body["expires_in"]
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    assert "act" not in claims
    assert claims["email"] == "alice@example.com" and claims["dept"] == "sales" and claims["tenant"] == "eu"
    assert "department" not in claims


async def test_exchange_is_recorded_before_the_token_is_returned(baton):
    """The TokenExchanged event holds the issued jti, the token's SHA-256, the chain position and the request id."""
    response = await baton.exchange(baton.user_token(), audience="orders", headers={"X-Request-ID": "req-42"})
    token = response.json()["access_token"]
    claims = decode_claims(token)
    (event,) = await baton.events("TokenExchanged")
    assert event.issued_jti == claims["jti"]
    assert event.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert event.request_id == "req-42" and response.headers["x-request-id"] == "req-42"
    assert (event.client_id, event.kind, event.subject_iss, event.subject_sub) == ("frontend", "impersonation", baton.idp.issuer, "alice")
    assert (event.parent_jti, event.root_jti, event.depth) == (None, claims["jti"], 1)
    assert event.audience == ["orders"] and event.scope == ["orders:read"]
    assert event.expires_at == claims["exp"]
    row = await baton.runtime.lineage.get(claims["jti"])
    assert row is not None and row.depth == 1


async def test_scope_defaults_to_everything_grantable(baton):
    """Without ``scope`` the token gets subject ∩ client ∩ audience scopes."""
    body = (await baton.exchange(baton.user_token(), audience="billing")).json()
    assert body["scope"] == "billing:read billing:write"


async def test_resource_indicator_selects_the_audience(baton):
    """``resource`` (RFC 8707) naming a configured resource selects its audience."""
    response = await baton.exchange(baton.user_token(), resource="https://billing.example.com/api")
    assert response.status_code == 200, response.text
    assert decode_claims(response.json()["access_token"])["aud"] == "billing"


async def test_requested_token_type_jwt(baton):
    """``requested_token_type`` jwt is honoured and reported as ``issued_token_type``."""
    body = (await baton.exchange(baton.user_token(), audience="orders", requested_token_type=TT_JWT)).json()
    assert body["issued_token_type"] == TT_JWT


async def test_lifetime_never_outlives_the_subject_token(baton):
    """A subject token expiring in 40 s yields a token expiring no later."""
    exp = int(time.time()) + 40
    subject = baton.user_token(exp=exp)
    body = (await baton.exchange(subject, audience="orders")).json()
    assert decode_claims(body["access_token"])["exp"] <= exp
    assert body["expires_in"] <= 40


async def test_delegation_with_actor_token_nests_act(baton):
    """An actor token makes a delegation: ``act`` names the actor and its issuer."""
    response = await baton.exchange(
        baton.user_token(), audience="orders",
        actor_token=baton.service_token("svc-frontend"), actor_token_type=TT_ACCESS_TOKEN,
    )
    assert response.status_code == 200, response.text
    claims = decode_claims(response.json()["access_token"])
    assert claims["sub"] == "alice"
    assert claims["act"] == {"sub": "svc-frontend", "iss": baton.idp.issuer}
    (event,) = await baton.events("TokenExchanged")
    assert event.kind == "delegation" and event.actor_sub == "svc-frontend" and event.act == claims["act"]


async def test_client_as_actor_mode(baton):
    """A client with ``actor = "client"`` delegates without an actor token; it is recorded as the actor."""
    response = await baton.exchange(baton.user_token(), client="poster", audience="orders")
    assert response.status_code == 200, response.text
    claims = decode_claims(response.json()["access_token"])
    assert claims["act"] == {"sub": "poster", "client_id": "poster"}


async def test_may_act_admits_the_named_actor(baton):
    """A subject token whose ``may_act`` names the actor is exchanged by delegation."""
    subject = baton.user_token(may_act={"sub": "svc-frontend", "iss": baton.idp.issuer})
    response = await baton.exchange(
        subject, audience="orders", actor_token=baton.service_token("svc-frontend"), actor_token_type=TT_ACCESS_TOKEN
    )
    assert response.status_code == 200, response.text


async def test_three_delegations_nest_all_actors_in_order(baton):
    """frontend → billing → orders: the final token's ``act`` nests all three actors, newest outermost."""
    actor = {"actor_token_type": TT_ACCESS_TOKEN}
    first = await baton.exchange(
        baton.user_token(), client="frontend", audience="billing", scope="billing:read",
        actor_token=baton.service_token("svc-frontend"), **actor,
    )
    t1 = first.json()["access_token"]
    # billing is t1's audience, so it may exchange it onward
    second = await baton.exchange(
        t1, client="billing", audience="orders", actor_token=baton.service_token("svc-billing"), **actor
    )
    assert second.status_code == 200, second.text
    t2 = second.json()["access_token"]
    third = await baton.exchange(
        t2, client="orders", audience="ledger", actor_token=baton.service_token("svc-orders"), **actor
    )
    assert third.status_code == 200, third.text
    claims = decode_claims(third.json()["access_token"])
    assert claims["sub"] == "alice"
    assert claims["act"] == {
        "sub": "svc-orders", "iss": baton.idp.issuer,
        "act": {"sub": "svc-billing", "iss": baton.idp.issuer, "act": {"sub": "svc-frontend", "iss": baton.idp.issuer}},
    }
    events = await baton.events("TokenExchanged")
    assert [e.depth for e in events] == [1, 2, 3]
    assert events[2].parent_jti == events[1].issued_jti and events[2].root_jti == events[0].issued_jti


async def test_chained_exchange_scope_only_narrows(baton):
    """A chained exchange cannot regain scopes the parent token lacked."""
    t1 = (await baton.exchange(baton.user_token(), audience="billing", scope="billing:read")).json()["access_token"]
    # t1 holds only billing:read; orders:read is not in it, so billing gets no orders scope
    response = await baton.exchange(t1, client="billing", audience="orders", scope="orders:read")
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"


async def test_discovery_documents(baton):
    """Both well-known documents describe the token, introspection, revocation endpoints and JWKS."""
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        doc = (await baton.http.get(path)).json()
        assert doc["issuer"] == BATON
        assert doc["token_endpoint"] == f"{BATON}/token"
        assert doc["introspection_endpoint"] == f"{BATON}/introspect"
        assert doc["revocation_endpoint"] == f"{BATON}/revoke"
        assert doc["jwks_uri"] == f"{BATON}/jwks"
        assert "urn:ietf:params:oauth:grant-type:token-exchange" in doc["grant_types_supported"]
        assert set(doc["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post", "private_key_jwt"}
        assert "ES256" in doc["access_token_signing_alg_values_supported"]


async def test_jwks_publishes_public_keys_only(baton):
    """/jwks holds the public signing key: no private members."""
    keys = (await baton.http.get("/jwks")).json()["keys"]
    assert [k["kid"] for k in keys] == [baton.runtime.keyring.kid]
    assert all("d" not in k for k in keys)


@pytest.mark.parametrize("algorithm,alg", [("RS256", "RS256"), ("PS256", "PS256"), ("EdDSA", "Ed25519")])
async def test_other_signing_algorithms(tmp_path, algorithm, alg):
    """RS256, PS256 and EdDSA signing keys issue tokens that verify with the published JWKS."""
    async with make_harness(tmp_path, signing={"keys": str(tmp_path / "k.json"), "algorithm": algorithm}) as baton:
        token = (await baton.exchange(baton.user_token(), audience="orders")).json()["access_token"]
        assert decode_header(token)["alg"] == alg
        await verify_with_jwks(baton, token)


async def test_health_and_readiness(baton):
    """/healthz answers; /readyz reports the store and cache."""
    assert (await baton.http.get("/healthz")).json() == {"status": "ok"}
    ready = (await baton.http.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["store"] == "ok" and ready["cache"] == "ok"


async def test_source_address_behind_a_trusted_proxy(tmp_path):
    """With trust_forwarded_for, the event records the proxy-appended (last) X-Forwarded-For hop."""
    async with make_harness(tmp_path, server={"trust_forwarded_for": True}) as baton:
        await baton.exchange(baton.user_token(), audience="orders", headers={"X-Forwarded-For": "6.6.6.6, 10.1.2.3"})
        (event,) = await baton.events("TokenExchanged")
        assert event.source_address == "10.1.2.3"


async def test_forwarded_for_ignored_by_default(baton):
    """Without trust_forwarded_for a caller cannot choose the recorded address."""
    await baton.exchange(baton.user_token(), audience="orders", headers={"X-Forwarded-For": "6.6.6.6"})
    (event,) = await baton.events("TokenExchanged")
    assert event.source_address != "6.6.6.6"


async def test_private_key_jwt_client_authentication(tmp_path):
    """RFC 7523: a signed client assertion authenticates; the same assertion twice is refused (single-use jti)."""
    import uuid

    from joserfc.jwk import ECKey

    from app.config import config_from_dict
    from app.types import CLIENT_ASSERTION_TYPE_JWT, GRANT_TOKEN_EXCHANGE
    from tests.support.fake_issuer import FakeIssuer
    from tests.support.harness import Harness, base_config

    key = ECKey.generate_key("P-256", private=True, auto_kid=True)
    idp = FakeIssuer("https://idp.test")
    raw = base_config(tmp_path, idp)
    raw["clients"].append({
        "client_id": "signer", "auth_method": "private_key_jwt",
        "jwks": {"keys": [dict(key.as_dict(private=False), kid=key.kid)]},
        "audiences": ["orders"], "scopes": ["orders:read"], "impersonation": True,
    })
    async with Harness(config_from_dict(raw), idp) as baton:
        now = int(time.time())
        claims = {"iss": "signer", "sub": "signer", "aud": f"{BATON}/token", "iat": now, "exp": now + 60,
                  "jti": uuid.uuid4().hex}
        assertion = jws.serialize_compact({"alg": "ES256", "kid": key.kid, "typ": "JWT"},
                                          json.dumps(claims).encode(), key)
        form = {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": baton.user_token(),
                "subject_token_type": TT_ACCESS_TOKEN, "audience": "orders",
                "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT, "client_assertion": assertion}
        first = await baton.http.post("/token", data=form)
        assert first.status_code == 200, first.text
        assert decode_claims(first.json()["access_token"])["client_id"] == "signer"
        replay = await baton.http.post("/token", data={**form, "subject_token": baton.user_token()})
        assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"
        assert (await baton.events("ClientAuthFailed"))[-1].reason == "assertion_replayed"
