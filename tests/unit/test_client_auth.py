"""Client authentication (app/client_auth.py): one method, the configured one, done right."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from urllib.parse import quote_plus

import httpx
import pytest

import app.client_auth as client_auth
from app.cache import MemoryCache
from app.client_auth import ClientAuthenticator
from app.config import config_from_dict
from app.errors import OAuthError
from app.secrets import hash_secret
from app.types import CLIENT_ASSERTION_TYPE_JWT
from tests.support.fake_issuer import FakeIssuer, b64url, new_key, sign

BATON = "https://baton.test"
TOKEN_URL = "https://baton.test/token"
SECRET = "s3cret+/=:ü"
POST_SECRET = "post-secret"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def hashes():
    return {"basic": hash_secret(SECRET, log_n=10), "post": hash_secret(POST_SECRET, log_n=10)}


@pytest.fixture(scope="module")
def jwt_key():
    return new_key("ES256", "client-key")


@pytest.fixture
def client_idp():
    """Serves uri-client's JWK set at https://client.test/jwks."""
    return FakeIssuer("https://client.test", algs=("RS256",))


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def cache(clock):
    return MemoryCache(clock=clock)


@pytest.fixture
async def auth(hashes, jwt_key, client_idp, cache, clock):
    config = config_from_dict(
        {
            "issuer": BATON,
            "clients": [
                {"client_id": "basic-client", "secret_hash": hashes["basic"]},
                {"client_id": "post-client", "secret_hash": hashes["post"], "auth_method": "client_secret_post"},
                {"client_id": "jwt-client", "auth_method": "private_key_jwt", "jwks": {"keys": [jwt_key.as_dict(private=False)]}},
                {"client_id": "uri-client", "auth_method": "private_key_jwt", "jwks_uri": client_idp.jwks_uri},
            ],
        }
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(client_idp.app)) as http:
        yield ClientAuthenticator(config, cache, http, clock=clock)


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"authorization": "Basic " + base64.b64encode(raw).decode()}


async def refused(reason: str, auth, headers=None, form=None, *, challenge: bool = False) -> OAuthError:
    with pytest.raises(OAuthError) as info:
        await auth.authenticate(headers or {}, form or {}, TOKEN_URL)
    err = info.value
    assert (err.error, err.status, err.reason) == ("invalid_client", 401, reason), err
    assert ("WWW-Authenticate" in err.headers) is challenge
    return err


# --- client_secret_basic / client_secret_post -------------------------------------------------------


async def test_basic_with_form_encoded_credentials(auth):
    """client_secret_basic: id and secret are form-urlencoded inside Basic (RFC 6749 §2.3.1)."""
    client = await auth.authenticate(basic("basic-client", SECRET), {"grant_type": "x"}, TOKEN_URL)
    assert client.client_id == "basic-client"


async def test_basic_scheme_is_case_insensitive(auth):
    """`basic` and `BASIC` are the same scheme."""
    header = basic("basic-client", SECRET)["authorization"].replace("Basic", "bAsIc")
    assert (await auth.authenticate({"authorization": header}, {}, TOKEN_URL)).client_id == "basic-client"


async def test_basic_wrong_secret(auth):
    """A wrong secret is 401 invalid_client with a Basic challenge."""
    await refused("bad_secret", auth, basic("basic-client", "nope"), challenge=True)


async def test_unknown_and_wrong_secret_look_the_same(auth):
    """An unknown client gets the same description as a wrong secret (no client enumeration)."""
    unknown = await refused("unknown_client", auth, basic("who", SECRET), challenge=True)
    wrong = await refused("bad_secret", auth, basic("basic-client", "nope"), challenge=True)
    assert unknown.description == wrong.description


@pytest.mark.parametrize("header", ["Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Basic " + base64.b64encode(b":x").decode(), "Basic " + base64.b64encode(b"\xff:x").decode()])
async def test_malformed_basic(auth, header):
    """Undecodable Basic credentials, a missing colon or an empty id are refused with a challenge."""
    await refused("malformed_credentials", auth, {"authorization": header}, challenge=True)


