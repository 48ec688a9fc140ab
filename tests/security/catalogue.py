"""The attack catalogue: every known attack on a token exchange, one row per case, as data.

Each :class:`Case` names the request (built by a small function over the
:class:`~tests.security.world.World`), the exact status, ``error`` and recorded
``reason`` Baton must answer with, and the CVE or advisory of a peer that fell
for the same attack, where one exists. Token attacks (:class:`TokenAttack`) are
expanded twice: once as ``subject_token`` and once as ``actor_token``.
``test_catalogue.py`` runs every row; ``ops/gen_security_doc.py`` renders the
table in ``docs/security.md``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from app.revocation import revoke_subject, revoke_token
from app.types import CLIENT_ASSERTION_TYPE_JWT, GRANT_TOKEN_EXCHANGE, TT_ACCESS_TOKEN, TT_ID_TOKEN, TT_JWT
from eventstore.checkpoints import CHECKPOINT_TYP, PAYLOAD_TYPE
from tests.support.fake_issuer import b64url, new_key, raw_jws
from tests.support.harness import BATON, decode_claims

from .requests import (
    Req,
    assertion_claims,
    assertion_form,
    b64_std,
    basic,
    exchange_form,
    hmac_jws,
    sign_raw,
    token_request,
)
from .world import MAIN, SECOND, STRICT, UNTRUSTED, World

Builder = Callable[[World], "Req | Awaitable[Req]"]
TokenMaker = Callable[[World], "str | Awaitable[str]"]

#: the order of sections in docs/security.md
CATEGORIES = {
    "request": "Request shape",
    "client-auth": "Client authentication",
    "jose": "JOSE (token structure and signature)",
    "claims": "Claims",
    "type": "Type confusion",
    "policy": "Policy",
    "discovery": "Discovery and JWKS",
}


@dataclass(frozen=True)
class Case:
    """One attack: the request, and exactly how Baton must refuse it."""

    id: str
    category: str
    description: str
    build: Builder
    status: int
    error: str
    reason: str
    cve: str | None = None
    #: outbound fetches the case may cause in total (0: Baton must not touch the network at all)
    max_fetches: int | None = None
    #: hosts that must receive no request at all during the case
    untouched: tuple[str, ...] = ()


@dataclass(frozen=True)
class TokenAttack:
    """A bad token, tried as ``subject_token`` and as ``actor_token``; ``reason`` without the role prefix."""

    id: str
    category: str
    description: str
    make: TokenMaker
    reason: str
    cve: str | None = None
    token_type: str = TT_ACCESS_TOKEN
    max_fetches: int | None = None
    untouched: tuple[str, ...] = ()
    #: (client, audience) for the subject role; the actor role always uses frontend -> orders
    subject_client: tuple[str, str] = ("frontend", "orders")
    #: full reason override for the subject/actor role (when it is not "<role>_<reason>")
    subject_reason: str | None = None
    actor_reason: str | None = None


# --------------------------------------------------------------------------- token makers


def _key(w: World, kty: str, issuer: str = MAIN) -> Any:
    return next(k for k in w.issuers[issuer].keys.values() if k.key_type == kty)


def _header(w: World, alg: str = "ES256", issuer: str = MAIN, **extra: Any) -> dict[str, Any]:
    kty = "RSA" if alg.startswith(("RS", "PS")) else "EC"
    return {"alg": alg, "kid": _key(w, kty, issuer).kid, "typ": "JWT", **extra}


def _signed(w: World, header: dict[str, Any] | bytes, claims: dict[str, Any] | bytes | None = None) -> str:
    """Really signed by the main issuer's EC key, whatever the header says."""
    return sign_raw(header, claims if claims is not None else w.claims(), _key(w, "EC"))


def _claims_bytes(w: World, text: str) -> bytes:
    """Claims JSON with ``text`` spliced in before the closing brace (duplicates, odd numbers)."""
    good = json.dumps(w.claims())
    return (good[:-1] + ", " + text + "}").encode()


def _mint(**claims: Any) -> TokenMaker:
    """A user token with ``claims`` overridden; callables are evaluated when the case runs (times)."""
    return lambda w: w.token(**{k: v() if callable(v) else v for k, v in claims.items()})


def _mint_raw(fn: Callable[[World], dict[str, Any]]) -> TokenMaker:
    return lambda w: w.idp.mint(fn(w))


P256_N = bytes.fromhex("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551")


def _rsa_pem(w: World) -> bytes:
    return _key(w, "RSA").as_pem(private=False)


def _ec_pem(w: World) -> bytes:
    return _key(w, "EC").as_pem(private=False)


def _nested_act(depth: int) -> dict[str, Any]:
    act: dict[str, Any] = {"sub": "a"}
    for _ in range(depth - 1):
        act = {"sub": "a", "act": act}
    return act


def _nested_act_text(depth: int) -> str:
    """A ``depth``-deep act chain as JSON text (json.dumps would hit the recursion limit)."""
    return '{"sub":"a","act":' * (depth - 1) + '{"sub":"a"}' + "}" * (depth - 1)


async def _baton_token(w: World, sub: str) -> str:
    return await w.issue(w.token(sub=sub), audience="billing")


async def _revoked_ancestor(w: World) -> str:
    t1 = await _baton_token(w, "rev-ancestor")
    t2 = await w.issue(t1, client="billing", audience="orders")
    await revoke_token(w.runtime.store, decode_claims(t1)["jti"], by="catalogue", reason="attack test")
    return t2


async def _revoked_subject(w: World) -> str:
    token = w.token(sub="rev-subject", iat=int(time.time()) - 5)
    await revoke_subject(w.runtime.store, MAIN, "rev-subject", by="catalogue", reason="attack test")
    return token


def _unlogged_baton_token(w: World) -> str:
    now = int(time.time())
    return w.runtime.keyring.sign({"iss": BATON, "sub": "ghost", "aud": "orders", "iat": now, "exp": now + 60,
                                   "jti": "never-logged", "client_id": "frontend"})


def _introspection_jwt(w: World) -> str:
    now = int(time.time())
    return w.runtime.keyring.sign({"iss": BATON, "sub": "alice", "aud": "frontend", "iat": now, "exp": now + 60,
                                   "token_introspection": {"active": True}}, typ="token-introspection+jwt")


def _checkpoint_jws(w: World) -> str:
    return w.runtime.keyring.sign({"typ": PAYLOAD_TYPE, "position": 1, "head_hash": "00", "at": time.time()},
                                  typ=CHECKPOINT_TYP)


