"""The trusted issuer registry (app/issuers.py): who is trusted, with which keys, and for how long."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from app.cache import MemoryCache
from app.config import config_from_dict
from app.issuers import IssuerRegistry
from app.jose_strict import TokenRejected
from app.keys import KeyRing, generate_key
from tests.support.fake_issuer import FakeIssuer, new_key, raw_jws, sign
from tests.support.live_server import run_asgi

BATON = "https://baton.test"
A = "https://idp-a.test"
B = "https://idp-b.test"
INTERVAL = 30
MAX_STALE = 600


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def make_config(*issuers: dict, **cache) -> object:
    return config_from_dict(
        {
            "issuer": BATON,
            "cache": {
                "jwks_min_ttl": 60,
                "jwks_max_ttl": 3600,
                "jwks_max_stale": MAX_STALE,
                "unknown_kid_interval": INTERVAL,
                **cache,
            },
            "trusted_issuers": list(issuers)
            or [
                {"issuer": A, "audiences": ["baton"]},
                {"issuer": B, "jwks_uri": f"{B}/jwks", "audiences": ["baton"], "require_typ": True},
            ],
        }
    )


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def idp_a():
    return FakeIssuer(A)


@pytest.fixture
def idp_b():
    return FakeIssuer(B)


@pytest.fixture(scope="module")
def ring():
    return KeyRing([generate_key("ES256")])


@pytest.fixture
async def http(idp_a, idp_b):
    mounts = {A: httpx.ASGITransport(idp_a.app), B: httpx.ASGITransport(idp_b.app)}
    async with httpx.AsyncClient(mounts={f"all://{u.split('://')[1]}": t for u, t in mounts.items()}) as client:
        yield client


@pytest.fixture
def cache(clock):
    return MemoryCache(clock=clock)


@pytest.fixture
def make_registry(cache, http, ring, clock):
    def make(config=None, shared=None):
        return IssuerRegistry(config or make_config(), shared or cache, http, ring.verification_keys, clock=clock)

    return make


@pytest.fixture
def registry(make_registry):
    return make_registry()


def token_a(idp, clock, **over) -> str:
    return idp.mint(idp.claims(now=clock.now, **over))


async def refused(reason: str, registry: IssuerRegistry, token: str, kind: str = "access_token") -> TokenRejected:
    with pytest.raises(TokenRejected) as info:
        await registry.validate(token, kind)
    assert info.value.reason == reason, info.value
    return info.value


# --- acceptance --------------------------------------------------------------------------------


async def test_token_from_discovered_issuer_is_accepted_and_keys_cached(registry, idp_a, clock):
    """Keys are found by OIDC discovery on first use, then served from memory without fetching."""
    validated = await registry.validate(token_a(idp_a, clock), "access_token")
    assert (validated.issuer, validated.subject, validated.local, validated.alg) == (A, "alice", False, "ES256")
    assert validated.kid == idp_a.kid
    for _ in range(5):
        await registry.validate(token_a(idp_a, clock), "jwt")
    assert (idp_a.discovery_fetches, idp_a.jwks_fetches, registry.fetch_count(A)) == (1, 1, 1)


async def test_configured_jwks_uri_skips_discovery(registry, idp_b, clock):
    """An issuer with jwks_uri configured is never asked for its discovery document."""
    token = idp_b.mint(idp_b.claims(now=clock.now), header_overrides={"typ": "at+jwt"})
    assert (await registry.validate(token, "access_token")).issuer == B
    assert (idp_b.discovery_fetches, idp_b.jwks_fetches) == (0, 1)


async def test_baton_own_token_is_accepted_without_fetching(registry, ring, clock, idp_a, idp_b):
    """A token Baton signed (typ at+jwt) verifies with the local keys; no network traffic."""
    token = ring.sign({"iss": BATON, "sub": "alice", "aud": "billing", "exp": clock.now + 300, "iat": clock.now, "jti": "x"})
    validated = await registry.validate(token, "access_token")
    assert validated.local and validated.issuer == BATON and validated.kid == ring.kid
    assert idp_a.jwks_fetches + idp_b.jwks_fetches + idp_a.discovery_fetches == 0


async def test_baton_token_needs_at_jwt_and_is_not_an_id_token(registry, ring, clock):
    """Baton's own tokens must carry typ at+jwt and are never accepted as ID tokens."""
    claims = {"iss": BATON, "sub": "alice", "exp": clock.now + 300}
    await refused("wrong_type", registry, ring.sign(claims, typ="JWT"))
    await refused("wrong_type", registry, ring.sign(claims), "id_token")