async def test_basic_with_conflicting_form_client_id(auth):
    """A form client_id naming another client than the Basic credentials is refused."""
    await refused("client_id_mismatch", auth, basic("basic-client", SECRET), {"client_id": "post-client"}, challenge=True)


async def test_post(auth):
    """client_secret_post authenticates with client_id and client_secret in the form."""
    client = await auth.authenticate({}, {"client_id": "post-client", "client_secret": POST_SECRET}, TOKEN_URL)
    assert client.client_id == "post-client"


async def test_post_wrong_secret_has_no_basic_challenge(auth):
    """A failed client_secret_post is 401 without WWW-Authenticate (Basic was not attempted)."""
    await refused("bad_secret", auth, form={"client_id": "post-client", "client_secret": "nope"})


async def test_post_without_client_id(auth):
    """client_secret without client_id is refused."""
    await refused("malformed_credentials", auth, form={"client_secret": POST_SECRET})


async def test_configured_method_must_match(auth):
    """A client must use its configured method, even with the right secret."""
    await refused("wrong_auth_method", auth, form={"client_id": "basic-client", "client_secret": SECRET})
    await refused("wrong_auth_method", auth, basic("post-client", POST_SECRET), challenge=True)


async def test_no_client_authentication(auth):
    """No credentials at all, or only a client_id, is refused."""
    await refused("no_client_auth", auth)
    await refused("no_client_auth", auth, form={"client_id": "basic-client"})
    await refused("no_client_auth", auth, {"authorization": "Bearer abc"})


async def test_two_methods_at_once(auth, jwt_key, clock):
    """Basic plus a form secret, or a form secret plus an assertion, is refused (exactly one method)."""
    await refused("multiple_auth_methods", auth, basic("basic-client", SECRET), {"client_secret": SECRET}, challenge=True)
    form = {"client_id": "post-client", "client_secret": POST_SECRET, **assertion_form(jwt_key, clock)}
    await refused("multiple_auth_methods", auth, form=form)


async def test_kdf_runs_once_per_correct_secret_and_always_for_wrong_ones(auth, monkeypatch):
    """Correct secrets are remembered (HMAC under a process key); wrong secrets and unknown clients always pay the KDF."""
    calls = []
    real = client_auth.verify_secret
    monkeypatch.setattr(client_auth, "verify_secret", lambda s, e: calls.append(1) or real(s, e))
    for _ in range(3):
        await auth.authenticate(basic("basic-client", SECRET), {}, TOKEN_URL)
    assert len(calls) == 1
    await refused("bad_secret", auth, basic("basic-client", SECRET + "x"), challenge=True)
    await refused("bad_secret", auth, basic("basic-client", SECRET + "x"), challenge=True)
    assert len(calls) == 3
    await refused("unknown_client", auth, basic("ghost", SECRET), challenge=True)
    assert len(calls) == 4  # verified against a dummy hash: same cost as a known client
    await auth.authenticate(basic("basic-client", SECRET), {}, TOKEN_URL)
    assert len(calls) == 4


async def test_dummy_hash_has_the_clients_cost(auth):
    """The dummy hash for unknown clients uses the same scrypt cost as configured secrets."""
    await refused("unknown_client", auth, basic("ghost", SECRET), challenge=True)
    assert auth._dummy_hash.split("$")[1] == "10"


# --- private_key_jwt ----------------------------------------------------------------------------------


def assertion_claims(clock, client_id="jwt-client", **over):
    claims = {"iss": client_id, "sub": client_id, "aud": BATON, "exp": clock.now + 60, "iat": clock.now, "jti": uuid.uuid4().hex}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def assertion_form(key, clock, header=None, **over) -> dict[str, str]:
    head = {"alg": "ES256", "kid": key.kid, **(header or {})}
    return {"client_assertion_type": CLIENT_ASSERTION_TYPE_JWT, "client_assertion": sign(head, assertion_claims(clock, **over), key)}


