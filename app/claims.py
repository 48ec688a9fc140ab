"""Claims of the token Baton issues (RFC 9068 JWT access token, RFC 8693 ``act``).

Delegation nests ``act``: the current actor outermost, prior actors inside
(RFC 8693 §4.1). The lifetime never outlives the subject (or actor) token
unless the configuration says so. Audience claim mapping copies, renames or
sets claims, but can never write a claim Baton owns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .config import RESERVED_CLAIMS, ClaimsMapping

#: claims from the subject token carried over as is (RFC 9068 §2.2.1)
CARRIED_CLAIMS = ("auth_time", "acr", "amr")


def actor_claim(actor_sub: str, actor_iss: str | None, prior: Mapping[str, Any] | None, client_id: str | None = None) -> dict[str, Any]:
    """The ``act`` claim for a delegation: the new actor with the prior chain nested inside."""
    act: dict[str, Any] = {"sub": actor_sub}
    if actor_iss:
        act["iss"] = actor_iss
    if client_id:
        act["client_id"] = client_id
    if prior:
        act["act"] = dict(prior)
    return act


def act_depth(act: Mapping[str, Any] | None) -> int:
    """How many actors an ``act`` chain holds."""
    depth = 0
    while isinstance(act, Mapping):
        depth += 1
        act = act.get("act")
    return depth


def act_actors(act: Mapping[str, Any] | None) -> list[tuple[str | None, str]]:
    """The (iss, sub) of every actor in a chain, outermost (current) first."""
    actors: list[tuple[str | None, str]] = []
    while isinstance(act, Mapping):
        actors.append((act.get("iss"), str(act.get("sub"))))
        act = act.get("act")
    return actors


def expiry(now: int, ttl: int, bounds: list[float], extend: bool) -> int:
    """Issued ``exp``: now + ttl, capped by every bound (subject/actor ``exp``) unless extension is allowed."""
    exp = now + ttl
    if not extend:
        for bound in bounds:
            exp = min(exp, int(bound))
    return exp


def mapped_claims(mapping: ClaimsMapping, source: Mapping[str, Any]) -> dict[str, Any]:
    """Claims for the target audience: copied, renamed and fixed ones; reserved names never."""
    out: dict[str, Any] = {}
    for name in mapping.copy:
        if name in source and name not in RESERVED_CLAIMS:
            out[name] = source[name]
    for old, new in mapping.rename.items():
        if old in source and new not in RESERVED_CLAIMS:
            out[new] = source[old]
    for name, value in mapping.set.items():
        if name not in RESERVED_CLAIMS:
            out[name] = value
    return out


def build_claims(
    *,
    issuer: str,
    subject: str,
    audience: str,
    client_id: str,
    jti: str,
    now: int,
    exp: int,
    scopes: list[str],
    act: Mapping[str, Any] | None,
    subject_claims: Mapping[str, Any],
    mapping: ClaimsMapping,
) -> dict[str, Any]:
    """The complete claim set of an issued token."""
    claims: dict[str, Any] = mapped_claims(mapping, subject_claims)
    for name in CARRIED_CLAIMS:
        if name in subject_claims:
            claims[name] = subject_claims[name]
    claims.update(
        {
            "iss": issuer,
            "sub": subject,
            "aud": audience,
            "exp": exp,
            "iat": now,
            "nbf": now,
            "jti": jti,
            "client_id": client_id,
        }
    )
    if scopes:
        claims["scope"] = " ".join(scopes)
    if act:
        claims["act"] = dict(act)
    return claims
