"""Strict JWS parsing and checks (app/jose_strict.py): every known JOSE trick is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt as pyjwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc.jwk import KeySet, RSAKey
from joserfc.jws import JWSRegistry

from app.jose_strict import (
    ParsedJWS,
    TokenRejected,
    check_act,
    check_time_claims,
    parse_compact,
    verify_signature,
)
from tests.support.fake_issuer import b64url, new_key, raw_jws, sign

NOW = 1_800_000_000.0
ALL_ALGS = {"ES256", "RS256", "PS256", "Ed25519", "EdDSA", "HS256", "none"}


@pytest.fixture(scope="module")
def ec():
    return new_key("ES256", "ec-1")


@pytest.fixture(scope="module")
def rsa():
    return new_key("RS256", "rsa-1")


@pytest.fixture(scope="module")
def ed():
    return new_key("Ed25519", "ed-1")


@pytest.fixture(scope="module")
def keyset(ec, rsa, ed):
    return KeySet.import_key_set({"keys": [k.as_dict(private=False) for k in (ec, rsa, ed)]})


def claims(**over):
    base = {"iss": "https://idp.test", "sub": "alice", "exp": NOW + 300, "iat": NOW}
    base.update(over)
    return base


def rejected(reason: str, fn, *args, **kwargs) -> TokenRejected:
    with pytest.raises(TokenRejected) as info:
        fn(*args, **kwargs)
    assert info.value.reason == reason, info.value
    return info.value


def check(token: str, keys: KeySet, algs=ALL_ALGS) -> ParsedJWS:
    parsed = parse_compact(token)
    verify_signature(parsed, keys, algs)
    return parsed


# --- valid tokens -------------------------------------------------------------------------


@pytest.mark.parametrize("alg,kid", [("ES256", "ec-1"), ("RS256", "rsa-1"), ("PS256", "rsa-1"), ("Ed25519", "ed-1")])
def test_valid_signatures_verify(alg, kid, keyset, ec, rsa, ed):
    """A correctly signed token of every supported algorithm parses and verifies."""
    key = {"ec-1": ec, "rsa-1": rsa, "ed-1": ed}[kid]
    parsed = check(sign({"alg": alg, "kid": kid}, claims(), key), keyset)
    assert parsed.claims["sub"] == "alice" and parsed.header["kid"] == kid


def test_token_signed_by_pyjwt_verifies(ec, keyset):
    """Interoperability: a token signed by an independent library (PyJWT) is accepted."""
    pem = ec.as_pem(private=True)
    token = pyjwt.encode(claims(), pem, algorithm="ES256", headers={"kid": "ec-1"})
    assert check(token, keyset).claims["iss"] == "https://idp.test"


def test_no_kid_uses_only_keys_that_fit_the_alg(ec, keyset):
    """Without a kid, the verifier tries only keys whose type fits the algorithm, and finds the right one."""
    token = sign({"alg": "ES256"}, claims(), ec)
    check(token, keyset)


# --- structure ------------------------------------------------------------------------------


def test_duplicate_member_in_payload_is_refused(ec, keyset):
    """Two `sub` members (PyJWT and joserfc keep the last) are refused even when validly signed."""
    payload = b'{"iss":"https://idp.test","sub":"alice","sub":"admin","exp":1800000300}'
    token = sign({"alg": "ES256", "kid": "ec-1"}, payload, ec)
    err = rejected("duplicate_member", parse_compact, token)
    assert "sub" in err.description


def test_duplicate_member_in_header_is_refused(ec):
    """A header naming `alg` twice is refused."""
    header = b'{"alg":"ES256","alg":"none"}'
    rejected("duplicate_member", parse_compact, raw_jws(header, claims(), b"sig"))


def test_duplicate_member_nested_in_act_is_refused():
    """Duplicates are refused at every depth, e.g. inside `act`."""
    payload = b'{"sub":"a","act":{"sub":"x","sub":"y"}}'
    rejected("duplicate_member", parse_compact, raw_jws({"alg": "ES256"}, payload, b"sig"))


@pytest.mark.parametrize(
    "token",
    [
        "a.b",
        "a.b.c.d",
        "..",
        "abc",
        "a.b.c.d.e.f",
    ],
)
def test_wrong_segment_count_is_malformed(token):
    """A compact JWS has exactly three non-empty segments."""
    rejected("malformed", parse_compact, token)


def test_jwe_is_refused():
    """A five-segment token (JWE) is refused where a JWS is expected."""
    rejected("jwe_not_accepted", parse_compact, "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d")


def test_json_serialization_is_refused(ec):
    """The JWS JSON serialization is refused; only compact tokens are accepted."""
    token = sign({"alg": "ES256"}, claims(), ec)
    h, p, s = token.split(".")
    rejected("malformed", parse_compact, json.dumps({"protected": h, "payload": p, "signature": s}))


@pytest.mark.parametrize("mutate", [lambda s: s + "=", lambda s: s + "==", lambda s: s[:-1] + "+", lambda s: s + " "])
def test_padding_and_foreign_characters_are_refused(ec, mutate):
    """Padding, standard-alphabet characters and whitespace in a segment are refused."""
    h, p, s = sign({"alg": "ES256"}, claims(), ec).split(".")
    rejected("malformed", parse_compact, f"{h}.{mutate(p)}.{s}")


def test_non_canonical_base64_is_refused(ec):
    """Stray low bits in the last base64url character (a second spelling of the same token) are refused."""
    h, p, s = sign({"alg": "ES256"}, claims(), ec).split(".")
    raw = base64.urlsafe_b64decode(s + "==")
    assert len(raw) % 3 != 0  # 64 bytes: the last character carries unused bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    tweaked = s[:-1] + alphabet[alphabet.index(s[-1]) ^ 1]
    assert base64.urlsafe_b64decode(tweaked + "==") == raw
    rejected("malformed", parse_compact, f"{h}.{p}.{tweaked}")


def test_oversized_token_and_segments_are_refused():
    """A token over the byte cap, or an oversized header or signature segment, is refused."""
    rejected("too_large", parse_compact, raw_jws({"alg": "ES256"}, {"x": "a" * 20_000}, b"s"))
    rejected("too_large", parse_compact, raw_jws({"alg": "ES256", "x": "a" * 3000}, {}, b"s"))
    rejected("too_large", parse_compact, raw_jws({"alg": "ES256"}, {}, b"s" * 2000))


@pytest.mark.parametrize(
    "payload",
    [b"[1,2]", b'"text"', b"null", b'{"exp": NaN}', b'{"exp": Infinity}', b'{"exp": 1e400}', b"\xff\xfe{}", b"{"],
)
def test_payload_must_be_a_plain_json_object(payload):
    """Arrays, scalars, NaN/Infinity, overflowing numbers, non-UTF-8 and broken JSON are malformed."""
    rejected("malformed", parse_compact, raw_jws({"alg": "ES256"}, payload, b"sig"))


@pytest.mark.parametrize("member", ["jwk", "jku", "x5u", "x5c", "crit", "b64", "zip"])
def test_embedded_keys_and_extensions_are_refused_even_when_signed(member, ec, keyset):
    """`jwk`/`jku`/`x5u`/`x5c` (keys chosen by the token), `crit`, `b64` and `zip` are refused."""
    values = {
        "jwk": ec.as_dict(private=False),
        "jku": "https://evil.test/keys",
        "x5u": "https://evil.test/cert",
        "x5c": ["MIIB"],
        "crit": ["exp"],
        "b64": True,
        "zip": "DEF",
    }
    header = {"alg": "ES256", "kid": "ec-1", member: values[member]}
    if member == "crit":
        header["exp"] = 1
    token = raw_jws(header, claims(), b"x" * 64)
    rejected("forbidden_header", parse_compact, token)


def test_header_alg_must_be_a_string():
    """A missing or non-string `alg` is malformed."""
    rejected("malformed", parse_compact, raw_jws({"typ": "JWT"}, claims(), b"s"))
    rejected("malformed", parse_compact, raw_jws({"alg": ["ES256"]}, claims(), b"s"))
    rejected("malformed", parse_compact, raw_jws({"alg": "ES256", "kid": 7}, claims(), b"s"))


# --- algorithms and keys ---------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_never_accepted(alg, keyset):
    """`alg: none` in any spelling is refused even if a caller lists it as allowed."""
    token = raw_jws({"alg": alg}, claims(), b"\x00")
    rejected("alg_not_allowed", check, token, keyset, {alg})


def test_hs256_signed_with_public_key_bytes_is_refused(rsa, ec):
    """The key-confusion attack (HS256 with the issuer's public key as HMAC secret) is refused."""
    keys = KeySet.import_key_set({"keys": [rsa.as_dict(private=False)]})
    public_pem = rsa.as_pem(private=False)
    header = b64url(json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode())
    payload = b64url(json.dumps(claims()).encode())
    mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}.{b64url(mac)}"
    rejected("alg_not_allowed", check, token, keys, {"HS256", "RS256"})