def _checkpoint_with_iss(w: World) -> str:
    now = int(time.time())
    return w.runtime.keyring.sign({"iss": BATON, "sub": "x", "exp": now + 60, "typ": PAYLOAD_TYPE}, typ=CHECKPOINT_TYP)


def _attacker_baton_token(w: World, keep_kid: bool) -> str:
    now = int(time.time())
    header = {"alg": "ES256", "typ": "at+jwt"}
    if keep_kid:
        header["kid"] = w.runtime.keyring.kid
    return sign_raw(header, {"iss": BATON, "sub": "alice", "aud": "orders", "iat": now, "exp": now + 60,
                             "jti": "forged"}, new_key("ES256"))


def _client_assertion_as_token(w: World) -> str:
    return sign_raw({"alg": "ES256", "kid": w.client_keys["pkjwt"].kid}, assertion_claims(), w.client_keys["pkjwt"])


def _tampered(w: World) -> str:
    header, _, signature = w.token().split(".")
    forged = b64url(json.dumps(w.claims(sub="admin")).encode())
    return f"{header}.{forged}.{signature}"


def _truncated_signature(w: World) -> str:
    header, payload, signature = w.token().split(".")
    return f"{header}.{payload}.{signature[:40]}"


_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _stray_bits(last: str) -> str:
    """The last character of an ES256 signature (86 chars: 4 unused bits) with an unused bit set."""
    return _B64_ALPHABET[_B64_ALPHABET.index(last) | 1]


def _unaligned(text: str) -> bytes:
    """``text`` padded with spaces to a length base64 must pad with ``=``."""
    return (text + " " * (1 if len(text) % 3 == 0 else 0)).encode()


def _token_parts(w: World, fn: Callable[[str, str, str], str]) -> str:
    return fn(*w.token().split("."))


# --------------------------------------------------------------------------- token attacks

