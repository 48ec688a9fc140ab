"""The trusted issuer registry: validates subject and actor tokens.

A token is accepted when its ``iss`` is Baton itself (verified with Baton's own
keys) or exactly one of the configured trusted issuers (verified with that
issuer's published keys). An untrusted ``iss`` is refused before any network
traffic, so attackers cannot make Baton fetch from where they like.

Keys live in a two-level :class:`KeyCache`: an in-process dict in front (a
request with fresh keys never awaits anything) and the shared :class:`Cache`
(Redis when configured) behind it. See the class for refresh and staleness rules.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
import structlog
from joserfc.jwk import KeySet, import_key

from app.cache import Cache
from app.config import CacheConfig, Config, TrustedIssuer
from app.http_fetch import FetchError, fetch_json
from app.metrics import KEY_CACHE, labelled
from app.jose_strict import (
    KEY_FIT,
    ParsedJWS,
    TokenRejected,
    check_act,
    check_time_claims,
    parse_compact,
    verify_signature,
)

log = structlog.get_logger(__name__)

TOKEN_KINDS = frozenset({"access_token", "jwt", "id_token"})
#: JWK members that only a private or symmetric key has
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
PUBLIC_KTYS = frozenset({"RSA", "EC", "OKP"})
MAX_KEYS = 64
DEFAULT_TTL = 300
#: claims that, when present, must be strings (RFC 7519 / RFC 8693 §4.2 / RFC 9068)
STRING_CLAIMS = ("jti", "scope", "client_id", "azp")

Fetcher = Callable[[], Awaitable[tuple[dict, int | None]]]


class ValidatedToken(msgspec.Struct, frozen=True):
    """A subject or actor token whose signature and claims have been checked."""

    issuer: str
    subject: str
    claims: dict
    header: dict
    kid: str | None
    alg: str
    local: bool


def public_key_set(document: Any) -> KeySet:
    """Import a JWK set keeping only public asymmetric signing keys; raise ``FetchError`` if none remain.

    ``oct`` keys and keys that carry private members are dropped: a published
    private key is compromised and must never verify anything.
    """
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise FetchError("not a JWK set (no keys array)")
    if len(keys) > MAX_KEYS:
        raise FetchError(f"JWK set holds more than {MAX_KEYS} keys")
    accepted = []
    for jwk in keys:
        if not isinstance(jwk, dict) or jwk.get("kty") not in PUBLIC_KTYS:
            continue
        if PRIVATE_MEMBERS.intersection(jwk) or jwk.get("use") not in (None, "sig"):
            continue
        if "kid" in jwk and not isinstance(jwk["kid"], str):
            continue
        try:
            accepted.append(import_key(jwk))
        except Exception:  # a malformed key is skipped, never fatal for the others
            continue
    if not accepted:
        raise FetchError("JWK set holds no usable public signing key")
    return KeySet(accepted)


async def fetch_document(http: httpx.AsyncClient, settings: CacheConfig, url: str) -> tuple[dict, int | None]:
    """:func:`fetch_json` with the configured timeout, size cap and loopback rule."""
    return await fetch_json(
        http,
        url,
        timeout=settings.fetch_timeout,
        max_bytes=settings.fetch_max_bytes,
        allow_loopback_http=settings.allow_loopback_http,
    )


@dataclass
class _Entry:
    """One owner's keys as cached: the set, its kids and its freshness window."""

    jwks: dict
    keys: KeySet
    fetched_at: float
    expires_at: float
    kids: frozenset[str | None] = field(init=False)

    def __post_init__(self) -> None:
        self.kids = frozenset(k.kid for k in self.keys.keys)

    def has(self, kid: str | None) -> bool:
        return kid is None or kid in self.kids


