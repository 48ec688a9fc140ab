"""Client authentication at Baton's endpoints (RFC 6749 §2.3, RFC 7523).

Exactly one method per request: ``client_secret_basic``, ``client_secret_post``
or ``private_key_jwt``, and it must be the one configured for the client. Every
failure is a 401 ``invalid_client`` whose ``reason`` says why (for the denied
event) while the description shown to the caller stays generic where detail
would let it enumerate clients. Unknown clients pay the same KDF as wrong
secrets; a correct secret pays it once per process, then is recognised by an
HMAC under a process-random key.
"""

from __future__ import annotations

import asyncio
import contextlib
import base64
import binascii
import hashlib
import hmac
import os
import time
from collections.abc import Callable, Mapping
from urllib.parse import unquote_plus

import httpx
import structlog
from joserfc.jwk import KeySet

from app.cache import Cache
from app.config import ClientConfig, Config
from app.errors import invalid_client
from app.http_fetch import FetchError
from app.issuers import KeyCache, check_audience, fetch_document, normalized_typ, public_key_set
from app.jose_strict import ParsedJWS, TokenRejected, check_time_claims, parse_compact, verify_signature
from app.secrets import hash_secret, random_secret, verify_secret
from app.types import CLIENT_ASSERTION_TYPE_JWT

log = structlog.get_logger(__name__)

ASSERTION_ALGS = frozenset({"RS256", "PS256", "ES256", "Ed25519"})
MAX_ASSERTION_LIFETIME = 300
MAX_ASSERTION_BYTES = 8192
MAX_SECRET_CHARS = 1024
#: assertion typ values accepted (draft-ietf-oauth-rfc7523bis adds client-authentication+jwt)
ASSERTION_TYPS = (None, "jwt", "client-authentication+jwt")
_FAILED = "client authentication failed"
_REASONS = {"expired": "assertion_expired", "wrong_audience": "wrong_audience", "issuer_unavailable": "client_keys_unavailable"}


