"""POST /token refusals: every RFC 6749 §5.2 / RFC 8693 §2.2.2 error, recorded, nothing issued."""

from __future__ import annotations

import time

import pytest

from app.types import GRANT_TOKEN_EXCHANGE, TT_ACCESS_TOKEN, TT_ID_TOKEN
from app.config import config_from_dict
from tests.support.fake_issuer import FakeIssuer
from tests.http.conftest import ADMIN_SECRET
from tests.support.harness import SECRETS, Harness, base_config, make_harness




async def assert_refused(baton, response, status: int, error: str, reason: str | None = None, issued: int = 0) -> None:
    """The response is the RFC error, not cached, and the log holds a denial and no issued token."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert isinstance(body["error_description"], str) and body["error_description"]
    assert response.headers["cache-control"] == "no-store"
    assert len(await baton.events("TokenExchanged")) == issued, "a refused request must issue nothing"
    denials = await baton.events("ClientAuthFailed" if error == "invalid_client" else "ExchangeDenied")
    assert denials, "the refusal must be recorded"
    if reason is not None:
        assert denials[-1].reason == reason


async def test_wrong_grant_type(baton):
    """A grant other than token exchange is ``unsupported_grant_type``."""
    response = await baton.exchange(baton.user_token(), grant_type="client_credentials")
    await assert_refused(baton, response, 400, "unsupported_grant_type")


@pytest.mark.parametrize("missing", ["grant_type", "subject_token", "subject_token_type"])
async def test_missing_required_parameter(baton, missing):
    """Each required parameter's absence is ``invalid_request``."""
    response = await baton.exchange(baton.user_token(), audience="orders", **{missing: None})
    await assert_refused(baton, response, 400, "invalid_request", "missing_parameter")


async def test_repeated_parameter(baton):
    """A repeated single-valued parameter is ``invalid_request`` (RFC 6749 §3.2)."""
    form = [("grant_type", GRANT_TOKEN_EXCHANGE), ("subject_token", baton.user_token()),
            ("subject_token_type", TT_ACCESS_TOKEN), ("scope", "orders:read"), ("scope", "billing:read")]
    body = "&".join(f"{k}={v}" for k, v in form)
    response = await baton.http.post("/token", content=body, auth=("frontend", SECRETS["frontend"]),
                                     headers={"content-type": "application/x-www-form-urlencoded"})
    await assert_refused(baton, response, 400, "invalid_request", "repeated_parameter")


async def test_wrong_content_type(baton):
    """A JSON body is ``invalid_request``."""
    response = await baton.http.post("/token", json={"grant_type": GRANT_TOKEN_EXCHANGE},
                                     auth=("frontend", SECRETS["frontend"]))
    await assert_refused(baton, response, 400, "invalid_request", "wrong_content_type")


async def test_oversized_body(baton):
    """A body over ``server.max_body_bytes`` is ``invalid_request``, as JSON."""
    response = await baton.exchange(baton.user_token(), padding="x" * 70_000)
    await assert_refused(baton, response, 400, "invalid_request", "body_too_large")


async def test_unknown_subject_token_type(baton):
    """A subject_token_type Baton does not accept is ``invalid_request``."""
    response = await baton.exchange(baton.user_token(), subject_token_type="urn:ietf:params:oauth:token-type:saml2")
    await assert_refused(baton, response, 400, "invalid_request", "unsupported_token_type")


async def test_actor_token_without_type(baton):
    """actor_token without actor_token_type is ``invalid_request``."""
    response = await baton.exchange(baton.user_token(), audience="orders", actor_token=baton.service_token("svc"))
    await assert_refused(baton, response, 400, "invalid_request", "missing_parameter")


async def test_actor_token_type_without_token(baton):
    """actor_token_type alone is ``invalid_request`` (RFC 8693 §2.1)."""
    response = await baton.exchange(baton.user_token(), audience="orders", actor_token_type=TT_ACCESS_TOKEN)
    await assert_refused(baton, response, 400, "invalid_request", "unexpected_parameter")