class KeyCache:
    """Two-level cache of public JWK sets, keyed by owner (an issuer or a client).

    - Fresh in-process keys that hold the wanted ``kid`` are returned without any await.
    - The shared :class:`Cache` keeps the JWKS JSON for TTL + ``jwks_max_stale``, so other
      instances (and a restarted one) start from it instead of fetching.
    - TTL comes from ``Cache-Control`` clamped to ``[jwks_min_ttl, jwks_max_ttl]``.
    - An unknown ``kid`` refreshes at most once per owner per ``unknown_kid_interval``:
      an in-process timestamp, then ``cache.add`` as the cross-instance token; one
      asyncio lock per owner makes concurrent requests share one fetch.
    - When a fetch fails, cached keys keep serving up to ``jwks_max_stale`` seconds past
      expiry, and the next attempt waits ``unknown_kid_interval``; beyond that the
      owner's tokens are refused with ``issuer_unavailable``. Owners never share state.
    """

    def __init__(self, settings: CacheConfig, cache: Cache, clock: Callable[[], float], namespace: str) -> None:
        self._settings = settings
        self._cache = cache
        self._clock = clock
        self._namespace = f"{settings.prefix}{namespace}:"
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._forced_at: dict[str, float] = {}
        self._retry_at: dict[str, float] = {}
        self._fetches: dict[str, int] = {}
        self._kind = "client" if namespace.startswith("client") else "issuer"

    def fetch_count(self, owner: str) -> int:
        """How many refreshes (network fetches of the key set) were attempted for ``owner``."""
        return self._fetches.get(owner, 0)

    def fresh(self, owner: str, kid: str | None) -> KeySet | None:
        """The in-process keys when fresh and holding ``kid``; no I/O."""
        entry = self._entries.get(owner)
        if entry is not None and self._clock() < entry.expires_at and entry.has(kid):
            return entry.keys
        return None

    async def get(self, owner: str, kid: str | None, fetch: Fetcher) -> KeySet:
        """Keys for ``owner`` that should hold ``kid``; raise :class:`TokenRejected` when unavailable."""
        keys = self.fresh(owner, kid)
        if keys is not None:
            labelled(KEY_CACHE, self._kind, owner, "hit").inc()
            return keys
        labelled(KEY_CACHE, self._kind, owner, "miss").inc()
        lock = self._locks.setdefault(owner, asyncio.Lock())
        entry = self._entries.get(owner)
        if lock.locked() and entry is not None and entry.has(kid) and self._within_stale(entry):
            return entry.keys  # a refresh is under way: serve what we have rather than queue behind it
        async with lock:
            return await self._refresh(owner, kid, fetch)

    def clear(self) -> None:
        """Forget the in-process level (the shared level is left alone)."""
        self._entries.clear()

    def _within_stale(self, entry: _Entry) -> bool:
        return self._clock() < entry.expires_at + self._settings.jwks_max_stale

    async def _refresh(self, owner: str, kid: str | None, fetch: Fetcher) -> KeySet:
        keys = self.fresh(owner, kid)
        if keys is not None:
            return keys
        entry = await self._from_shared(owner)
        keys = self.fresh(owner, kid)
        if keys is not None:
            return keys
        now = self._clock()
        if entry is not None and now < entry.expires_at:
            if not await self._may_force(owner, now):
                raise TokenRejected("unknown_kid", "no key with the token's kid (key set refreshed recently)")
        elif now < self._retry_at.get(owner, 0.0):
            return self._stale(owner, kid, entry, "the last fetch failed; retrying later")
        self._fetches[owner] = self._fetches.get(owner, 0) + 1
        labelled(KEY_CACHE, self._kind, owner, "refresh").inc()
        try:
            document, ttl = await fetch()
            fresh_keys = public_key_set(document)
        except FetchError as exc:
            self._retry_at[owner] = now + self._settings.unknown_kid_interval
            log.warning("jwks_fetch_failed", owner=owner, error=str(exc))
            return self._stale(owner, kid, entry, str(exc))
        self._retry_at.pop(owner, None)
        entry = self._store(owner, fresh_keys, ttl, now)
        await self._to_shared(owner, entry)
        if not entry.has(kid):
            raise TokenRejected("unknown_kid", "no key with the token's kid")
        return entry.keys

    def _store(self, owner: str, keys: KeySet, ttl: int | None, now: float) -> _Entry:
        ttl = DEFAULT_TTL if ttl is None else ttl
        ttl = min(max(ttl, self._settings.jwks_min_ttl), self._settings.jwks_max_ttl)
        jwks = {"keys": [k.as_dict(private=False) for k in keys.keys]}
        entry = _Entry(jwks=jwks, keys=keys, fetched_at=now, expires_at=now + ttl)
        self._entries[owner] = entry
        return entry

    def _stale(self, owner: str, kid: str | None, entry: _Entry | None, why: str) -> KeySet:
        if entry is not None and self._within_stale(entry):
            if entry.has(kid):
                return entry.keys
            raise TokenRejected("unknown_kid", "no key with the token's kid")
        raise TokenRejected(
            "issuer_unavailable",
            f"keys for {owner} are unavailable ({why}) and no recent cached keys remain",
        )

    async def _may_force(self, owner: str, now: float) -> bool:
        interval = self._settings.unknown_kid_interval
        if now - self._forced_at.get(owner, float("-inf")) < interval:
            return False
        self._forced_at[owner] = now
        try:
            return await self._cache.add(f"{self._namespace}refresh:{owner}", max(interval, 0.001))
        except Exception:  # shared cache down: the in-process interval still bounds fetches
            return True

    async def _from_shared(self, owner: str) -> _Entry | None:
        """Adopt the shared entry when newer than ours; return the best entry we have."""
        current = self._entries.get(owner)
        try:
            raw = await self._cache.get(f"{self._namespace}{owner}")
            if raw is None:
                return current
            stored = msgspec.json.decode(raw)
            if current is not None and stored["fetched_at"] < current.fetched_at:
                return current
            entry = _Entry(
                jwks=stored["jwks"],
                keys=public_key_set(stored["jwks"]),
                fetched_at=float(stored["fetched_at"]),
                expires_at=float(stored["expires_at"]),
            )
        except Exception:  # an unreachable cache or a damaged entry is a miss
            return current
        self._entries[owner] = entry
        return entry

    async def _to_shared(self, owner: str, entry: _Entry) -> None:
        value = msgspec.json.encode(
            {"jwks": entry.jwks, "fetched_at": entry.fetched_at, "expires_at": entry.expires_at}
        )
        ttl = max(entry.expires_at - entry.fetched_at + self._settings.jwks_max_stale, 1)
        try:
            await self._cache.set(f"{self._namespace}{owner}", value, ttl)
        except Exception:  # shared cache down: the in-process level still serves
            log.warning("jwks_shared_cache_write_failed", owner=owner)