@pytest.mark.parametrize("aud", [BATON, TOKEN_URL, BATON + "/token"])
async def test_private_key_jwt_accepted_audiences(auth, jwt_key, clock, aud):
    """A signed assertion whose aud is the issuer or the token endpoint authenticates the client."""
    client = await auth.authenticate({}, assertion_form(jwt_key, clock, aud=aud), TOKEN_URL)
    assert client.client_id == "jwt-client"


@pytest.mark.parametrize("aud", [[BATON], [BATON, "https://other.example"]])
async def test_private_key_jwt_audience_list_refused(auth, jwt_key, clock, aud):
    """RFC 7523bis: aud must be one string; a list (even one naming Baton) is refused (audience injection)."""
    await refused("wrong_audience", auth, form=assertion_form(jwt_key, clock, aud=aud))


async def test_private_key_jwt_with_client_id_in_form(auth, jwt_key, clock):
    """client_id in the form is allowed when it names the assertion's client, refused otherwise."""
    form = assertion_form(jwt_key, clock)
    assert (await auth.authenticate({}, {**form, "client_id": "jwt-client"}, TOKEN_URL)).client_id == "jwt-client"
    await refused("client_id_mismatch", auth, form={**assertion_form(jwt_key, clock), "client_id": "uri-client"})


async def test_replayed_jti_is_refused(auth, jwt_key, clock):
    """An assertion (its jti) is single-use."""
    form = assertion_form(jwt_key, clock)
    await auth.authenticate({}, form, TOKEN_URL)
    await refused("assertion_replayed", auth, form=form)


async def test_jti_is_not_burned_by_a_forged_assertion(auth, jwt_key, clock):
    """A forged assertion reusing a jti does not block the genuine one: replay is recorded after the signature check."""
    jti = uuid.uuid4().hex
    forged = assertion_form(new_key("ES256", jwt_key.kid), clock, jti=jti)
    await refused("bad_assertion", auth, form=forged)
    await auth.authenticate({}, assertion_form(jwt_key, clock, jti=jti), TOKEN_URL)


@pytest.mark.parametrize("aud", ["https://elsewhere.test", [], ["https://baton.test/introspect"], "https://baton.test/"[:-1] + ".evil", None])
async def test_wrong_or_missing_aud(auth, jwt_key, clock, aud):
    """An assertion for another audience (or none) is refused."""
    await refused("wrong_audience", auth, form=assertion_form(jwt_key, clock, aud=aud))


async def test_hmac_assertion_is_refused(auth, jwt_key, clock):
    """An HS256 assertion (e.g. keyed with the client's public key) is refused: HMAC never."""
    header = b64url(json.dumps({"alg": "HS256", "kid": jwt_key.kid}).encode())
    payload = b64url(json.dumps(assertion_claims(clock)).encode())
    secret = json.dumps(jwt_key.as_dict(private=False)).encode()
    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    form = {"client_assertion_type": CLIENT_ASSERTION_TYPE_JWT, "client_assertion": f"{header}.{payload}.{b64url(mac)}"}
    await refused("bad_assertion", auth, form=form)


async def test_assertion_signed_with_another_clients_key(auth, client_idp, clock):
    """uri-client's key cannot authenticate jwt-client."""
    other = client_idp.keys[client_idp.kid]
    form = {
        "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT,
        "client_assertion": sign({"alg": "RS256", "kid": other.kid}, assertion_claims(clock), other),
    }
    await refused("bad_assertion", auth, form=form)
    form["client_assertion"] = sign({"alg": "RS256"}, assertion_claims(clock), other)
    await refused("bad_assertion", auth, form=form)


async def test_jwks_uri_client_keys_fetched_once(auth, client_idp, clock):
    """A client with jwks_uri is verified with keys fetched once and cached."""
    key = client_idp.keys[client_idp.kid]
    for _ in range(3):
        claims = assertion_claims(clock, client_id="uri-client")
        form = {"client_assertion_type": CLIENT_ASSERTION_TYPE_JWT, "client_assertion": sign({"alg": "RS256", "kid": key.kid}, claims, key)}
        assert (await auth.authenticate({}, form, TOKEN_URL)).client_id == "uri-client"
    assert client_idp.jwks_fetches == 1 and auth.fetch_count("uri-client") == 1


