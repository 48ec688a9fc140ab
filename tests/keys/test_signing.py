"""KeyRing.sign: compact JWS that an independent verifier accepts, for every signing algorithm."""

from __future__ import annotations

import base64
import json

import jwt as pyjwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jws
from joserfc.jwk import import_key

from app.keys import KeyError_, KeyRing, generate_key, public_jwk

ALGORITHMS = [("ES256", "ES256"), ("RS256", "RS256"), ("PS256", "PS256"), ("EdDSA", "Ed25519")]
_ES256 = generate_key("ES256")


def _segment(token: str, index: int) -> dict:
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _verify(token: str, jwk: dict, alg: str) -> dict:
    """The payload, verified by PyJWT, or for Ed25519 (an alg name PyJWT does not know) by joserfc's own parser."""
    if alg == "Ed25519":
        return json.loads(jws.deserialize_compact(token, import_key(public_jwk(jwk)), algorithms=[alg]).payload)
    key = pyjwt.PyJWK(public_jwk(jwk), algorithm=alg)
    return pyjwt.decode(token, key, algorithms=[alg], options={"verify_aud": False, "verify_exp": False})


@pytest.mark.parametrize("algorithm,alg", ALGORITHMS)
def test_tokens_verify_with_the_published_key(algorithm: str, alg: str) -> None:
    """The signature verifies with the public JWK; header is alg, typ and the active kid; payload is the claims."""
    jwk = generate_key(algorithm)
    ring = KeyRing([jwk])
    claims = {"iss": "https://baton.test", "sub": "user-1", "aud": "orders", "exp": 2_000_000_000, "scope": "a b"}
    token = ring.sign(claims)
    assert _segment(token, 0) == {"alg": alg, "typ": "at+jwt", "kid": jwk["kid"]}
    assert _verify(token, jwk, alg) == claims
    checkpoint = ring.sign({"head": 7}, typ="baton-checkpoint+jwt")
    assert _segment(checkpoint, 0)["typ"] == "baton-checkpoint+jwt"
    assert _segment(ring.sign(claims), 0)["typ"] == "at+jwt"  # a second typ does not replace the first


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(max_size=12), st.one_of(st.text(max_size=40), st.integers(), st.booleans()), max_size=8))
def test_any_claims_round_trip(claims: dict) -> None:
    """Whatever JSON claims are signed, the verified payload is exactly those claims."""
    ring = KeyRing([_ES256])
    assert _verify(ring.sign(claims), _ES256, "ES256") == claims


@pytest.mark.parametrize(
    "change",
    [{"alg": "RS256"}, {"alg": "HS256"}, {"use": "enc"}, {"alg": "none"}],
    ids=["alg-for-another-key-type", "hmac", "encryption-key", "none"],
)
def test_a_key_that_cannot_sign_its_alg_is_refused_at_load(change: dict) -> None:
    """An active key whose alg, type or use do not fit is an error when the ring loads, not at the first token."""
    with pytest.raises(KeyError_):
        KeyRing([{**generate_key("ES256"), **change}])