async def test_unsupported_requested_token_type(baton):
    """Baton issues access tokens and JWTs only: a refresh token request is ``invalid_request``."""
    response = await baton.exchange(baton.user_token(), audience="orders",
                                    requested_token_type="urn:ietf:params:oauth:token-type:refresh_token")
    await assert_refused(baton, response, 400, "invalid_request", "unsupported_requested_token_type")


@pytest.mark.parametrize(
    "params,reason",
    [
        ({"audience": "nowhere"}, "unknown_audience"),
        ({"audience": "ledger"}, "audience_not_allowed"),
        ({"resource": "https://unknown.example.com"}, "unknown_resource"),
        ({"resource": "https://billing.example.com/api#frag"}, "malformed_resource"),
        ({"resource": "not-absolute"}, "malformed_resource"),
        ({"audience": ["billing", "orders"]}, "multiple_targets"),
        ({}, "no_target"),
    ],
)
async def test_invalid_target(baton, params, reason):
    """Unknown, disallowed, malformed or ambiguous targets are ``invalid_target``."""
    response = await baton.exchange(baton.user_token(), **params)
    await assert_refused(baton, response, 400, "invalid_target", reason)


async def test_resource_cannot_bypass_the_audience_allow_list(tmp_path):
    """A resource that maps to an audience the client may not use is refused."""
    async with make_harness(tmp_path) as baton:
        response = await baton.exchange(baton.user_token(), client="poster", resource="https://billing.example.com/api")
        await assert_refused(baton, response, 400, "invalid_target", "audience_not_allowed")


@pytest.mark.parametrize(
    "scope,reason",
    [("billing:read billing:admin", "scope_not_allowed"), ("orders:read", "scope_not_allowed"), ('bad"scope', "malformed_scope")],
)
async def test_invalid_scope(baton, scope, reason):
    """Scope widening (not in subject ∩ client ∩ audience) or malformed scope is ``invalid_scope``."""
    response = await baton.exchange(baton.user_token(), audience="billing", scope=scope)
    await assert_refused(baton, response, 400, "invalid_scope", reason)


async def test_scope_the_subject_lacks(baton):
    """A scope the client and audience allow but the subject token lacks is refused."""
    subject = baton.idp.mint(baton.idp.claims(scope="billing:read"))
    response = await baton.exchange(subject, audience="billing", scope="billing:write")
    await assert_refused(baton, response, 400, "invalid_scope", "scope_not_allowed")


async def test_client_without_exchange_rights(baton):
    """A client allowed no audience is ``unauthorized_client``."""
    response = await baton.exchange(baton.user_token(), client="noexchange", audience="orders")
    await assert_refused(baton, response, 400, "unauthorized_client", "no_exchange_rights")


async def test_impersonation_not_permitted(tmp_path):
    """A delegation-only client without an actor token is told to send one; an impersonation-only one may not delegate."""
    idp = FakeIssuer("https://idp.test")
    raw = base_config(tmp_path / "d", idp)
    raw["clients"][0]["impersonation"] = False
    async with Harness(config_from_dict(raw), idp) as baton:
        response = await baton.exchange(baton.user_token(), audience="orders")
        await assert_refused(baton, response, 400, "invalid_request", "actor_token_required")
    raw["clients"][0]["delegation"] = False
    raw["clients"][0]["impersonation"] = True
    raw["store"]["url"] = f"sqlite:///{tmp_path}/e2.db"
    async with Harness(config_from_dict(raw), idp) as baton:
        response = await baton.exchange(baton.user_token(), audience="orders",
                                        actor_token=baton.service_token("svc"), actor_token_type=TT_ACCESS_TOKEN)
        await assert_refused(baton, response, 400, "unauthorized_client", "delegation_not_allowed")


@pytest.mark.parametrize(
    "may_act",
    [{"sub": "svc-other"}, {"sub": "svc-frontend", "iss": "https://other-idp.test"}, "svc-frontend"],
)
async def test_may_act_refuses_other_actors(baton, may_act):
    """may_act naming another actor, another issuer, or malformed, refuses delegation."""
    subject = baton.user_token(may_act=may_act)
    response = await baton.exchange(subject, audience="orders", actor_token=baton.service_token("svc-frontend"),
                                    actor_token_type=TT_ACCESS_TOKEN)
    await assert_refused(baton, response, 400, "invalid_request")
    assert (await baton.events("ExchangeDenied"))[-1].reason.startswith("may_act")