def test_ecdsa_zero_signature_is_refused(ec, keyset):
    """CVE-2022-21449 ("psychic signatures"): r = s = 0 never verifies, here and in the library underneath."""
    token = raw_jws({"alg": "ES256", "kid": "ec-1"}, claims(), bytes(64))
    rejected("bad_signature", check, token, keyset)
    parsed = parse_compact(token)
    assert JWSRegistry.algorithms["ES256"].verify(parsed.signing_input, bytes(64), ec) is False


def test_tampered_payload_fails_verification(ec, keyset):
    """Changing a claim after signing breaks the signature."""
    h, _, s = sign({"alg": "ES256", "kid": "ec-1"}, claims(), ec).split(".")
    forged = b64url(json.dumps(claims(sub="admin")).encode())
    rejected("bad_signature", check, f"{h}.{forged}.{s}", keyset)


def test_signature_by_unlisted_key_with_a_known_kid_fails():
    """A token signed by an attacker's key but naming a trusted kid fails verification."""
    trusted, attacker = new_key("ES256", "k1"), new_key("ES256", "k1")
    keys = KeySet.import_key_set({"keys": [trusted.as_dict(private=False)]})
    rejected("bad_signature", check, sign({"alg": "ES256", "kid": "k1"}, claims(), attacker), keys)