def _basic_credentials(authorization: str | None) -> str | None:
    """The credentials of an ``Authorization: Basic`` header, None for any other (or no) scheme."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    return credentials.strip() if scheme.lower() == "basic" else None


def parse_basic(credentials: str) -> tuple[str, str]:
    """Client id and secret from Basic credentials, each form-urlencoded (RFC 6749 §2.3.1)."""
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise invalid_client("malformed Basic credentials", basic=True, reason="malformed_credentials") from exc
    client_id, colon, secret = decoded.partition(":")
    if not colon or not client_id:
        raise invalid_client("malformed Basic credentials", basic=True, reason="malformed_credentials")
    return unquote_plus(client_id), unquote_plus(secret)


class ClientAuthenticator:
    """Authenticates the calling client with the one method it is configured for."""

    def __init__(self, config: Config, cache: Cache, http: httpx.AsyncClient, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._cache = cache
        self._http = http
        self._clock = clock
        self._clients = {c.client_id: c for c in config.clients}
        self._inline_keys: dict[str, KeySet | None] = {}
        for client in config.clients:
            if client.jwks is not None:
                try:
                    self._inline_keys[client.client_id] = public_key_set({"keys": client.jwks.keys})
                except FetchError:
                    log.warning("client_jwks_unusable", client_id=client.client_id)
                    self._inline_keys[client.client_id] = None
        self._keys = KeyCache(config.cache, cache, clock, "client-jwks")
        issuer = config.issuer.rstrip("/")
        self._audiences = {config.issuer, issuer, f"{issuer}/token"}
        self._mac_key = os.urandom(32)
        self._verified: dict[str, bytes] = {}
        self._kdf_slots = asyncio.Semaphore(max(1, min(4, os.cpu_count() or 1)))
        self._client_locks: dict[str, asyncio.Lock] = {}
        self._dummy_hash: str | None = None

    def fetch_count(self, client_id: str) -> int:
        """Key-set fetches attempted for a client's ``jwks_uri``."""
        return self._keys.fetch_count(client_id)

    async def authenticate(self, headers: Mapping[str, str], form: Mapping[str, str], endpoint_url: str) -> ClientConfig:
        """The authenticated client, or raise ``invalid_client`` (401) with a specific ``reason``."""
        basic = _basic_credentials(headers.get("authorization"))
        methods = [
            name
            for name, used in (
                ("client_secret_basic", basic is not None),
                ("client_secret_post", "client_secret" in form),
                ("private_key_jwt", "client_assertion" in form or "client_assertion_type" in form),
            )
            if used
        ]
        if len(methods) > 1:
            raise invalid_client(
                "use exactly one client authentication method", basic=basic is not None, reason="multiple_auth_methods"
            )
        if not methods:
            raise invalid_client("client authentication is required", reason="no_client_auth")
        if basic is not None:
            client_id, secret = parse_basic(basic)
            self._check_form_id(form, client_id, basic=True)
            return await self._by_secret(client_id, secret, "client_secret_basic", basic=True)
        if methods[0] == "client_secret_post":
            client_id = form.get("client_id")
            if not client_id:
                raise invalid_client("client_id is required with client_secret", reason="malformed_credentials")
            return await self._by_secret(client_id, form["client_secret"], "client_secret_post", basic=False)
        return await self._by_assertion(form, endpoint_url)

    @staticmethod
    def _check_form_id(form: Mapping[str, str], client_id: str, *, basic: bool) -> None:
        sent = form.get("client_id")
        if sent is not None and sent != client_id:
            raise invalid_client("client_id does not match the authenticated client", basic=basic, reason="client_id_mismatch")

    async def _by_secret(self, client_id: str, secret: str, method: str, *, basic: bool) -> ClientConfig:
        client = self._clients.get(client_id)
        encoded = client.secret_hash if client is not None and client.secret_hash else await self._dummy()
        ok = await self._secret_matches(client_id if client is not None else None, secret, encoded)
        if client is None:
            raise invalid_client(_FAILED, basic=basic, reason="unknown_client")
        if client.auth_method != method:
            raise invalid_client(_FAILED, basic=basic, reason="wrong_auth_method")
        if not ok:
            raise invalid_client(_FAILED, basic=basic, reason="bad_secret")
        return client

    async def _secret_matches(self, client_id: str | None, secret: str, encoded: str) -> bool:
        if len(secret) > MAX_SECRET_CHARS:
            return False
        mac = hmac.new(self._mac_key, secret.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
        known = self._verified.get(client_id) if client_id is not None else None
        if known is not None and hmac.compare_digest(known, mac):
            return True
        # the KDF runs in a worker thread, a few at a time, so wrong secrets cannot stall the event loop
        # one verification per client at a time: concurrent first requests wait for the
        # first one's result instead of each paying the KDF
        lock = self._client_locks.setdefault(client_id, asyncio.Lock()) if client_id in self._clients else None
        async with lock if lock is not None else contextlib.nullcontext():
            known = self._verified.get(client_id) if client_id is not None else None
            if known is not None and hmac.compare_digest(known, mac):
                return True
            async with self._kdf_slots:
                ok = await asyncio.to_thread(verify_secret, secret, encoded)
            if ok and client_id is not None:
                self._verified[client_id] = mac
        return ok

    async def _dummy(self) -> str:
        """A hash of a random secret with the configured clients' cost, so unknown clients cost the same."""
        if self._dummy_hash is None:
            log_n = 15
            for client in self._clients.values():
                if client.secret_hash:
                    try:
                        log_n = int(client.secret_hash.split("$")[1])
                    except (IndexError, ValueError):
                        pass
                    break
            self._dummy_hash = await asyncio.to_thread(hash_secret, random_secret(), log_n=log_n)
        return self._dummy_hash

    async def _by_assertion(self, form: Mapping[str, str], endpoint_url: str) -> ClientConfig:
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE_JWT:
            raise invalid_client(f"client_assertion_type must be {CLIENT_ASSERTION_TYPE_JWT}", reason="bad_assertion_type")
        assertion = form.get("client_assertion")
        if not assertion:
            raise invalid_client("client_assertion is required", reason="bad_assertion")
        try:
            parsed = parse_compact(assertion, max_bytes=MAX_ASSERTION_BYTES)
            client = self._assertion_client(parsed, form)
            self._check_assertion_claims(parsed, endpoint_url)
            kid = parsed.header.get("kid")
            verify_signature(parsed, await self._client_keys(client, kid), ASSERTION_ALGS)
        except TokenRejected as exc:
            raise invalid_client(f"client assertion rejected: {exc.description}", reason=_REASONS.get(exc.reason, "bad_assertion")) from None
        remaining = float(parsed.claims["exp"]) - self._clock() + self._config.tokens.leeway
        key = f"{self._config.cache.prefix}jti:{client.client_id}:{parsed.claims['jti']}"
        if not await self._cache.add(key, max(1.0, remaining)):
            raise invalid_client("client assertion was already used", reason="assertion_replayed")
        return client

    def _assertion_client(self, parsed: ParsedJWS, form: Mapping[str, str]) -> ClientConfig:
        iss, sub = parsed.claims.get("iss"), parsed.claims.get("sub")
        if not isinstance(iss, str) or not iss or iss != sub:
            raise TokenRejected("bad_claim", "iss and sub must both be the client_id")
        self._check_form_id(form, iss, basic=False)
        client = self._clients.get(iss)
        if client is None:
            raise invalid_client(_FAILED, reason="unknown_client")
        if client.auth_method != "private_key_jwt":
            raise invalid_client(_FAILED, reason="wrong_auth_method")
        return client

    def _check_assertion_claims(self, parsed: ParsedJWS, endpoint_url: str) -> None:
        if normalized_typ(parsed.header) not in ASSERTION_TYPS:
            raise TokenRejected("wrong_type", "typ is not accepted for a client assertion")
        claims = parsed.claims
        # RFC 7523bis (after the 2025 audience-injection reports): a single string naming this
        # server, never a list that an attacker-controlled party could also be in
        if not isinstance(claims.get("aud"), str):
            raise TokenRejected("wrong_audience", "a client assertion's aud must be one string naming Baton")
        check_audience(claims, sorted(self._audiences | {endpoint_url}))
        check_time_claims(claims, now=self._clock(), leeway=self._config.tokens.leeway, max_lifetime=MAX_ASSERTION_LIFETIME)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise TokenRejected("bad_claim", "jti must be a non-empty string of at most 256 characters")

    async def _client_keys(self, client: ClientConfig, kid: str | None) -> KeySet:
        if client.jwks is not None:
            keys = self._inline_keys.get(client.client_id)
            if keys is None:
                raise TokenRejected("bad_signature", "the client has no usable public key")
            return keys
        url = client.jwks_uri or ""  # config guarantees jwks or jwks_uri for private_key_jwt
        return await self._keys.get(client.client_id, kid, lambda: fetch_document(self._http, self._config.cache, url))