async def test_may_act_restricts_impersonation_to_the_named_party(baton):
    """Impersonation by a client that may_act does not name is refused."""
    response = await baton.exchange(baton.user_token(may_act={"sub": "someone-else"}), audience="orders")
    await assert_refused(baton, response, 400, "invalid_request", "may_act_mismatch")


@pytest.mark.parametrize(
    "claims,reason",
    [
        ({"exp": int(time.time()) - 120}, "subject_expired"),
        ({"iss": "https://evil.test"}, "subject_untrusted_issuer"),
        ({"iss": "https://idp.test.evil.com"}, "subject_untrusted_issuer"),
        ({"aud": "someone-else"}, "subject_wrong_audience"),
    ],
)
async def test_unacceptable_subject_token(baton, claims, reason):
    """Expired, untrusted-issuer or wrong-audience subject tokens are ``invalid_request``."""
    subject = baton.idp.mint(baton.idp.claims(scope="orders:read", **claims))
    response = await baton.exchange(subject, audience="orders")
    await assert_refused(baton, response, 400, "invalid_request", reason)


async def test_garbage_subject_token(baton):
    """A subject token that is not a JWS is ``invalid_request``, never a 500."""
    response = await baton.exchange("not.a.token", audience="orders")
    await assert_refused(baton, response, 400, "invalid_request")


async def test_id_token_typed_as_access_token_refused(baton):
    """An ID token presented where only access tokens are accepted by type rules is refused."""
    subject = baton.idp.mint(baton.idp.claims(scope="orders:read"), header_overrides={"typ": "at+jwt"})
    response = await baton.exchange(subject, audience="orders", subject_token_type=TT_ID_TOKEN)
    await assert_refused(baton, response, 400, "invalid_request", "subject_wrong_type")


async def test_baton_token_presented_by_a_stranger(baton):
    """A Baton token may be exchanged only by its client or a client in its audience."""
    t1 = (await baton.exchange(baton.user_token(), audience="billing")).json()["access_token"]
    response = await baton.exchange(t1, client="orders", audience="ledger")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert (await baton.events("ExchangeDenied"))[-1].reason == "subject_not_presentable"


@pytest.mark.parametrize(
    "kwargs,reason",
    [
        ({"auth": "none"}, "no_client_auth"),
        ({"client": "frontend", "auth": "client_secret_post"}, "wrong_auth_method"),
    ],
)
async def test_client_authentication_failures(baton, kwargs, reason):
    """No credentials, or the wrong method for the client, is 401 ``invalid_client``."""
    response = await baton.exchange(baton.user_token(), audience="orders", **kwargs)
    await assert_refused(baton, response, 401, "invalid_client", reason)


async def test_wrong_secret_gets_a_basic_challenge(baton):
    """A wrong Basic secret is 401 ``invalid_client`` with ``WWW-Authenticate: Basic``."""
    response = await baton.http.post("/token", data={"grant_type": GRANT_TOKEN_EXCHANGE}, auth=("frontend", "wrong"))
    await assert_refused(baton, response, 401, "invalid_client", "bad_secret")
    assert response.headers["www-authenticate"].startswith("Basic")


async def test_unknown_client(baton):
    """An unknown client id is 401 ``invalid_client``."""
    response = await baton.http.post("/token", data={"grant_type": GRANT_TOKEN_EXCHANGE}, auth=("ghost", "x"))
    await assert_refused(baton, response, 401, "invalid_client", "unknown_client")


async def test_store_down_answers_503_and_issues_nothing(baton):
    """With the event store unreachable, /token is 503 ``temporarily_unavailable`` with Retry-After."""
    subject = baton.user_token()
    await baton.runtime.store.close()
    response = await baton.exchange(subject, audience="orders")
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert int(response.headers["retry-after"]) >= 1
    assert "access_token" not in response.json()