@pytest.mark.parametrize("kid", ["../../etc/passwd", "' OR '1'='1", "ec-1; DROP TABLE keys", "ec-1\u0000", "*"])
def test_kid_with_path_or_sql_characters_is_just_unknown(kid, ec, keyset):
    """A kid is only ever compared for equality: path or SQL characters simply match nothing."""
    token = sign({"alg": "ES256", "kid": kid}, claims(), ec)
    rejected("unknown_kid", check, token, keyset)


def test_alg_must_be_in_allowed_list(ec, keyset):
    """A valid signature with an algorithm the caller did not allow is refused."""
    token = sign({"alg": "ES256", "kid": "ec-1"}, claims(), ec)
    rejected("alg_not_allowed", check, token, keyset, {"RS256"})


def test_alg_key_type_mismatch_is_refused(ec, rsa, keyset):
    """An RS256 header naming an EC key (or ES256 naming an RSA key) never verifies."""
    token = raw_jws({"alg": "RS256", "kid": "ec-1"}, claims(), b"x" * 256)
    rejected("key_mismatch", check, token, keyset)
    token = raw_jws({"alg": "ES256", "kid": "rsa-1"}, claims(), b"x" * 64)
    rejected("key_mismatch", check, token, keyset)


def test_key_alg_and_use_members_are_honoured(ec):
    """A key published with `alg: RS256` or `use: enc` is not used to verify ES256."""
    for extra in ({"alg": "RS256"}, {"use": "enc"}, {"key_ops": ["encrypt"]}):
        jwk = {**ec.as_dict(private=False), **extra}
        keys = KeySet.import_key_set({"keys": [jwk]})
        rejected("key_mismatch", check, sign({"alg": "ES256", "kid": "ec-1"}, claims(), ec), keys)


@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")
def test_short_rsa_keys_are_not_used():
    """RSA keys under 2048 bits are not trusted to verify anything."""
    weak = RSAKey.generate_key(1024, {"kid": "weak"}, private=True)
    keys = KeySet.import_key_set({"keys": [weak.as_dict(private=False)]})
    token = sign({"alg": "RS256", "kid": "weak"}, claims(), weak)
    rejected("key_mismatch", check, token, keys)