async def test_forged_baton_token_is_refused(registry, clock):
    """A token claiming Baton's issuer but signed by another key fails (and fetches nothing)."""
    other = KeyRing([generate_key("ES256")])
    await refused("unknown_kid", registry, other.sign({"iss": BATON, "sub": "alice", "exp": clock.now + 300}))


# --- which issuer -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "iss",
    [A + "/", A + ".evil.test", A[:-1], "HTTPS://idp-a.test", A + "/tenant", "https://evil.test", " " + A, A + "#", "http://idp-a.test"],
)
async def test_untrusted_issuer_variants_cause_zero_fetches(registry, idp_a, idp_b, clock, iss):
    """Only an exact iss match is trusted: prefix/suffix/slash/case tricks are refused before any fetch."""
    await refused("untrusted_issuer", registry, token_a(idp_a, clock, iss=iss))
    assert idp_a.discovery_fetches + idp_a.jwks_fetches + idp_b.jwks_fetches == 0


@pytest.mark.parametrize("iss", [None, 5, "", ["https://idp-a.test"]])
async def test_missing_or_odd_iss_is_refused(registry, idp_a, clock, iss):
    """A token without a string iss is refused."""
    await refused("bad_claim", registry, token_a(idp_a, clock, iss=iss) if iss is not None else idp_a.mint({"sub": "a", "exp": clock.now + 60}))


async def test_issuer_mix_up_is_refused(registry, idp_a, idp_b, clock):
    """A's key with B's iss does not verify, whether or not the kid is sent."""
    claims = idp_b.claims(now=clock.now)
    await refused("unknown_kid", registry, idp_a.mint(claims, header_overrides={"typ": "at+jwt"}))
    await refused("bad_signature", registry, idp_a.mint(claims, header_overrides={"typ": "at+jwt", "kid": None}))


async def test_discovery_issuer_mismatch_is_refused(registry, idp_a, clock):
    """Discovery must name exactly the configured issuer; otherwise its keys are never used."""
    idp_a.discovery_issuer = "https://idp-a.test/"
    err = await refused("issuer_unavailable", registry, token_a(idp_a, clock))
    assert "different issuer" in err.description and idp_a.jwks_fetches == 0


async def test_redirect_is_refused(registry, idp_a, clock):
    """An issuer redirecting its discovery document gets no trust from it."""
    idp_a.mode = "redirect"
    err = await refused("issuer_unavailable", registry, token_a(idp_a, clock))
    assert "redirect" in err.description


async def test_kind_must_be_allowed_for_the_issuer(make_registry, idp_a, clock):
    """An issuer configured for access tokens only cannot supply ID tokens."""
    registry = make_registry(make_config({"issuer": A, "token_types": ["access_token"]}))
    await refused("wrong_type", registry, token_a(idp_a, clock), "id_token")
    await refused("wrong_type", registry, token_a(idp_a, clock), "refresh_token")


async def test_alg_outside_issuer_list_is_refused_without_fetching(make_registry, idp_a, clock):
    """An algorithm the issuer is not configured for is refused before keys are fetched; HS/none always."""
    registry = make_registry(make_config({"issuer": A, "algorithms": ["RS256", "HS256", "none"]}))
    await refused("alg_not_allowed", registry, token_a(idp_a, clock))
    await refused("alg_not_allowed", registry, raw_jws({"alg": "HS256"}, idp_a.claims(now=clock.now), b"m"))
    await refused("alg_not_allowed", registry, raw_jws({"alg": "none"}, idp_a.claims(now=clock.now), b"m"))
    assert idp_a.discovery_fetches == 0


# --- claims ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typ,kind,ok",
    [
        (None, "access_token", True),
        ("JWT", "access_token", True),
        ("at+jwt", "access_token", True),
        ("application/at+jwt", "access_token", True),
        ("AT+JWT", "jwt", True),
        ("dpop+jwt", "access_token", False),
        ("client-authentication+jwt", "jwt", False),
        ("JWT", "id_token", True),
        (None, "id_token", True),
        ("at+jwt", "id_token", False),
        ("application/at+jwt", "id_token", False),
    ],
)
async def test_typ_rules(registry, idp_a, clock, typ, kind, ok):
    """Access tokens may be untyped, JWT or at+jwt; an access token is never accepted as an ID token."""
    token = idp_a.mint(idp_a.claims(now=clock.now), header_overrides={"typ": typ})
    if ok:
        await registry.validate(token, kind)
    else:
        await refused("wrong_type", registry, token, kind)