TOKEN_ATTACKS: list[TokenAttack] = [
    # JOSE
    TokenAttack("alg-none", "jose", "`alg: none` with an empty signature",
                lambda w: raw_jws({"alg": "none", "typ": "JWT"}, w.claims()), "malformed"),
    TokenAttack("alg-none-signed", "jose", "`alg: none` with a signature segment",
                lambda w: raw_jws({"alg": "none", "typ": "JWT"}, w.claims(), b"sig"), "alg_not_allowed"),
    TokenAttack("alg-none-case", "jose", "`alg: nOnE` (case variant)",
                lambda w: raw_jws({"alg": "nOnE"}, w.claims(), b"sig"), "alg_not_allowed"),
    TokenAttack("hs256-rsa-pem", "jose", "HS256 keyed with the issuer's RSA public key (PEM)",
                lambda w: hmac_jws(_header(w, "HS256", kid=_key(w, "RSA").kid), w.claims(), _rsa_pem(w)),
                "alg_not_allowed", cve="CVE-2015-9235"),
    TokenAttack("hs256-ec-pem", "jose", "HS256 keyed with the issuer's EC public key (PEM)",
                lambda w: hmac_jws(_header(w, "HS256"), w.claims(), _ec_pem(w)), "alg_not_allowed",
                cve="CVE-2022-29217"),
    TokenAttack("hs256-jwk-json", "jose", "HS256 keyed with the issuer's public JWK as JSON",
                lambda w: hmac_jws(_header(w, "HS256"), w.claims(),
                                   json.dumps(_key(w, "EC").as_dict(private=False)).encode()),
                "alg_not_allowed", cve="CVE-2024-37568"),
    TokenAttack("ecdsa-zero", "jose", "ECDSA signature r = s = 0 (psychic signature)",
                lambda w: raw_jws(_header(w), w.claims(), bytes(64)), "bad_signature", cve="CVE-2022-21449"),
    TokenAttack("ecdsa-order", "jose", "ECDSA signature r = s = n (the curve order)",
                lambda w: raw_jws(_header(w), w.claims(), P256_N + P256_N), "bad_signature"),
    TokenAttack("alg-key-mismatch", "jose", "header `alg: RS256` naming the issuer's EC key",
                lambda w: raw_jws(_header(w, "RS256", kid=_key(w, "EC").kid), w.claims(), bytes(256)),
                "key_mismatch"),
    TokenAttack("alg-not-listed", "jose", "`ES384`, an algorithm the issuer is not configured for",
                lambda w: raw_jws(_header(w, "ES384"), w.claims(), bytes(96)), "alg_not_allowed"),
    TokenAttack("alg-ps256-unlisted", "jose", "`PS256` signed with the issuer's RSA key, not configured",
                lambda w: sign_raw(_header(w, "PS256"), w.claims(), _key(w, "RSA"), "PS256"), "alg_not_allowed"),
    TokenAttack("unknown-kid", "jose", "`kid` the issuer never published",
                lambda w: _signed(w, _header(w, kid="no-such-key")), "unknown_kid"),
    TokenAttack("kid-path", "jose", "`kid` with path traversal characters",
                lambda w: _signed(w, _header(w, kid="../../../../etc/passwd")), "unknown_kid"),
    TokenAttack("kid-sql", "jose", "`kid` with SQL injection characters",
                lambda w: _signed(w, _header(w, kid="x' OR '1'='1")), "unknown_kid"),
    TokenAttack("kid-not-string", "jose", "`kid` that is a number",
                lambda w: _signed(w, _header(w, kid=7)), "malformed"),
    TokenAttack("embedded-jwk", "jose", "header `jwk` carrying the attacker's own key, signed with it",
                lambda w: (lambda k: sign_raw({"alg": "ES256", "jwk": k.as_dict(private=False)}, w.claims(), k))(
                    new_key("ES256")), "forbidden_header", cve="CVE-2018-0114"),
    TokenAttack("jku", "jose", "header `jku` pointing at the attacker's key set",
                lambda w: _signed(w, _header(w, jku=UNTRUSTED + "/jwks")), "forbidden_header",
                untouched=("evil.test",)),
    TokenAttack("x5u", "jose", "header `x5u` pointing at the attacker's certificate",
                lambda w: _signed(w, _header(w, x5u=UNTRUSTED + "/cert.pem")), "forbidden_header",
                untouched=("evil.test",)),
    TokenAttack("x5c", "jose", "header `x5c` with an attacker certificate chain",
                lambda w: _signed(w, _header(w, x5c=["MIIB"])), "forbidden_header"),
    TokenAttack("crit-unknown", "jose", "`crit` naming an extension Baton does not understand",
                lambda w: _signed(w, _header(w, crit=["exp-x"], **{"exp-x": 1})), "forbidden_header"),
    TokenAttack("b64-false", "jose", "`b64: false` (unencoded payload, RFC 7797)",
                lambda w: _signed(w, _header(w, b64=False, crit=["b64"])), "forbidden_header"),
    TokenAttack("zip", "jose", "`zip: DEF` (compressed payload: decompression bomb)",
                lambda w: _signed(w, _header(w, zip="DEF")), "forbidden_header", cve="CVE-2024-33664"),
    TokenAttack("jwe", "jose", "a JWE (five segments) where a JWS is expected",
                lambda w: "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d", "jwe_not_accepted"),
    TokenAttack("json-serialization", "jose", "JWS JSON serialization instead of compact",
                lambda w: json.dumps(dict(zip(("protected", "payload", "signature"), w.token().split(".")))),
                "malformed", cve="CVE-2022-39227"),
    TokenAttack("truncated", "jose", "signature segment cut off (two segments)",
                lambda w: w.token().rsplit(".", 1)[0], "malformed"),
    TokenAttack("truncated-signature", "jose", "signature cut short",
                _truncated_signature, "bad_signature"),
    TokenAttack("padding", "jose", "base64url with `=` padding",
                lambda w: _token_parts(w, lambda h, p, s: f"{h}.{p}==.{s}"), "malformed"),
    TokenAttack("std-base64", "jose", "header in standard, padded base64",
                lambda w: _token_parts(w, lambda h, p, s: f"{b64_std(_unaligned(json.dumps(_header(w))))}.{p}.{s}"),
                "malformed"),
    TokenAttack("noncanonical-base64", "jose", "signature with non-zero trailing bits (a second spelling)",
                lambda w: _token_parts(w, lambda h, p, s: f"{h}.{p}.{s[:-1]}{_stray_bits(s[-1])}"), "malformed"),
    TokenAttack("header-oversized", "jose", "header segment over 2 KiB",
                lambda w: _signed(w, _header(w, pad="x" * 3000)), "too_large"),
    TokenAttack("token-oversized", "jose", "token over 16 KiB",
                lambda w: _signed(w, _header(w), w.claims(pad="x" * 20_000)), "too_large"),
    TokenAttack("signature-oversized", "jose", "signature segment over 1 KiB",
                lambda w: raw_jws(_header(w), w.claims(), bytes(2000)), "too_large"),
    TokenAttack("dup-header-alg", "jose", "header repeats `alg` (`none`, then `ES256`)",
                lambda w: _signed(w, ('{"alg":"none","alg":"ES256","kid":"%s"}' % _key(w, "EC").kid).encode()),
                "duplicate_member"),
    TokenAttack("dup-payload-sub", "jose", "validly signed payload repeating `sub` (last one wins in PyJWT/joserfc)",
                lambda w: _signed(w, _header(w), _claims_bytes(w, '"sub": "admin"')), "duplicate_member"),
    TokenAttack("dup-payload-iss", "jose", "validly signed payload repeating `iss`",
                lambda w: _signed(w, _header(w), _claims_bytes(w, f'"iss": "{UNTRUSTED}"')), "duplicate_member"),
    TokenAttack("payload-array", "jose", "payload that is a JSON array",
                lambda w: _signed(w, _header(w), b"[1,2]"), "malformed"),
    TokenAttack("header-not-json", "jose", "header that is not JSON",
                lambda w: _signed(w, b"alg=ES256"), "malformed"),
    TokenAttack("non-ascii", "jose", "token with non-ASCII characters",
                lambda w: w.token() + "\u00e9", "malformed"),
    TokenAttack("payload-nan", "jose", "payload with `NaN`",
                lambda w: _signed(w, _header(w), _claims_bytes(w, '"x": NaN')), "malformed"),
    TokenAttack("payload-deep-nesting", "jose", "payload nested 5,000 levels deep",
                lambda w: raw_jws(_header(w), b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}", bytes(64)), "malformed"),
    TokenAttack("tampered", "jose", "payload changed after signing (`sub` → admin)", _tampered, "bad_signature"),
    TokenAttack("wrong-key-same-kid", "jose", "signed by another key under the issuer's `kid`",
                lambda w: sign_raw(_header(w), w.claims(), new_key("ES256")), "bad_signature"),
    # claims
    TokenAttack("exp-missing", "claims", "no `exp`", _mint(exp=None), "bad_claim"),
    TokenAttack("exp-past", "claims", "`exp` an hour ago", _mint(exp=lambda: int(time.time()) - 3600), "expired"),
    TokenAttack("exp-absurd", "claims", "`exp = 1e20`", _mint(exp=1e20), "lifetime_too_long"),
    TokenAttack("exp-far", "claims", "`exp` ten years ahead", _mint(exp=lambda: int(time.time()) + 10 * 365 * 86400),
                "lifetime_too_long"),
    TokenAttack("exp-string", "claims", "`exp` as a string",
                _mint_raw(lambda w: w.claims(exp=str(int(time.time()) + 60))), "bad_claim"),
    TokenAttack("exp-bool", "claims", "`exp: true`", _mint(exp=True), "bad_claim"),
    TokenAttack("nbf-future", "claims", "`nbf` an hour ahead", _mint(nbf=lambda: int(time.time()) + 3600), "not_yet_valid"),
    TokenAttack("iat-future", "claims", "`iat` an hour ahead", _mint(iat=lambda: int(time.time()) + 3600),
                "issued_in_future"),
    TokenAttack("nbf-string", "claims", "`nbf` as a string", _mint(nbf="0"), "bad_claim"),
    TokenAttack("iat-string", "claims", "`iat` as a string", _mint(iat="1700000000"), "bad_claim"),
    TokenAttack("iss-missing", "claims", "no `iss`", _mint(iss=None), "bad_claim", max_fetches=0),
    TokenAttack("iss-list", "claims", "`iss` that is a list", _mint(iss=[MAIN]), "bad_claim", max_fetches=0),
    TokenAttack("iss-untrusted", "claims", "issuer not trusted (its keys are reachable)",
                lambda w: w.token(UNTRUSTED), "untrusted_issuer", max_fetches=0),
    TokenAttack("iss-prefix", "claims", "issuer with the trusted one as a prefix (`https://idp.test.evil.com`)",
                _mint(iss="https://idp.test.evil.com"), "untrusted_issuer", max_fetches=0),
    TokenAttack("iss-trailing-slash", "claims", "issuer with a trailing slash added",
                _mint(iss=MAIN + "/"), "untrusted_issuer", max_fetches=0),
    TokenAttack("iss-case", "claims", "issuer in other letter case",
                _mint(iss="https://IDP.test"), "untrusted_issuer", max_fetches=0),
    TokenAttack("iss-path-suffix", "claims", "untrusted issuer with the trusted one as a path suffix",
                _mint(iss=UNTRUSTED + "/" + MAIN), "untrusted_issuer", max_fetches=0),
    TokenAttack("iss-userinfo", "claims", "issuer `https://idp.test@evil.test`",
                _mint(iss="https://idp.test@evil.test"), "untrusted_issuer", max_fetches=0),
    TokenAttack("mixup-kid", "claims", "issuer mix-up: signed with B's key and `kid`, `iss` of A",
                lambda w: sign_raw(_header(w, issuer=SECOND), w.claims(), _key(w, "EC", SECOND)), "unknown_kid"),
    TokenAttack("mixup-nokid", "claims", "issuer mix-up: signed with B's key, no `kid`, `iss` of A",
                lambda w: sign_raw({"alg": "ES256"}, w.claims(), _key(w, "EC", SECOND)), "bad_signature"),
    TokenAttack("aud-missing", "claims", "no `aud`", _mint(aud=None), "wrong_audience"),
    TokenAttack("aud-wrong", "claims", "`aud` of another service", _mint(aud="payments"), "wrong_audience"),
    TokenAttack("aud-list-wrong", "claims", "`aud` list without Baton", _mint(aud=["payments", "orders"]),
                "wrong_audience"),
    TokenAttack("aud-empty-list", "claims", "`aud: []`", _mint(aud=[]), "wrong_audience", cve="CVE-2020-26160"),
    TokenAttack("aud-number", "claims", "`aud` that is a number", _mint(aud=7), "bad_claim"),
    TokenAttack("sub-missing", "claims", "no `sub`", _mint(sub=None), "bad_claim"),
    TokenAttack("sub-empty", "claims", "empty `sub`", _mint(sub=""), "bad_claim"),
    TokenAttack("sub-number", "claims", "`sub` that is a number", _mint(sub=42), "bad_claim"),
    TokenAttack("sub-huge", "claims", "`sub` of 1,025 characters", _mint(sub="a" * 1025), "bad_claim"),
    TokenAttack("scope-list", "claims", "`scope` that is a list", _mint(scope=["orders:read"]), "bad_claim"),
    TokenAttack("jti-number", "claims", "`jti` that is a number", _mint(jti=1), "bad_claim"),
    TokenAttack("client-id-object", "claims", "`client_id` that is an object", _mint(client_id={"a": 1}),
                "bad_claim"),
    # act chains in external tokens
    TokenAttack("act-1000-deep", "policy", "external token with a 1,000-deep `act` chain",
                lambda w: w.idp.mint(_claims_bytes(w, '"act": ' + _nested_act_text(1000))), "too_large"),
    TokenAttack("act-too-deep", "policy", "external token with an `act` chain deeper than the limit",
                _mint(act=_nested_act(12)), "act_too_deep"),
    TokenAttack("act-not-object", "policy", "forged `act` that is a string", _mint(act="root"), "bad_claim"),
    TokenAttack("act-no-sub", "policy", "forged `act` without `sub`", _mint(act={"iss": MAIN}), "bad_claim"),
    TokenAttack("act-iss-number", "policy", "forged `act` with a numeric `iss`", _mint(act={"sub": "a", "iss": 1}),
                "bad_claim"),
    TokenAttack("act-nested-bad", "policy", "forged `act` whose nested actor is malformed",
                _mint(act={"sub": "a", "act": {"sub": ""}}), "bad_claim"),
    # type confusion
    TokenAttack("id-token-typed-at", "type", "ID token carrying `typ: at+jwt`",
                lambda w: w.idp.mint(w.claims(), header_overrides={"typ": "at+jwt"}), "wrong_type",
                token_type=TT_ID_TOKEN),
    TokenAttack("id-token-not-allowed", "type", "ID token from an issuer that only may send access tokens",
                lambda w: w.token(STRICT), "wrong_type", token_type=TT_ID_TOKEN),
    TokenAttack("typ-jwt-where-at-required", "type", "`typ: JWT` from an issuer that must send `at+jwt`",
                lambda w: w.token(STRICT), "wrong_type"),
    TokenAttack("typ-dpop", "type", "a DPoP proof (`typ: dpop+jwt`) as a token",
                lambda w: w.idp.mint(w.claims(), header_overrides={"typ": "dpop+jwt"}), "wrong_type"),
    TokenAttack("typ-secevent", "type", "a security event token (`typ: secevent+jwt`)",
                lambda w: w.idp.mint(w.claims(), header_overrides={"typ": "secevent+jwt"}), "wrong_type"),
    TokenAttack("typ-logout", "type", "a logout token (`typ: logout+jwt`) as an ID token",
                lambda w: w.idp.mint(w.claims(), header_overrides={"typ": "logout+jwt"}), "wrong_type",
                token_type=TT_ID_TOKEN),
    TokenAttack("typ-not-string", "type", "`typ` that is a number",
                lambda w: _signed(w, _header(w, typ=1)), "malformed"),
    TokenAttack("client-assertion", "type", "a client assertion (`iss` = a client id) as a token",
                _client_assertion_as_token, "untrusted_issuer", max_fetches=0),
    TokenAttack("baton-introspection-jwt", "type", "Baton's own signed introspection response",
                _introspection_jwt, "wrong_type"),
    TokenAttack("baton-checkpoint", "type", "Baton's own signed chain checkpoint",
                _checkpoint_jws, "bad_claim"),
    TokenAttack("baton-checkpoint-iss", "type", "a Baton-signed checkpoint-typed JWS with Baton's `iss`",
                _checkpoint_with_iss, "wrong_type"),
    TokenAttack("baton-token-as-id-token", "type", "a Baton access token presented as an ID token",
                lambda w: _baton_token(w, "as-id-token"), "wrong_type", token_type=TT_ID_TOKEN),
    TokenAttack("baton-forged-kid", "type", "Baton-looking token signed by an attacker under Baton's `kid`",
                lambda w: _attacker_baton_token(w, True), "bad_signature"),
    TokenAttack("baton-forged-nokid", "type", "Baton-looking token signed by an attacker, no `kid`",
                lambda w: _attacker_baton_token(w, False), "bad_signature"),
    TokenAttack("baton-not-logged", "type", "a Baton-signed token with no `TokenExchanged` event",
                _unlogged_baton_token, "unknown"),
    # lineage and revocation
    TokenAttack("revoked-ancestor", "policy", "Baton token whose ancestor was revoked",
                _revoked_ancestor, "revoked", subject_client=("orders", "ledger")),
    TokenAttack("revoked-subject", "policy", "token of a subject revoked after it was issued",
                _revoked_subject, "revoked"),
    TokenAttack("expires-within-leeway", "policy", "token expired 5 s ago (inside leeway): no lifetime to pass on",
                _mint(exp=lambda: int(time.time()) - 5), "expired",
                subject_reason="subject_expired", actor_reason="subject_expired"),
]

# discovery/JWKS: tokens from trusted issuers whose metadata or keys are unusable
_DISCOVERY = [
    ("discovery-issuer-mismatch", "https://mismatch.test", "discovery document names another issuer", ()),
    ("jwks-redirect", "https://redirect.test", "discovery redirects to another host", ("evil.test",)),
    ("jwks-junk", "https://junk.test", "discovery/JWKS answer HTML", ()),
    ("jwks-down", "https://down.test", "discovery/JWKS answer HTTP 500", ()),
    ("jwks-slow", "https://slow.test", "discovery/JWKS slower than the fetch deadline", ()),
    ("jwks-too-many-keys", "https://manykeys.test", "JWK set with 80+ keys", ()),
    ("jwks-oversized", "https://huge.test", "JWK set larger than the 256 KiB cap", ()),
    ("jwks-symmetric", "https://symmetric.test", "JWK set publishing only a symmetric key", ()),
    ("jwks-private", "https://privkey.test", "JWK set publishing only a private key", ()),
    ("discovery-private-jwks", "https://disco-private.test", "discovery points jwks_uri at 10.20.30.40",
     ("10.20.30.40",)),
    ("jwks-private-address", "https://private.test", "configured jwks_uri on 10.0.0.5", ("10.0.0.5",)),
    ("jwks-link-local", "https://linklocal.test", "configured jwks_uri on 169.254.169.254 (cloud metadata)",
     ("169.254.169.254",)),
    ("jwks-ipv6-private", "https://v6private.test", "configured jwks_uri on fd00::1", ("fd00::1",)),
    ("jwks-plain-http", "https://plainhttp.test", "configured jwks_uri over plain http", ("plainhttp.test",)),
]
TOKEN_ATTACKS += [
    TokenAttack(f"{name}", "discovery", what, (lambda iss: lambda w: w.token(iss))(issuer), "issuer_unavailable",
                untouched=hosts)
    for name, issuer, what, hosts in _DISCOVERY
]


def _expand(attack: TokenAttack) -> list[Case]:
    def as_subject(w: World) -> Awaitable[Req]:
        async def build() -> Req:
            token = await _resolve(attack.make(w))
            client, audience = attack.subject_client
            return token_request(token, client, audience=audience, subject_token_type=attack.token_type)
        return build()

    def as_actor(w: World) -> Awaitable[Req]:
        async def build() -> Req:
            token = await _resolve(attack.make(w))
            return token_request(w.token(), actor_token=token, actor_token_type=attack.token_type)
        return build()

    common = dict(category=attack.category, status=400, error="invalid_request", cve=attack.cve,
                  max_fetches=attack.max_fetches, untouched=attack.untouched)
    return [
        Case(f"{attack.id}.subject", description=f"subject_token: {attack.description}", build=as_subject,
             reason=attack.subject_reason or f"subject_{attack.reason}", **common),  # type: ignore[arg-type]
        Case(f"{attack.id}.actor", description=f"actor_token: {attack.description}", build=as_actor,
             reason=attack.actor_reason or f"actor_{attack.reason}", **common),  # type: ignore[arg-type]
    ]


async def _resolve(value: Any) -> Any:
    if isinstance(value, Awaitable):
        return await value
    return value


# --------------------------------------------------------------------------- request shape


def _raw(body: bytes, content_type: str = "application/x-www-form-urlencoded", **headers: str) -> Builder:
    return lambda w: Req(content=body, headers={"content-type": content_type, **headers}, auth=basic())


def _repeat(name: str) -> Builder:
    def build(w: World) -> Req:
        pairs = exchange_form(w.token())
        present = dict(pairs)
        extra = [(name, present[name])] if name in present else [(name, "orders:read"), (name, "orders:read")]
        return Req(form=pairs + extra, auth=basic())
    return build


def _form(**params: str | None) -> Builder:
    return lambda w: token_request(w.token(), **params)


def _chunked_body(w: World) -> Req:
    chunks = [b"grant_type="] + [b"x" * 8192] * 10
    return Req(chunks=chunks, headers={"content-type": "application/x-www-form-urlencoded"}, auth=basic())


def _invalid(name: str, description: str, build: Builder, reason: str, error: str = "invalid_request",
             category: str = "request", cve: str | None = None) -> Case:
    return Case(name, category, description, build, 400, error, reason, cve=cve)


REQUEST_CASES = [
    *[_invalid(f"repeated-{n}", f"`{n}` sent twice", _repeat(n), "repeated_parameter")
      for n in ("grant_type", "subject_token", "subject_token_type", "scope", "requested_token_type")],
    *[_invalid(f"missing-{n}", f"`{n}` missing", _form(**{n: None}), "missing_parameter")
      for n in ("grant_type", "subject_token", "subject_token_type")],
    _invalid("empty-subject-token", "`subject_token` present but empty (= omitted)", _form(subject_token=""),
             "missing_parameter"),
    _invalid("content-type-json", "JSON body", _raw(b'{"grant_type":"x"}', "application/json"), "wrong_content_type"),
    _invalid("content-type-text", "text/plain body", _raw(b"grant_type=x", "text/plain"), "wrong_content_type"),
    _invalid("content-type-multipart", "multipart/form-data body",
             _raw(b"--b\r\n\r\n--b--", "multipart/form-data; boundary=b"), "wrong_content_type"),
    _invalid("content-type-missing", "no Content-Type", lambda w: Req(content=b"grant_type=x", auth=basic()),
             "wrong_content_type"),
    _invalid("body-oversized", "body over `server.max_body_bytes`", _raw(b"a=" + b"x" * 70_000), "body_too_large"),
    _invalid("body-oversized-chunked", "chunked body over the limit (no Content-Length)", _chunked_body,
             "body_too_large"),
    _invalid("body-not-utf8", "body that is not UTF-8", _raw(b"grant_type=%ff%fe"), "malformed_body"),
    _invalid("body-nul", "NUL character in a parameter", _raw(b"grant_type=a%00b"), "malformed_body"),
    _invalid("subject-type-saml", "`subject_token_type` saml2", _form(subject_token_type="urn:ietf:params:oauth:token-type:saml2"),
             "unsupported_token_type"),
    _invalid("subject-type-refresh", "`subject_token_type` refresh_token",
             _form(subject_token_type="urn:ietf:params:oauth:token-type:refresh_token"), "unsupported_token_type"),
    _invalid("subject-type-junk", "`subject_token_type` an arbitrary string", _form(subject_token_type="jwt"),
             "unsupported_token_type"),
    _invalid("actor-type-unknown", "`actor_token_type` Baton does not accept",
             lambda w: token_request(w.token(), actor_token=w.token(sub="svc"), actor_token_type="urn:x"),
             "unsupported_token_type"),
    _invalid("actor-token-without-type", "`actor_token` without `actor_token_type`",
             lambda w: token_request(w.token(), actor_token=w.token(sub="svc")), "missing_parameter"),
    _invalid("actor-type-without-token", "`actor_token_type` without `actor_token`",
             _form(actor_token_type=TT_ACCESS_TOKEN), "unexpected_parameter"),
    _invalid("requested-refresh-token", "`requested_token_type` refresh_token",
             _form(requested_token_type="urn:ietf:params:oauth:token-type:refresh_token"),
             "unsupported_requested_token_type"),
    _invalid("requested-id-token", "`requested_token_type` id_token", _form(requested_token_type=TT_ID_TOKEN),
             "unsupported_requested_token_type"),
    *[_invalid(f"grant-{g.rsplit(':', 1)[-1]}", f"`grant_type={g}`", _form(grant_type=g), "unsupported_grant_type",
               error="unsupported_grant_type")
      for g in ("client_credentials", "password", "authorization_code", "urn:ietf:params:oauth:grant-type:jwt-bearer",
                GRANT_TOKEN_EXCHANGE.upper())],
    _invalid("resource-relative", "`resource` not an absolute URI", _form(audience=None, resource="/billing"),
             "malformed_resource", error="invalid_target"),
    _invalid("resource-fragment", "`resource` with a fragment",
             _form(audience=None, resource="https://billing.example.com/api#x"), "malformed_resource",
             error="invalid_target"),
    _invalid("resource-no-scheme", "`resource` without a scheme", _form(audience=None, resource="billing.example.com"),
             "malformed_resource", error="invalid_target"),
]

# --------------------------------------------------------------------------- client authentication


def _auth_case(name: str, description: str, build: Builder, reason: str, cve: str | None = None,
               status: int = 401, error: str = "invalid_client") -> Case:
    return Case(name, "client-auth", description, build, status, error, reason, cve=cve)


def _with_auth(auth: tuple[str, str] | None, **params: str | None) -> Builder:
    return lambda w: Req(form=exchange_form(w.token(), **params), auth=auth)


def _basic_header(value: str) -> Builder:
    return lambda w: Req(form=exchange_form(w.token()), headers={"authorization": value})


def _assertion(client: str = "pkjwt", key_of: str | None = None, header: dict[str, Any] | None = None,
               alg: str = "ES256", form_extra: dict[str, str] | None = None, **claims: Any) -> Builder:
    def build(w: World) -> Req:
        key = w.client_keys[key_of or ("pkjwt" if client not in w.client_keys else client)]
        head = header if header is not None else {"alg": alg, "kid": key.kid}
        token = sign_raw(head, assertion_claims(client, **claims), key, alg)
        return Req(form=assertion_form(token, w.token(), **(form_extra or {})))
    return build


def _wrong_assertion_type(w: World) -> Req:
    pairs = _assertion()(w).form or []
    return Req(form=[(k, "urn:x" if k == "client_assertion_type" else v) for k, v in pairs])


async def _replayed(w: World) -> Req:
    key = w.client_keys["pkjwt"]
    token = sign_raw({"alg": "ES256", "kid": key.kid}, assertion_claims(), key)
    first = await w.http.post("/introspect", data=dict(assertion_form(token)))
    assert first.status_code == 200, first.text
    return Req(form=assertion_form(token, w.token()))


def _hmac_assertion(w: World) -> Req:
    key = w.client_keys["pkjwt"]
    token = hmac_jws({"alg": "HS256", "kid": key.kid}, assertion_claims(), key.as_pem(private=False))
    return Req(form=assertion_form(token, w.token()))


def _none_assertion(w: World) -> Req:
    return Req(form=assertion_form(raw_jws({"alg": "none"}, assertion_claims(), b"x"), w.token()))


def _embedded_jwk_assertion(w: World) -> Req:
    attacker = new_key("ES256")
    token = sign_raw({"alg": "ES256", "jwk": attacker.as_dict(private=False)}, assertion_claims(), attacker)
    return Req(form=assertion_form(token, w.token()))


CLIENT_AUTH_CASES = [
    _auth_case("auth-none", "no client authentication at all", _with_auth(None), "no_client_auth"),
    _auth_case("auth-basic-and-post", "Basic and client_secret_post at once",
               _with_auth(basic(), client_id="frontend", client_secret="frontend-secret"), "multiple_auth_methods"),
    _auth_case("auth-basic-and-assertion", "Basic and a client assertion at once",
               lambda w: Req(form=assertion_form("a.b.c", w.token()), auth=basic()), "multiple_auth_methods"),
    _auth_case("auth-post-and-assertion", "client_secret_post and a client assertion at once",
               lambda w: Req(form=assertion_form("a.b.c", w.token(), client_id="poster", client_secret="x")),
               "multiple_auth_methods"),
    _auth_case("auth-wrong-secret-basic", "wrong secret (Basic)", _with_auth(("frontend", "guess")), "bad_secret"),
    _auth_case("auth-wrong-secret-post", "wrong secret (client_secret_post)",
               _with_auth(None, client_id="poster", client_secret="guess"), "bad_secret"),
    _auth_case("auth-empty-secret", "empty secret (Basic)", _with_auth(("frontend", "")), "bad_secret"),
    _auth_case("auth-long-secret", "10 KiB secret (Basic)", _with_auth(("frontend", "x" * 10_000)), "bad_secret"),
    _auth_case("auth-unknown-basic", "unknown client (Basic)", _with_auth(("ghost", "x")), "unknown_client"),
    _auth_case("auth-unknown-post", "unknown client (client_secret_post)",
               _with_auth(None, client_id="ghost", client_secret="x"), "unknown_client"),
    _auth_case("auth-wrong-method", "client registered for Basic uses client_secret_post",
               _with_auth(None, client_id="frontend", client_secret="frontend-secret"), "wrong_auth_method"),
    _auth_case("auth-secret-for-pkjwt", "private_key_jwt client sends a secret", _with_auth(("pkjwt", "x")),
               "wrong_auth_method"),
    _auth_case("auth-client-id-mismatch", "Basic for one client, form `client_id` of another",
               _with_auth(basic(), client_id="billing"), "client_id_mismatch"),
    _auth_case("auth-basic-not-base64", "Basic credentials that are not base64", _basic_header("Basic !!!"),
               "malformed_credentials"),
    _auth_case("auth-basic-no-colon", "Basic credentials without a colon",
               _basic_header("Basic " + b64_std(b"frontend")), "malformed_credentials"),
    _auth_case("auth-post-no-client-id", "client_secret without client_id",
               _with_auth(None, client_secret="poster-secret"), "malformed_credentials"),
    _auth_case("pkjwt-aud-issuer-of-idp", "assertion whose `aud` is another server (the IdP)",
               _assertion(aud=MAIN), "wrong_audience"),
    _auth_case("pkjwt-aud-other-endpoint", "assertion for Baton's introspection endpoint sent to /token",
               _assertion(aud=f"{BATON}/introspect"), "wrong_audience"),
    _auth_case("pkjwt-aud-missing", "assertion without `aud`", _assertion(aud=None), "wrong_audience"),
    _auth_case("pkjwt-expired", "expired assertion", _assertion(exp=int(time.time()) - 600), "assertion_expired"),
    _auth_case("pkjwt-long-lived", "assertion valid for a day", _assertion(exp=int(time.time()) + 86_400),
               "bad_assertion"),
    _auth_case("pkjwt-no-exp", "assertion without `exp`", _assertion(exp=None), "bad_assertion"),
    _auth_case("pkjwt-no-jti", "assertion without `jti`", _assertion(jti=None), "bad_assertion"),
    _auth_case("pkjwt-replayed", "assertion `jti` replayed", _replayed, "assertion_replayed"),
    _auth_case("pkjwt-hmac", "HMAC-signed assertion keyed with the client's public key", _hmac_assertion,
               "bad_assertion", cve="CVE-2015-9235"),
    _auth_case("pkjwt-alg-none", "assertion with `alg: none`", _none_assertion, "bad_assertion"),
    _auth_case("pkjwt-other-clients-key", "signed by another client's key (with its `kid`)",
               _assertion(key_of="pkjwt2"), "bad_assertion"),
    _auth_case("pkjwt-other-clients-key-nokid", "signed by another client's key (no `kid`)",
               _assertion(key_of="pkjwt2", header={"alg": "ES256"}), "bad_assertion"),
    _auth_case("pkjwt-embedded-jwk", "assertion carrying its own `jwk`", _embedded_jwk_assertion,
               "bad_assertion", cve="CVE-2018-0114"),
    _auth_case("pkjwt-iss-sub-differ", "assertion with `sub` ≠ `iss`", _assertion(sub="pkjwt2"), "bad_assertion"),
    _auth_case("pkjwt-unknown-client", "assertion for an unknown client", _assertion(client="ghost"),
               "unknown_client"),
    _auth_case("pkjwt-secret-client", "assertion for a client registered for Basic", _assertion(client="frontend"),
               "wrong_auth_method"),
    _auth_case("pkjwt-wrong-type", "wrong `client_assertion_type`", _wrong_assertion_type, "bad_assertion_type"),
    _auth_case("pkjwt-typ-at-jwt", "access token (`typ: at+jwt`) used as an assertion",
               lambda w: _assertion(header={"alg": "ES256", "kid": w.client_keys["pkjwt"].kid, "typ": "at+jwt"})(w),
               "bad_assertion"),
    _auth_case("pkjwt-form-id-mismatch", "assertion for one client, form `client_id` of another",
               _assertion(form_extra={"client_id": "pkjwt2"}), "client_id_mismatch"),
    _auth_case("pkjwt-keys-private-address", "client whose jwks_uri is a private address",
               _assertion(client="farkeys", key_of="pkjwt"), "client_keys_unavailable"),
    _auth_case("introspect-no-auth", "/introspect without client authentication",
               lambda w: Req(form=[("token", "x")], path="/introspect"), "no_client_auth"),
    _auth_case("revoke-wrong-secret", "/revoke with a wrong secret",
               lambda w: Req(form=[("token", "x")], auth=("frontend", "guess"), path="/revoke"), "bad_secret"),
    _auth_case("admin-bad-bearer", "/admin/revoke with a wrong bearer credential",
               lambda w: Req(form=[("jti", "x")], headers={"authorization": "Bearer guess"}, path="/admin/revoke"),
               "admin_auth_failed", error="invalid_token"),
    _auth_case("admin-not-admin", "/admin/revoke by a client that is not an administrator",
               lambda w: Req(form=[("jti", "x")], auth=basic(), path="/admin/revoke"), "not_admin",
               status=403, error="insufficient_scope"),
]

# --------------------------------------------------------------------------- policy


def _policy(name: str, description: str, build: Builder, reason: str, error: str = "invalid_request",
            cve: str | None = None, status: int = 400) -> Case:
    return Case(name, "policy", description, build, status, error, reason, cve=cve)


def _delegate(subject_claims: dict[str, Any], actor_iss: str = MAIN, actor_sub: str = "svc-frontend") -> Builder:
    return lambda w: token_request(w.token(**subject_claims), actor_token=w.token(actor_iss, sub=actor_sub),
                                   actor_token_type=TT_ACCESS_TOKEN)


async def _chain(w: World, sub: str, length: int) -> str:
    token = await _baton_token(w, sub)
    hops = [("billing", "orders"), ("orders", "ledger")]
    for client, audience in hops[: length - 1]:
        token = await w.issue(token, client=client, audience=audience)
    return token


async def _depth_global(w: World) -> Req:
    return token_request(await _chain(w, "deep-global", 3), client="ledger", audience="orders")


async def _depth_audience(w: World) -> Req:
    return token_request(await _chain(w, "deep-shallow", 1), client="billing", audience="shallow")


async def _stranger(w: World) -> Req:
    return token_request(await _baton_token(w, "stranger"), client="orders", audience="ledger")


POLICY_CASES = [
    _policy("scope-widening", "scope the audience does not have", _form(audience="billing", scope="billing:admin"),
            "scope_not_allowed", error="invalid_scope"),
    _policy("scope-client-lacks", "scope the subject and audience have but the client may not get",
            lambda w: token_request(w.token(scope="orders:read orders:write"), scope="orders:write"),
            "scope_not_allowed", error="invalid_scope"),
    _policy("scope-subject-lacks", "scope the subject token does not hold",
            lambda w: token_request(w.idp.mint(w.idp.claims(scope="billing:read")), audience="billing",
                                    scope="billing:write"), "scope_not_allowed", error="invalid_scope"),
    _policy("scope-other-audience", "scope of another audience", _form(audience="billing", scope="orders:read"),
            "scope_not_allowed", error="invalid_scope"),
    _policy("scope-from-scp-absent", "scope requested when the subject carries none",
            lambda w: token_request(w.idp.mint(w.idp.claims()), scope="orders:read"), "scope_not_allowed",
            error="invalid_scope"),
    *[_policy(f"scope-malformed-{n}", f"malformed scope: {d}", _form(scope=s), "malformed_scope", error="invalid_scope")
      for n, d, s in (("quote", 'a `"`', 'orders:"read'), ("backslash", "a backslash", "orders\\read"),
                      ("double-space", "an empty scope token", "orders:read  orders:read"),
                      ("non-ascii", "a non-ASCII character", "orders:r\u00e9ad"), ("tab", "a tab", "orders:read\tx"))],
    _policy("audience-unknown", "audience Baton does not know", _form(audience="payments"), "unknown_audience",
            error="invalid_target"),
    _policy("audience-not-allowed", "audience the client may not obtain tokens for", _form(audience="ledger"),
            "audience_not_allowed", error="invalid_target", cve="CVE-2022-1245"),
    _policy("resource-bypass", "`resource` naming an audience outside the client's allow-list",
            lambda w: token_request(w.token(), client="billing", audience=None,
                                    resource="https://billing.example.com/api"),
            "audience_not_allowed", error="invalid_target", cve="CVE-2022-1245"),
    _policy("resource-unknown", "`resource` Baton does not know", _form(audience=None, resource="https://x.example"),
            "unknown_resource", error="invalid_target"),
    _policy("targets-conflict", "`audience` and `resource` naming two different targets",
            _form(audience="orders", resource="https://billing.example.com/api"), "multiple_targets",
            error="invalid_target"),
    _policy("target-missing", "no target for a client allowed several", _form(audience=None), "no_target",
            error="invalid_target"),
    _policy("no-exchange-rights", "client without exchange rights",
            lambda w: token_request(w.token(), client="noexchange"), "no_exchange_rights",
            error="unauthorized_client"),
    _policy("impersonation-not-permitted", "delegation-only client without an actor (impersonation)",
            lambda w: token_request(w.token(), client="delegator"), "actor_token_required"),
    _policy("delegation-not-permitted", "impersonation-only client sends an actor token",
            lambda w: token_request(w.token(), client="imponly", actor_token=w.token(sub="svc"),
                                    actor_token_type=TT_ACCESS_TOKEN), "delegation_not_allowed",
            error="unauthorized_client"),
    _policy("subject-issuer-not-allowed", "subject from an issuer the client may not present",
            lambda w: token_request(w.token(), client="restricted"), "issuer_not_allowed"),
    _policy("may-act-missing-actor", "`may_act` names a service, the client impersonates",
            lambda w: token_request(w.token(may_act={"sub": "svc-x"})), "may_act_mismatch"),
    _policy("may-act-client-actor", "`may_act` names another party than the client acting as itself",
            lambda w: Req(form=exchange_form(w.token(may_act={"sub": "svc-x"})) +
                          [("client_id", "poster"), ("client_secret", "poster-secret")]), "may_act_mismatch"),
    _policy("may-act-wrong-sub", "`may_act.sub` is another actor", _delegate({"may_act": {"sub": "svc-other"}}),
            "may_act_mismatch"),
    _policy("may-act-wrong-iss", "`may_act.iss` is another issuer than the actor's",
            _delegate({"may_act": {"sub": "svc-frontend", "iss": SECOND}}), "may_act_mismatch"),
    _policy("may-act-mixup", "actor with the right `sub` from another issuer than `may_act.iss`",
            _delegate({"may_act": {"sub": "svc-frontend", "iss": MAIN}}, actor_iss=SECOND), "may_act_mismatch"),
    _policy("may-act-malformed", "`may_act` that is a string", _delegate({"may_act": "svc-frontend"}),
            "may_act_malformed"),
    _policy("may-act-sub-number", "`may_act.sub` that is a number", _delegate({"may_act": {"sub": 5}}),
            "may_act_malformed"),
    _policy("depth-global", "chain one beyond `tokens.max_depth`", _depth_global, "depth_exceeded"),
    _policy("depth-audience", "chain one beyond the audience's `max_depth`", _depth_audience, "depth_exceeded"),
    _policy("baton-token-stranger", "Baton token presented by a client that neither holds nor receives it",
            _stranger, "subject_not_presentable"),
]

CASES: list[Case] = [
    *REQUEST_CASES,
    *CLIENT_AUTH_CASES,
    *[case for attack in TOKEN_ATTACKS for case in _expand(attack)],
    *POLICY_CASES,
]


def _fetch_rule(case: Case) -> str:
    if case.max_fetches == 0:
        return "none at all"
    return ", ".join(f"none to {h}" for h in case.untouched)


def rows() -> list[dict[str, Any]]:
    """The catalogue as plain rows (for the documentation table)."""
    return [
        {"id": c.id, "category": c.category, "description": c.description, "status": c.status, "error": c.error,
         "reason": c.reason, "cve": c.cve or "", "fetches": _fetch_rule(c)}
        for c in CASES
    ]


__all__ = ["CASES", "CATEGORIES", "Case", "TOKEN_ATTACKS", "TokenAttack", "rows", "CLIENT_ASSERTION_TYPE_JWT", "TT_JWT"]