def test_eddsa_name_verifies_ed25519_keys(ed, keyset):
    """`EdDSA` (the deprecated name) verifies against an Ed25519 key when allowed."""
    parsed = ParsedJWS(header={"alg": "EdDSA", "kid": "ed-1"}, claims={}, signing_input=b"m", signature=ed.private_key.sign(b"m"))
    verify_signature(parsed, keyset, {"EdDSA"})


# --- time claims -------------------------------------------------------------------------------


def times(**over):
    check_time_claims(claims(**over), now=NOW, leeway=30, max_lifetime=3600)


@pytest.mark.parametrize(
    "over,reason",
    [
        ({"exp": None}, "bad_claim"),
        ({"exp": str(int(NOW + 300))}, "bad_claim"),
        ({"exp": True}, "bad_claim"),
        ({"exp": [NOW + 300]}, "bad_claim"),
        ({"exp": NOW - 31}, "expired"),
        ({"exp": 1e20}, "lifetime_too_long"),
        ({"exp": NOW + 3631}, "lifetime_too_long"),
        ({"nbf": NOW + 31}, "not_yet_valid"),
        ({"nbf": "0"}, "bad_claim"),
        ({"iat": NOW + 31}, "issued_in_future"),
        ({"iat": str(int(NOW))}, "bad_claim"),
    ],
)
def test_time_claims_refused(over, reason):
    """Missing/non-numeric dates (strings, booleans), expired, absurdly far, or future nbf/iat are refused."""
    if over.get("exp", 0) is None:
        c = claims()
        del c["exp"]
        rejected(reason, check_time_claims, c, now=NOW, leeway=30, max_lifetime=3600)
    else:
        rejected(reason, times, **over)


def test_time_claims_within_leeway_pass():
    """Clock skew up to the leeway is tolerated in both directions."""
    times(exp=NOW - 29, nbf=NOW + 29, iat=NOW + 29)
    times(exp=NOW + 3629)
    times(exp=int(NOW) + 10)


# --- act -----------------------------------------------------------------------------------------


def nested_act(depth: int) -> dict:
    act: dict = {"sub": f"svc-{depth}"}
    for i in range(depth - 1, 0, -1):
        act = {"sub": f"svc-{i}", "act": act}
    return {"sub": "alice", "act": act}


def test_act_chain_within_depth_passes():
    """A well-formed nested `act` up to the limit is accepted; no `act` at all is fine."""
    check_act(nested_act(10), max_depth=10)
    check_act({"sub": "alice"})


def test_act_chain_too_deep_is_refused():
    """A deeper chain than allowed (e.g. a forged 900-deep one) is refused."""
    rejected("act_too_deep", check_act, nested_act(11), max_depth=10)
    rejected("act_too_deep", check_act, nested_act(900))


@pytest.mark.parametrize("act", [None, "svc", ["svc"], {}, {"sub": ""}, {"sub": 5}, {"sub": "a", "act": "b"}, {"sub": "a", "iss": 1}])
def test_malformed_act_is_refused(act):
    """`act` must be an object with a non-empty string `sub` at every level."""
    rejected("bad_claim", check_act, {"sub": "alice", "act": act})


# --- properties ------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
headers = st.dictionaries(
    st.sampled_from(["alg", "kid", "typ", "cty", "jwk", "crit", "x", "b64"]), json_values, max_size=4
) | st.fixed_dictionaries(
    {"alg": st.sampled_from(["ES256", "RS256", "PS256", "Ed25519", "EdDSA", "HS256", "none", ""]), "kid": st.text(max_size=8)}
)
payloads = st.dictionaries(
    st.sampled_from(["iss", "sub", "exp", "nbf", "iat", "act", "aud"]), json_values, max_size=6
) | json_values


def pipeline(token: str, keys: KeySet) -> None:
    parsed = parse_compact(token)
    check_time_claims(parsed.claims, now=NOW, leeway=30, max_lifetime=3600)
    check_act(parsed.claims)
    verify_signature(parsed, keys, ALL_ALGS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_random_bytes_only_ever_raise_token_rejected(data, keyset):
    """Arbitrary bytes (as text) never raise anything but TokenRejected and are never accepted."""
    with pytest.raises(TokenRejected):
        pipeline(data.decode("latin-1"), keyset)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=headers, payload=payloads, signature=st.binary(max_size=300))