async def test_require_typ_demands_at_jwt(registry, idp_b, clock):
    """An issuer with require_typ must label access tokens at+jwt."""
    await refused("wrong_type", registry, idp_b.mint(idp_b.claims(now=clock.now)))
    await refused("wrong_type", registry, idp_b.mint(idp_b.claims(now=clock.now), header_overrides={"typ": None}))


@pytest.mark.parametrize(
    "over,reason",
    [
        ({"aud": "someone-else"}, "wrong_audience"),
        ({"aud": ["x", "y"]}, "wrong_audience"),
        ({"aud": None}, "wrong_audience"),
        ({"aud": ["baton", 7]}, "bad_claim"),
        ({"sub": None}, "bad_claim"),
        ({"sub": ""}, "bad_claim"),
        ({"sub": {"id": 1}}, "bad_claim"),
        ({"scope": ["a", "b"]}, "bad_claim"),
        ({"exp": None}, "bad_claim"),
        ({"exp": "1800000300"}, "bad_claim"),
        ({"exp": 1e20}, "lifetime_too_long"),
        ({"nbf": 1_800_000_600}, "not_yet_valid"),
        ({"iat": 1_800_000_600}, "issued_in_future"),
        ({"act": {"sub": 3}}, "bad_claim"),
    ],
)
async def test_claims_refused(registry, idp_a, clock, over, reason):
    """Audience, subject, scope, time and act claims are checked with specific reasons."""
    await refused(reason, registry, token_a(idp_a, clock, **over))


async def test_expired_token_is_refused_without_fetching(registry, idp_a, clock):
    """Claims are checked before keys: an expired token costs the issuer nothing."""
    await refused("expired", registry, token_a(idp_a, clock, exp=clock.now - 3600))
    assert idp_a.discovery_fetches == 0


async def test_aud_list_holding_an_accepted_audience_passes(registry, idp_a, clock):
    """An aud list passes when one of its values is accepted."""
    await registry.validate(token_a(idp_a, clock, aud=["other", "baton"]), "access_token")


async def test_act_chain_too_deep_is_refused(registry, idp_a, clock):
    """A forged deep act chain in an external token is refused."""
    act: dict = {"sub": "svc-0"}
    for i in range(1, 40):
        act = {"sub": f"svc-{i}", "act": act}
    await refused("act_too_deep", registry, token_a(idp_a, clock, act=act))


# --- published keys ---------------------------------------------------------------------------------------


async def test_published_private_key_is_never_trusted(registry, idp_a, clock):
    """A key published with its private part is dropped: tokens signed with it are refused."""
    leaked = new_key("ES256", "leaked")
    idp_a.extra_jwks = [leaked.as_dict(private=True)]
    token = idp_a.mint(idp_a.claims(now=clock.now))
    await registry.validate(token, "access_token")  # the issuer's proper keys still work
    forged = sign({"alg": "ES256", "kid": "leaked"}, idp_a.claims(now=clock.now, sub="admin"), leaked)
    await refused("unknown_kid", registry, forged)


async def test_symmetric_key_in_jwks_is_never_used(make_registry, idp_a, clock):
    """An oct key in the JWKS is dropped; HS256 stays refused even if configured."""
    registry = make_registry(make_config({"issuer": A, "algorithms": ["ES256", "HS256"]}))
    idp_a.extra_jwks = [{"kty": "oct", "kid": "sym", "k": "c2VjcmV0"}]
    await registry.validate(token_a(idp_a, clock), "access_token")
    await refused("alg_not_allowed", registry, raw_jws({"alg": "HS256", "kid": "sym"}, idp_a.claims(now=clock.now), b"m" * 32))


async def test_jwks_with_only_unusable_keys_is_unavailable(registry, idp_a, clock):
    """A key set holding only private or symmetric keys is treated as junk."""
    idp_a.keys.clear()
    idp_a.extra_jwks = [{"kty": "oct", "k": "c2VjcmV0"}, new_key("ES256", "p").as_dict(private=True)]
    await refused("issuer_unavailable", registry, raw_jws({"alg": "ES256", "kid": "p"}, idp_a.claims(now=clock.now), b"s" * 64))