async def test_depth_limit_global_and_per_audience(tmp_path):
    """Depth = parent depth + 1; above ``max_depth`` (global or the audience's) is refused."""
    idp = FakeIssuer("https://idp.test")
    raw = base_config(tmp_path, idp, tokens={"ttl": 300, "max_depth": 1})
    async with Harness(config_from_dict(raw), idp) as baton:
        t1 = (await baton.exchange(baton.user_token(), audience="billing")).json()["access_token"]
        response = await baton.exchange(t1, client="billing", audience="orders")
        await assert_refused(baton, response, 400, "invalid_request", "depth_exceeded", issued=1)
    raw = base_config(tmp_path / "b", idp)
    raw["audiences"][1]["max_depth"] = 1  # orders: only first-hand exchanges
    async with Harness(config_from_dict(raw), idp) as baton:
        t1 = (await baton.exchange(baton.user_token(), audience="billing")).json()["access_token"]
        response = await baton.exchange(t1, client="billing", audience="orders")
        assert response.status_code == 400 and response.json()["error"] == "invalid_request"
        assert (await baton.events("ExchangeDenied"))[-1].reason == "depth_exceeded"
        direct = await baton.exchange(baton.user_token(), audience="orders")
        assert direct.status_code == 200


async def test_unpaired_surrogate_in_a_trusted_token_is_invalid_request(baton):
    """A claim holding a lone UTF-16 surrogate (some IdPs emit them) is refused cleanly, never a 500."""
    subject = baton.idp.mint(baton.idp.claims(scope="orders:read", email="\ud800x"))
    response = await baton.exchange(subject, audience="orders")
    await assert_refused(baton, response, 400, "invalid_request")


async def test_exchange_covered_by_a_revocation_is_not_handed_out(baton):
    """A client revoked up to a future instant: the append is refused under the write lock, nothing is issued."""
    response = await baton.http.post(
        "/admin/revoke", data={"client_id": "frontend", "before": str(time.time() + 60)},
        headers={"Authorization": f"Bearer {ADMIN_SECRET}"},
    )
    assert response.status_code == 200
    refused = await baton.exchange(baton.user_token(), audience="orders")
    assert refused.status_code == 400 and "access_token" not in refused.json()
    assert (await baton.events("ExchangeDenied"))[-1].reason == "revoked_during_exchange"
    assert await baton.events("TokenExchanged") == []  # the refused exchange left no token event behind


async def test_exchange_right_after_a_client_revocation_is_active(baton):
    """Revoking a client's tokens 'before now' does not kill the tokens it obtains afterwards."""
    response = await baton.http.post(
        "/admin/revoke", data={"client_id": "frontend"}, headers={"Authorization": f"Bearer {ADMIN_SECRET}"}
    )
    assert response.status_code == 200
    issued = await baton.exchange(baton.user_token(), audience="orders")
    assert issued.status_code == 200
    introspected = await baton.post("/introspect", {"token": issued.json()["access_token"]})
    assert introspected.json()["active"] is True


@pytest.mark.parametrize("before", ["inf", "nan", "-5", "1e400"])
async def test_admin_revocation_refuses_non_finite_instants(baton, before):
    """``before`` must be finite epoch seconds."""
    response = await baton.http.post(
        "/admin/revoke", data={"client_id": "frontend", "before": before},
        headers={"Authorization": f"Bearer {ADMIN_SECRET}"},
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


async def test_may_act_naming_an_idp_identity_does_not_admit_a_baton_client(baton):
    """A client acting for itself is a Baton identity: may_act with another issuer does not name it."""
    subject = baton.user_token(may_act={"sub": "poster", "iss": baton.idp.issuer})
    response = await baton.exchange(subject, client="poster", audience="orders")
    await assert_refused(baton, response, 400, "invalid_request", "may_act_mismatch")
    subject = baton.user_token(may_act={"sub": "poster", "iss": "https://baton.test"})
    assert (await baton.exchange(subject, client="poster", audience="orders")).status_code == 200


async def test_unauthenticated_refusals_never_write_into_a_client_stream(baton):
    """A wrong secret claimed for 'frontend' is recorded, but not in frontend's own stream."""
    await baton.http.post("/token", data={"grant_type": GRANT_TOKEN_EXCHANGE}, auth=("frontend", "wrong"))
    records = await baton.runtime.store.read_all(1, 1000)
    (failure,) = [r for r in records if r.event_type == "ClientAuthFailed"]
    assert failure.stream_id == "client-unauthenticated"
