"""Strict compact-JWS parsing and checks that joserfc and PyJWT leave open.

Both libraries accept a validly signed token whose JSON repeats a member (the
last ``sub`` wins), dates given as strings, ``exp = 1e20`` and a 900-deep
``act``; neither checks ``typ``. Everything here fails closed with
:class:`TokenRejected`, whose ``reason`` is a short machine code and whose
``description`` is human text that never contains the token.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Collection, Mapping
from typing import Any

import msgspec
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry


class TokenRejected(Exception):
    """A token (or client assertion) Baton refuses; ``reason`` is a machine code."""

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(f"{reason}: {description}")
        self.reason = reason
        self.description = description


class ParsedJWS(msgspec.Struct, frozen=True):
    """A compact JWS after strict parsing; the signature is not verified yet."""

    header: dict
    claims: dict
    signing_input: bytes
    signature: bytes


#: header members Baton refuses: keys or key URLs chosen by the token itself,
#: extensions it does not understand, unencoded or compressed payloads, JWE markers
FORBIDDEN_HEADER_MEMBERS = frozenset({"jku", "x5u", "jwk", "x5c", "crit", "b64", "zip", "enc", "epk"})

#: JWS alg -> (JWK kty, crv or None); only asymmetric algorithms ever appear here
KEY_FIT: Mapping[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "Ed25519": ("OKP", "Ed25519"),
    "EdDSA": ("OKP", "Ed25519"),
}
MIN_RSA_BITS = 2048
MAX_HEADER_SEGMENT = 2048
MAX_SIGNATURE_SEGMENT = 1024

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class _DuplicateMember(ValueError):
    pass


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for name, value in pairs:
        if name in obj:
            raise _DuplicateMember(name)
        obj[name] = value
    return obj


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# built once: json.loads with these hooks would construct a decoder per call
_STRICT_JSON = json.JSONDecoder(object_pairs_hook=_unique_object, parse_float=_finite_float, parse_constant=_no_constant)


_FAST_DECODE = msgspec.json.Decoder().decode
_FAST_ENCODE = msgspec.json.Encoder().encode


def loads_strict(data: bytes) -> Any:
    """Decode UTF-8 JSON refusing duplicate members, NaN/Infinity and overflowing numbers.

    Raises ``ValueError`` (duplicates: its subclass, with the member name as
    ``args[0]``) or ``RecursionError`` for absurd nesting.

    Compact JSON as issuers write it takes a fast path: msgspec decodes it and, if
    encoding the result gives back the very same bytes, no member can have been
    repeated (decoding keeps one of each name, so a repeat would be missing from
    the re-encoding) and no number was out of range. Anything else — whitespace,
    escapes other than control characters, number spellings msgspec writes
    differently, invalid JSON — is decoded by the strict decoder, which gives the
    precise error. (msgspec refuses unpaired surrogates itself, and writes a pair
    as UTF-8, so an escaped one never matches.)
    """
    try:
        value = _FAST_DECODE(data)
    except (msgspec.DecodeError, RecursionError):
        pass
    else:
        if _FAST_ENCODE(value) == data:
            return value
    value = _STRICT_JSON.decode(data.decode("utf-8"))
    if "\\u" in data.decode("utf-8", "replace").lower() and _has_lone_surrogate(value):
        # "\ud800" escapes decode to text that is not Unicode: it could never be re-encoded
        # into an issued token, an event or a database row
        raise ValueError("JSON text holds an unpaired UTF-16 surrogate")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


#: the last character of a canonical segment whose length is 2 or 3 (mod 4): the bits it carries
#: beyond the final byte must be zero (4 spare bits, then 2), so only these characters may end it
_CANONICAL_LAST = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}


def _b64decode(segment: str, what: str) -> bytes:
    # canonical unpadded base64url only, so one token has exactly one spelling
    # (no padding, no stray bits, no other chars)
    tail = len(segment) % 4
    if not _B64URL.fullmatch(segment) or tail == 1:
        raise TokenRejected("malformed", f"{what} is not unpadded base64url")
    if tail and segment[-1] not in _CANONICAL_LAST[tail]:
        raise TokenRejected("malformed", f"{what} is not canonical base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-tail % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenRejected("malformed", f"{what} is not base64url") from exc


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = loads_strict(data)
    except _DuplicateMember as exc:
        raise TokenRejected("duplicate_member", f"{what} repeats the member {str(exc.args[0])[:40]!r}") from None
    except (ValueError, RecursionError):
        raise TokenRejected("malformed", f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise TokenRejected("malformed", f"{what} is not a JSON object")
    return value


def _check_header(header: dict[str, Any]) -> None:
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise TokenRejected("malformed", "header alg is missing or not a string")
    forbidden = sorted(FORBIDDEN_HEADER_MEMBERS.intersection(header))
    if forbidden:
        raise TokenRejected("forbidden_header", f"header member {forbidden[0]!r} is not accepted")
    for name in ("kid", "typ", "cty"):
        if name in header and not isinstance(header[name], str):
            raise TokenRejected("malformed", f"header {name} is not a string")


def parse_compact(token: str, *, max_bytes: int = 16384) -> ParsedJWS:
    """Parse a compact JWS strictly (no signature check); raise :class:`TokenRejected`."""
    if not isinstance(token, str) or not token:
        raise TokenRejected("malformed", "token is empty or not a string")
    if len(token) > max_bytes:
        raise TokenRejected("too_large", f"token longer than {max_bytes} bytes")
    if not token.isascii():
        raise TokenRejected("malformed", "token contains non-ASCII characters")
    if token.lstrip().startswith("{"):
        raise TokenRejected("malformed", "JWS JSON serialization is not accepted; send a compact JWS")
    segments = token.split(".")
    if len(segments) == 5:
        raise TokenRejected("jwe_not_accepted", "encrypted tokens (JWE) are not accepted; send a signed JWT")
    if len(segments) != 3:
        raise TokenRejected("malformed", "a compact JWS has exactly three segments")
    header_b64, payload_b64, signature_b64 = segments
    if len(header_b64) > MAX_HEADER_SEGMENT or len(signature_b64) > MAX_SIGNATURE_SEGMENT:
        raise TokenRejected("too_large", "header or signature segment is oversized")
    if not header_b64 or not payload_b64 or not signature_b64:
        raise TokenRejected("malformed", "header, payload and signature must all be present")
    header = _json_object(_b64decode(header_b64, "header"), "header")
    _check_header(header)
    claims = _json_object(_b64decode(payload_b64, "payload"), "payload")
    signature = _b64decode(signature_b64, "signature")
    return ParsedJWS(
        header=header,
        claims=claims,
        signing_input=f"{header_b64}.{payload_b64}".encode("ascii"),
        signature=signature,
    )


def key_fits(key: Any, alg: str) -> bool:
    """True when a JWK may verify ``alg``: right type and curve, RSA ≥ 2048 bits, ``use``/``alg``/``key_ops`` agree."""
    fit = KEY_FIT.get(alg)
    if fit is None or key.key_type != fit[0]:
        return False
    if fit[1] is not None and key.get("crv") != fit[1]:
        return False
    if fit[0] == "RSA" and key.public_key.key_size < MIN_RSA_BITS:
        return False
    if key.get("use") not in (None, "sig"):
        return False
    if key.get("alg") not in (None, alg):
        return False
    ops = key.get("key_ops")
    return ops is None or "verify" in ops


def _zero_ecdsa_half(signature: bytes) -> bool:
    half = len(signature) // 2
    return half == 0 or not any(signature[:half]) or not any(signature[half:])


def verify_signature(parsed: ParsedJWS, keys: KeySet, allowed_algs: Collection[str]) -> None:
    """Verify ``parsed`` with a key from ``keys``; ``none`` and HMAC are never accepted."""
    alg = parsed.header["alg"]
    if alg not in KEY_FIT or alg not in allowed_algs:
        raise TokenRejected("alg_not_allowed", f"algorithm {alg[:20]!r} is not accepted here")
    kid = parsed.header.get("kid")
    if kid is not None:
        candidates = [k for k in keys.keys if k.kid == kid]
        if not candidates:
            raise TokenRejected("unknown_kid", "no key with the token's kid")
    else:
        candidates = list(keys.keys)
    candidates = [k for k in candidates if key_fits(k, alg)]
    if not candidates:
        raise TokenRejected("key_mismatch", f"no key of a type that fits {alg}")
    if alg.startswith("ES") and _zero_ecdsa_half(parsed.signature):
        raise TokenRejected("bad_signature", "signature verification failed")  # CVE-2022-21449
    model = JWSRegistry.algorithms["Ed25519" if alg == "EdDSA" else alg]
    for key in candidates:
        try:
            if model.verify(parsed.signing_input, parsed.signature, key):
                return
        except Exception:  # a malformed key or signature is a failed verification, never a 500
            continue
    raise TokenRejected("bad_signature", "signature verification failed")


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TokenRejected("bad_claim", f"{name} must be a number of seconds (NumericDate)")
    return float(value)


def check_time_claims(claims: Mapping[str, Any], *, now: float, leeway: int, max_lifetime: int) -> None:
    """``exp`` required and in the future, not absurdly far; ``nbf``/``iat`` not in the future."""
    exp = _numeric_date(claims, "exp")
    if exp is None:
        raise TokenRejected("bad_claim", "exp is required")
    if exp <= now - leeway:
        raise TokenRejected("expired", "token has expired")
    if exp - now > max_lifetime + leeway:
        raise TokenRejected("lifetime_too_long", f"exp is more than {max_lifetime} s ahead")
    nbf = _numeric_date(claims, "nbf")
    if nbf is not None and nbf > now + leeway:
        raise TokenRejected("not_yet_valid", "token is not valid yet (nbf)")
    iat = _numeric_date(claims, "iat")
    if iat is not None and iat > now + leeway:
        raise TokenRejected("issued_in_future", "token was issued in the future (iat)")


def check_act(claims: Mapping[str, Any], max_depth: int = 10) -> None:
    """``act`` (RFC 8693 §4.1), if present: objects with a string ``sub``, at most ``max_depth`` deep."""
    if "act" not in claims:
        return
    act = claims["act"]
    depth = 0
    while True:
        depth += 1
        if depth > max_depth:
            raise TokenRejected("act_too_deep", f"act chain deeper than {max_depth}")
        if not isinstance(act, dict):
            raise TokenRejected("bad_claim", "act must be a JSON object")
        sub = act.get("sub")
        if not isinstance(sub, str) or not sub:
            raise TokenRejected("bad_claim", "act.sub must be a non-empty string")
        if "iss" in act and not isinstance(act["iss"], str):
            raise TokenRejected("bad_claim", "act.iss must be a string")
        if "act" not in act:
            return
        act = act["act"]