async def test_jwks_uri_down_is_a_clear_failure(auth, client_idp, clock):
    """When the client's jwks_uri is down and nothing is cached, authentication fails with a specific reason."""
    client_idp.mode = "down"
    key = client_idp.keys[client_idp.kid]
    claims = assertion_claims(clock, client_id="uri-client")
    form = {"client_assertion_type": CLIENT_ASSERTION_TYPE_JWT, "client_assertion": sign({"alg": "RS256", "kid": key.kid}, claims, key)}
    await refused("client_keys_unavailable", auth, form=form)


@pytest.mark.parametrize(
    "over,reason",
    [
        ({"exp": 1_799_999_000}, "assertion_expired"),
        ({"exp": 1_800_003_600}, "bad_assertion"),
        ({"exp": None}, "bad_assertion"),
        ({"exp": "1800000060"}, "bad_assertion"),
        ({"jti": None}, "bad_assertion"),
        ({"jti": 42}, "bad_assertion"),
        ({"sub": "someone-else"}, "bad_assertion"),
        ({"iss": None}, "bad_assertion"),
    ],
)
async def test_assertion_claims_refused(auth, jwt_key, clock, over, reason):
    """exp required and at most ~5 minutes ahead, jti required, iss = sub = client_id."""
    await refused(reason, auth, form=assertion_form(jwt_key, clock, **over))


async def test_unknown_or_non_jwt_client(auth, jwt_key, clock):
    """An assertion for an unknown client, or for a client configured for secrets, is refused."""
    await refused("unknown_client", auth, form=assertion_form(jwt_key, clock, client_id="ghost"))
    await refused("wrong_auth_method", auth, form=assertion_form(jwt_key, clock, client_id="basic-client"))


async def test_assertion_type_and_shape(auth, jwt_key, clock):
    """Wrong assertion type, a missing assertion, or a token that is not a JWS are refused."""
    form = assertion_form(jwt_key, clock)
    await refused("bad_assertion_type", auth, form={**form, "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"})
    await refused("bad_assertion", auth, form={"client_assertion_type": CLIENT_ASSERTION_TYPE_JWT})
    await refused("bad_assertion", auth, form={**form, "client_assertion": "not.a.jwt"})
    await refused("bad_assertion", auth, form={**form, "client_assertion": "a.b.c.d.e"})


async def test_access_token_is_not_a_client_assertion(auth, jwt_key, clock):
    """A JWT typed as an access token cannot be used as a client assertion (type confusion)."""
    await refused("bad_assertion", auth, form=assertion_form(jwt_key, clock, header={"typ": "at+jwt"}))
    assert await auth.authenticate({}, assertion_form(jwt_key, clock, header={"typ": "client-authentication+jwt"}), TOKEN_URL)


async def test_replay_entry_lives_as_long_as_the_assertion(auth, jwt_key, clock, cache):
    """The jti is remembered for the assertion's remaining lifetime (plus leeway), then forgotten."""
    claims = assertion_claims(clock)
    form = {"client_assertion_type": CLIENT_ASSERTION_TYPE_JWT, "client_assertion": sign({"alg": "ES256", "kid": jwt_key.kid}, claims, jwt_key)}
    await auth.authenticate({}, form, TOKEN_URL)
    key = f"baton:jti:jwt-client:{claims['jti']}"
    clock.now += 60 + 29
    assert await cache.get(key) is not None
    clock.now += 2
    assert await cache.get(key) is None
    await refused("assertion_expired", auth, form=form)


async def test_concurrent_first_requests_pay_the_kdf_once(auth, monkeypatch):
    """Ten simultaneous first requests of one client with the right secret run scrypt once, not ten times."""
    calls = []
    real = client_auth.verify_secret
    monkeypatch.setattr(client_auth, "verify_secret", lambda s, e: calls.append(1) or real(s, e))
    clients = await asyncio.gather(*(auth.authenticate(basic("basic-client", SECRET), {}, TOKEN_URL) for _ in range(10)))
    assert {c.client_id for c in clients} == {"basic-client"}
    assert len(calls) == 1