@pytest.mark.parametrize("mode", ["down", "junk"])
async def test_unreachable_issuer_without_cached_keys(registry, idp_a, clock, mode):
    """With no keys cached, an issuer that is down or answers junk makes its tokens fail clearly."""
    idp_a.mode = mode
    err = await refused("issuer_unavailable", registry, token_a(idp_a, clock))
    assert A in err.description


# --- key cache -----------------------------------------------------------------------------------------------


async def test_unknown_kid_storm_causes_at_most_one_fetch_per_interval(registry, idp_a, clock):
    """Hundreds of tokens with random kids refresh the issuer's keys once per interval, not once each."""
    await registry.validate(token_a(idp_a, clock), "access_token")
    assert registry.fetch_count(A) == 1

    async def storm():
        tokens = [idp_a.mint(idp_a.claims(now=clock.now), header_overrides={"kid": uuid.uuid4().hex}) for _ in range(100)]
        results = await asyncio.gather(*(registry.validate(t, "access_token") for t in tokens), return_exceptions=True)
        assert all(isinstance(r, TokenRejected) and r.reason == "unknown_kid" for r in results)

    await storm()
    assert registry.fetch_count(A) == 2
    clock.now += INTERVAL / 2
    await storm()
    assert registry.fetch_count(A) == 2
    clock.now += INTERVAL
    await storm()
    assert registry.fetch_count(A) == 3
    assert idp_a.jwks_fetches == 3


async def test_rotated_key_is_picked_up_on_unknown_kid(registry, idp_a, clock):
    """After the issuer rotates, the first token with the new kid triggers one refresh and verifies."""
    await registry.validate(token_a(idp_a, clock), "access_token")
    new_kid = idp_a.rotate(drop_old=True)
    validated = await registry.validate(token_a(idp_a, clock), "access_token")
    assert validated.kid == new_kid and registry.fetch_count(A) == 2


async def test_second_instance_uses_shared_cache(make_registry, cache, idp_a, clock):
    """A second instance on the same shared cache finds the keys there instead of fetching."""
    one, two = make_registry(shared=cache), make_registry(shared=cache)
    await one.validate(token_a(idp_a, clock), "access_token")
    await two.validate(token_a(idp_a, clock), "access_token")
    assert (one.fetch_count(A), two.fetch_count(A), idp_a.jwks_fetches) == (1, 0, 1)


async def test_unknown_kid_refresh_is_single_flight_across_instances(make_registry, cache, idp_a, clock):
    """An unknown kid seen by two instances refreshes once; the other picks the new keys from the shared cache."""
    one, two = make_registry(shared=cache), make_registry(shared=cache)
    await one.validate(token_a(idp_a, clock), "access_token")
    await two.validate(token_a(idp_a, clock), "access_token")
    idp_a.rotate()
    await one.validate(token_a(idp_a, clock), "access_token")
    await two.validate(token_a(idp_a, clock), "access_token")
    await refused("unknown_kid", two, idp_a.mint(idp_a.claims(now=clock.now), header_overrides={"kid": "nope"}))
    assert (one.fetch_count(A), two.fetch_count(A), idp_a.jwks_fetches) == (2, 0, 2)


async def test_ttl_from_cache_control_is_clamped(make_registry, idp_a, clock):
    """max-age=1 is raised to jwks_min_ttl (60 s); a huge max-age is capped at jwks_max_ttl (3600 s)."""
    registry = make_registry()
    idp_a.cache_control = "max-age=1"
    await registry.validate(token_a(idp_a, clock), "access_token")
    clock.now += 59
    await registry.validate(token_a(idp_a, clock), "access_token")
    assert registry.fetch_count(A) == 1
    clock.now += 2
    idp_a.cache_control = "max-age=99999999"
    await registry.validate(token_a(idp_a, clock), "access_token")
    assert registry.fetch_count(A) == 2
    clock.now += 3599
    await registry.validate(token_a(idp_a, clock), "access_token")
    assert registry.fetch_count(A) == 2
    clock.now += 2
    await registry.validate(token_a(idp_a, clock), "access_token")
    assert registry.fetch_count(A) == 3