def test_random_header_and_payload_only_ever_raise_token_rejected(header, payload, signature, keyset):
    """Random JSON headers/claims with random signatures are refused with TokenRejected, never another error."""
    with pytest.raises(TokenRejected):
        pipeline(raw_jws(header, json.dumps(payload).encode(), signature), keyset)


def test_descriptions_never_contain_the_token(ec, keyset):
    """Rejection descriptions are safe to log: they never echo the token."""
    token = sign({"alg": "ES256", "kid": "nope"}, claims(), ec)
    for bad in (token, token + "x", token.replace(".", "..")):
        with pytest.raises(TokenRejected) as info:
            check(bad, keyset)
        assert token.split(".")[1][:20] not in info.value.description



# --------------------------------------------------------------------------- fast paths agree with the strict ones

_json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)


def _reference_loads(data: bytes):
    """The strict decoder alone (what loads_strict was before its fast path)."""
    from app.jose_strict import _STRICT_JSON, _has_lone_surrogate

    value = _STRICT_JSON.decode(data.decode("utf-8"))
    if _has_lone_surrogate(value):
        raise ValueError("lone surrogate")
    return value


def _outcome(decode, data: bytes):
    try:
        return ("ok", decode(data))
    except (ValueError, RecursionError) as exc:
        return ("refused", type(exc).__name__ == "_DuplicateMember")


def _with_repeat(text: str, at: int) -> str:
    """``text`` with its first object member after position ``at`` written twice (if there is one)."""
    start = text.find('{"', at)
    if start < 0 or text[start + 1] == "}":
        return text
    member_end = text.find(",", start)
    body_end = text.find("}", start)
    end = body_end if member_end < 0 else min(member_end, body_end)
    member = text[start + 1:end]
    return text[: start + 1] + member + "," + text[start + 1:]


@settings(max_examples=300, deadline=None)
@given(value=_json_values, ascii_only=st.booleans(), repeat_at=st.none() | st.integers(0, 40))
def test_the_compact_fast_path_decodes_exactly_what_the_strict_decoder_does(value, ascii_only, repeat_at):
    """Compact JSON (as issuers write it), with or without escapes and repeated members: same value, same refusal."""
    from app.jose_strict import loads_strict

    text = json.dumps(value, separators=(",", ":"), ensure_ascii=ascii_only)
    if repeat_at is not None:
        text = _with_repeat(text, repeat_at)
    data = text.encode("utf-8", "surrogatepass")
    assert _outcome(loads_strict, data) == _outcome(_reference_loads, data)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=60) | st.text(alphabet='{}[]",:0123456789.eE+-\\u aatrfnl', max_size=40).map(str.encode))
def test_any_bytes_get_the_strict_decoders_outcome(data):
    """Bytes that are barely JSON (numbers, escapes, truncations): the fast path never accepts what the strict one refuses."""
    from app.jose_strict import loads_strict

    assert _outcome(loads_strict, data) == _outcome(_reference_loads, data)


_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _reference_b64(segment: str) -> bytes | None:
    """Canonical unpadded base64url by re-encoding: the decoded bytes, or None when refused."""
    import binascii
    import re

    if not re.fullmatch(r"[A-Za-z0-9_-]*", segment) or len(segment) % 4 == 1:
        return None
    try:
        data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return None
    return data if base64.urlsafe_b64encode(data).rstrip(b"=").decode() == segment else None


@settings(max_examples=500, deadline=None)
@given(segment=st.text(alphabet=_B64_ALPHABET + "=+/ ", max_size=12)
       | st.builds(lambda b, last: base64.urlsafe_b64encode(b).rstrip(b"=").decode()[:-1] + last,
                   st.binary(min_size=1, max_size=9), st.sampled_from(_B64_ALPHABET)))
def test_base64url_segments_are_judged_as_by_re_encoding(segment):
    """The last-character rule for stray bits refuses and accepts exactly what a decode and re-encode would."""
    from app.jose_strict import _b64decode

    try:
        got = _b64decode(segment, "segment")
    except TokenRejected:
        got = None
    assert got == _reference_b64(segment)