def normalized_typ(header: Mapping[str, Any]) -> str | None:
    """``typ`` normalised per RFC 7515 §4.1.9: case-insensitive, ``application/`` optional."""
    typ = header.get("typ")
    if typ is None:
        return None
    typ = typ.lower()
    return typ.removeprefix("application/")


def check_typ(header: Mapping[str, Any], kind: str, *, require_at_jwt: bool) -> None:
    """``typ`` rules: access tokens may be ``JWT``/``at+jwt``/absent; an ID token is never ``at+jwt``."""
    typ = normalized_typ(header)
    if kind == "id_token":
        allowed: tuple[str | None, ...] = (None, "jwt")
    elif require_at_jwt:
        allowed = ("at+jwt",)
    else:
        allowed = (None, "jwt", "at+jwt")
    if typ not in allowed:
        raise TokenRejected("wrong_type", f"typ {str(header.get('typ'))[:40]!r} is not accepted for a {kind}")


def check_audience(claims: Mapping[str, Any], accepted: list[str]) -> None:
    """``aud`` (string or list of strings) must hold one of ``accepted`` when that list is non-empty."""
    aud = claims.get("aud")
    if aud is None and "aud" not in claims:
        if accepted:
            raise TokenRejected("wrong_audience", "token has no aud")
        return
    values = [aud] if isinstance(aud, str) else aud
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise TokenRejected("bad_claim", "aud must be a string or a list of strings")
    if accepted and not set(values).intersection(accepted):
        raise TokenRejected("wrong_audience", "token is not meant for an accepted audience")


def _check_subject_claims(claims: Mapping[str, Any]) -> str:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 1024:
        raise TokenRejected("bad_claim", "sub must be a non-empty string")
    for name in STRING_CLAIMS:
        if name in claims and not isinstance(claims[name], str):
            raise TokenRejected("bad_claim", f"{name} must be a string")
    return sub