async def test_stale_keys_serve_while_issuer_is_down_then_fail(registry, idp_a, idp_b, clock):
    """Expired keys keep serving up to jwks_max_stale while the issuer is down; then its tokens fail.

    Retries are spaced by the interval, and the other issuer is unaffected throughout.
    """
    token_b = lambda: idp_b.mint(idp_b.claims(now=clock.now), header_overrides={"typ": "at+jwt"})  # noqa: E731
    await registry.validate(token_a(idp_a, clock), "access_token")
    idp_a.mode = "down"
    clock.now += 301  # past the 300 s TTL
    for _ in range(20):
        await registry.validate(token_a(idp_a, clock), "access_token")
        await registry.validate(token_b(), "access_token")
    assert registry.fetch_count(A) == 2  # one failed retry, then backoff
    clock.now += MAX_STALE - 10
    await registry.validate(token_a(idp_a, clock), "access_token")
    assert registry.fetch_count(A) == 3
    clock.now += 20  # now more than jwks_max_stale past expiry
    err = await refused("issuer_unavailable", registry, token_a(idp_a, clock))
    assert A in err.description
    await registry.validate(token_b(), "access_token")
    idp_a.mode = "normal"
    clock.now += INTERVAL
    await registry.validate(token_a(idp_a, clock), "access_token")  # recovers by itself


async def test_junk_answer_keeps_serving_stale_keys(registry, idp_a, clock):
    """An issuer answering garbage after its TTL does not evict the last good keys."""
    await registry.validate(token_a(idp_a, clock), "access_token")
    idp_a.mode = "junk"
    clock.now += 400
    await registry.validate(token_a(idp_a, clock), "access_token")
    assert registry.fetch_count(A) == 2


async def test_slow_issuer_times_out_and_stale_keys_serve(make_registry, idp_a, clock):
    """A hanging issuer costs at most the fetch timeout, after which the stale keys serve."""
    registry = make_registry(make_config(fetch_timeout=0.05))
    await registry.validate(token_a(idp_a, clock), "access_token")
    idp_a.mode, idp_a.slow_seconds = "slow", 30
    clock.now += 400
    await registry.validate(token_a(idp_a, clock), "access_token")


class BrokenCache(MemoryCache):
    """A shared cache that is down: every call raises."""

    async def get(self, key):
        raise ConnectionError("down")

    async def set(self, key, value, ttl):
        raise ConnectionError("down")

    async def add(self, key, ttl):
        raise ConnectionError("down")


async def test_shared_cache_down_falls_back_to_direct_fetch(make_registry, idp_a, clock):
    """With the shared cache unreachable, keys are fetched directly and kept in process."""
    registry = make_registry(shared=BrokenCache())
    for _ in range(3):
        await registry.validate(token_a(idp_a, clock), "access_token")
    idp_a.rotate()
    await registry.validate(token_a(idp_a, clock), "access_token")
    assert registry.fetch_count(A) == 2


async def test_real_loopback_issuer_end_to_end(ring, clock):
    """Over real HTTP on loopback: discovery, JWKS and validation against a live fake issuer."""
    idp = FakeIssuer()
    with run_asgi(idp.app) as base_url:
        idp.issuer = base_url
        config = make_config({"issuer": base_url, "audiences": ["baton"]})
        async with httpx.AsyncClient() as http:
            registry = IssuerRegistry(config, MemoryCache(clock=clock), http, ring.verification_keys, clock=clock)
            validated = await registry.validate(idp.mint(idp.claims(now=clock.now)), "id_token")
            await registry.aclose()
    assert validated.issuer == base_url and idp.discovery_fetches == 1


class CountingCache(MemoryCache):
    """A shared cache that counts round trips."""

    def __init__(self, clock) -> None:
        super().__init__(clock=clock)
        self.calls = 0

    async def get(self, key):
        self.calls += 1
        return await super().get(key)


async def test_hot_path_touches_neither_network_nor_shared_cache(make_registry, idp_a, clock):
    """With fresh keys in process, validation makes no shared-cache round trip and no fetch."""
    shared = CountingCache(clock)
    registry = make_registry(shared=shared)
    await registry.validate(token_a(idp_a, clock), "access_token")
    before = shared.calls
    for _ in range(50):
        await registry.validate(token_a(idp_a, clock), "access_token")
    assert shared.calls == before and registry.fetch_count(A) == 1
