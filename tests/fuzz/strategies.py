"""hypothesis strategies for Baton's /token form and for the tokens in it.

:func:`forms` draws token-exchange forms: known and unknown parameter names,
repeats, empty values and hostile text. :func:`tokens` draws compact JWS-like
strings from random headers, random claims and random or real signatures; a
real signature is only ever by a key Baton does not trust, over other bytes than
the token carries, or over claims whose ``aud`` is never Baton, so no drawn
token may ever be accepted. ``EXAMPLES`` is the number of examples per test:
small by default, ``BATON_FUZZ_EXAMPLES`` for a dedicated run.
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from app.types import CLIENT_ASSERTION_TYPE_JWT, GRANT_TOKEN_EXCHANGE, TT_ACCESS_TOKEN, TT_ID_TOKEN, TT_JWT
from tests.support.fake_issuer import b64url
from tests.security.requests import sign_raw

EXAMPLES = int(os.environ.get("BATON_FUZZ_EXAMPLES", "120"))
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

ISSUERS = ["https://idp.test", "https://baton.test", "https://evil.test", "https://idp.test/", "", "https://idp.test.evil"]
HEADER_NAMES = ["alg", "kid", "typ", "cty", "jku", "jwk", "x5u", "x5c", "crit", "b64", "zip", "enc", "epk", "x5t"]
ALGS = ["ES256", "RS256", "PS256", "HS256", "none", "None", "EdDSA", "Ed25519", "ES384", "", "RSA-OAEP"]
TOKEN_TYPES = [TT_ACCESS_TOKEN, TT_JWT, TT_ID_TOKEN, "urn:ietf:params:oauth:token-type:saml2", "", "x"]

_text = st.text(max_size=40)
_json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                         st.floats(allow_nan=False, allow_infinity=False), _text)
_json = st.recursive(_json_scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(_text, inner, max_size=4)), max_leaves=12)
_numeric_date = st.one_of(st.integers(-(2**40), 2**64), st.floats(allow_nan=False, allow_infinity=False),
                          st.text(max_size=12), st.booleans(), st.none())


def _act(depth: int) -> st.SearchStrategy[Any]:
    leaf = st.fixed_dictionaries({"sub": st.one_of(_text, st.integers())}, optional={"iss": _json_scalar})
    if depth == 0:
        return st.one_of(leaf, _json_scalar)
    return st.one_of(leaf, st.fixed_dictionaries({"sub": _text, "act": _act(depth - 1)}))


@st.composite
def headers(draw: st.DrawFn, kid: str | None = None) -> dict[str, Any]:
    """A JWS header: usually a plausible alg/kid/typ, plus random and forbidden members."""
    header: dict[str, Any] = {"alg": draw(st.one_of(st.sampled_from(ALGS), _json_scalar))}
    if draw(st.booleans()):
        header["kid"] = draw(st.one_of(st.just(kid) if kid else _text, _text, _json_scalar))
    if draw(st.booleans()):
        header["typ"] = draw(st.one_of(st.sampled_from(["JWT", "at+jwt", "application/at+jwt", "dpop+jwt"]), _json_scalar))
    for name in draw(st.lists(st.sampled_from(HEADER_NAMES[3:]), max_size=3, unique=True)):
        header[name] = draw(_json)
    return header


@st.composite
def claims(draw: st.DrawFn, *, never_baton_aud: bool = False) -> dict[str, Any]:
    """Token claims: plausible issuers and subjects, hostile dates, act chains and random members."""
    out: dict[str, Any] = {"iss": draw(st.one_of(st.sampled_from(ISSUERS), _json_scalar))}
    for name, strategy in (("sub", st.one_of(_text, _json_scalar)), ("exp", _numeric_date), ("nbf", _numeric_date),
                           ("iat", _numeric_date), ("jti", _json_scalar), ("scope", _json_scalar),
                           ("act", _act(3)), ("may_act", _json), ("client_id", _json_scalar)):
        if draw(st.booleans()):
            out[name] = draw(strategy)
    aud = st.one_of(_text, st.lists(_text, max_size=3), _json_scalar)
    if never_baton_aud:
        aud = aud.filter(lambda a: a != "baton" and not (isinstance(a, list) and "baton" in a))
        out["aud"] = draw(aud)
    elif draw(st.booleans()):
        out["aud"] = draw(st.one_of(st.just("baton"), aud))
    out.update(draw(st.dictionaries(_text, _json, max_size=3)))
    return out


def _encode(value: Any) -> bytes:
    return json.dumps(value).encode()


@st.composite
def tokens(draw: st.DrawFn, trusted_key: Any, untrusted_key: Any) -> str:
    """A token Baton must refuse: random parts, a signature over other bytes, or a signature by a key it does not trust."""
    kind = draw(st.sampled_from(["random", "untrusted", "tampered", "wrong_aud", "bytes"]))
    if kind == "bytes":
        return draw(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))))
    header = draw(headers(kid=trusted_key.kid))
    body = draw(claims(never_baton_aud=kind == "wrong_aud"))
    if kind == "random":
        signature = draw(st.binary(max_size=300))
        return f"{b64url(_encode(header))}.{b64url(_encode(body))}.{b64url(signature)}"
    signing = {**header, "alg": "ES256"}
    if kind == "untrusted":
        return sign_raw(signing, body, untrusted_key)
    if kind == "wrong_aud":
        return sign_raw(signing, body, trusted_key)
    signed = sign_raw(signing, body, trusted_key)
    h, _, s = signed.split(".")
    other = draw(claims())
    return f"{h}.{b64url(_encode(other))}.{s}" if other != body else f"{h}.{b64url(_encode(other))}x.{s}"


@st.composite
def forms(draw: st.DrawFn, token: st.SearchStrategy[str]) -> list[tuple[str, str]]:
    """A /token form: the token-exchange parameters in any state, plus unknown, repeated and client-auth fields."""
    names = ["grant_type", "subject_token", "subject_token_type", "actor_token", "actor_token_type",
             "requested_token_type", "audience", "resource", "scope", "client_id", "client_secret",
             "client_assertion_type", "client_assertion"]
    values = {
        "grant_type": st.one_of(st.just(GRANT_TOKEN_EXCHANGE), _text),
        "subject_token": token,
        "actor_token": token,
        "subject_token_type": st.sampled_from(TOKEN_TYPES),
        "actor_token_type": st.sampled_from(TOKEN_TYPES),
        "requested_token_type": st.sampled_from(TOKEN_TYPES),
        "audience": st.sampled_from(["orders", "billing", "ledger", "", "x"]),
        "resource": st.sampled_from(["https://billing.example.com/api", "/x", "https://x#y", "urn:x", ""]),
        "scope": st.one_of(st.sampled_from(["orders:read", "billing:read billing:write", ""]), _text),
        "client_assertion_type": st.just(CLIENT_ASSERTION_TYPE_JWT),
        "client_assertion": token,
    }
    chosen = draw(st.lists(st.sampled_from(names), max_size=10))
    pairs = [(name, draw(values.get(name, _text))) for name in chosen]
    pairs += draw(st.lists(st.tuples(_text, _text), max_size=2))
    return pairs