class IssuerRegistry:
    """Validates tokens from Baton itself and from the configured trusted issuers."""

    def __init__(
        self,
        config: Config,
        cache: Cache,
        http: httpx.AsyncClient,
        local_keys: Callable[[], KeySet],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._http = http
        self._local_keys = local_keys
        self._clock = clock
        self._trusted: dict[str, TrustedIssuer] = {t.issuer: t for t in config.trusted_issuers}
        self._keys = KeyCache(config.cache, cache, clock, "jwks")
        deepest = max([config.tokens.max_depth] + [a.max_depth or 0 for a in config.audiences])
        self._act_depth = max(10, deepest + 1)

    def fetch_count(self, issuer: str) -> int:
        """Key-set refreshes attempted for ``issuer`` (discovery + JWKS count as one)."""
        return self._keys.fetch_count(issuer)

    async def aclose(self) -> None:
        """Drop cached state (the HTTP client belongs to the caller)."""
        self._keys.clear()

    async def validate(self, token: str, kind: str) -> ValidatedToken:
        """Validate a subject/actor token of ``kind`` (access_token | jwt | id_token)."""
        if kind not in TOKEN_KINDS:
            raise TokenRejected("wrong_type", f"token kind {kind[:40]!r} is not accepted")
        parsed = parse_compact(token)
        iss = parsed.claims.get("iss")
        if not isinstance(iss, str) or not iss:
            raise TokenRejected("bad_claim", "iss must be a non-empty string")
        if iss == self._config.issuer:
            return self._validate_local(parsed, kind)
        trusted = self._trusted.get(iss)
        if trusted is None:
            raise TokenRejected("untrusted_issuer", "the token's issuer is not trusted")
        if kind not in trusted.token_types:
            raise TokenRejected("wrong_type", f"{kind} tokens from this issuer are not accepted")
        check_typ(parsed.header, kind, require_at_jwt=trusted.require_typ and kind == "access_token")
        alg = parsed.header["alg"]
        if alg not in trusted.algorithms or alg not in KEY_FIT:
            raise TokenRejected("alg_not_allowed", f"algorithm {alg[:20]!r} is not accepted for this issuer")
        check_audience(parsed.claims, trusted.audiences)
        sub = self._check_claims(parsed)
        kid = parsed.header.get("kid")
        keys = await self._keys.get(iss, kid, lambda: self._fetch_jwks(trusted))
        verify_signature(parsed, keys, trusted.algorithms)
        return ValidatedToken(
            issuer=iss, subject=sub, claims=parsed.claims, header=parsed.header, kid=kid, alg=alg, local=False
        )

    def _validate_local(self, parsed: ParsedJWS, kind: str) -> ValidatedToken:
        check_typ(parsed.header, kind, require_at_jwt=True)
        keys = self._local_keys()
        algs = {k.get("alg") for k in keys.keys} - {None}
        sub = self._check_claims(parsed)
        verify_signature(parsed, keys, algs)
        return ValidatedToken(
            issuer=self._config.issuer,
            subject=sub,
            claims=parsed.claims,
            header=parsed.header,
            kid=parsed.header.get("kid"),
            alg=parsed.header["alg"],
            local=True,
        )

    def _check_claims(self, parsed: ParsedJWS) -> str:
        tokens = self._config.tokens
        check_time_claims(
            parsed.claims, now=self._clock(), leeway=tokens.leeway, max_lifetime=tokens.max_subject_lifetime
        )
        sub = _check_subject_claims(parsed.claims)
        check_act(parsed.claims, self._act_depth)
        return sub

    async def _fetch_jwks(self, trusted: TrustedIssuer) -> tuple[dict, int | None]:
        jwks_uri = trusted.jwks_uri
        if jwks_uri is None:
            url = trusted.issuer.rstrip("/") + "/.well-known/openid-configuration"
            metadata, _ = await self._fetch(url)
            if metadata.get("issuer") != trusted.issuer:
                raise FetchError("discovery document names a different issuer")
            jwks_uri = metadata.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise FetchError("discovery document has no jwks_uri")
        return await self._fetch(jwks_uri)

    async def _fetch(self, url: str) -> tuple[dict, int | None]:
        return await fetch_document(self._http, self._config.cache, url)
