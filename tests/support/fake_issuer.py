"""A reusable fake OIDC issuer for tests: discovery + JWKS with switchable behaviour.

Use it in-process (``httpx.AsyncClient(transport=httpx.ASGITransport(fake.app))``,
or several issuers through ``mounts=``) or as a real loopback server
(``with run_asgi(fake.app) as url: fake.issuer = url``).

Behaviours (``fake.mode``): ``normal``, ``slow`` (sleeps ``slow_seconds`` first),
``down`` (HTTP 500), ``junk`` (a body that is not JSON), ``redirect`` (302 to
``redirect_to``). ``cache_control`` sets the header on both documents (None: no
header). ``discovery_issuer`` overrides the ``issuer`` the discovery document
claims; ``extra_jwks`` are published as-is after the real public keys (oct or
private keys for attack tests). Counters: ``discovery_fetches``, ``jwks_fetches``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

from joserfc import jws
from joserfc.jwk import ECKey, OKPKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

KTY_FOR_ALG = {"ES256": "EC", "RS256": "RSA", "PS256": "RSA", "Ed25519": "OKP", "EdDSA": "OKP"}


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JOSE writes it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def raw_jws(header: dict[str, Any] | bytes, claims: dict[str, Any] | bytes, signature: bytes = b"") -> str:
    """A compact JWS built from raw parts (JSON objects or exact bytes) with any signature bytes."""
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    c = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
    return f"{b64url(h)}.{b64url(c)}.{b64url(signature)}"


def new_key(alg: str = "ES256", kid: str | None = None) -> Any:
    """A private joserfc key fit for ``alg``, with a ``kid``."""
    kty = KTY_FOR_ALG[alg]
    params = {"kid": kid} if kid is not None else None
    if kty == "EC":
        key: Any = ECKey.generate_key("P-256", params, private=True, auto_kid=kid is None)
    elif kty == "RSA":
        key = RSAKey.generate_key(2048, params, private=True, auto_kid=kid is None)
    else:
        key = OKPKey.generate_key("Ed25519", params, private=True, auto_kid=kid is None)
    return key


def sign(header: dict[str, Any], claims: dict[str, Any] | bytes, key: Any) -> str:
    """Sign ``claims`` (a dict or exact payload bytes) under ``header`` with a joserfc key."""
    payload = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
    return jws.serialize_compact(header, payload, key, algorithms=[header["alg"]])


class FakeIssuer:
    """An OIDC issuer whose keys and misbehaviour a test controls."""

    def __init__(self, issuer: str = "https://idp.test", *, algs: tuple[str, ...] = ("ES256",)) -> None:
        self.issuer = issuer
        self.keys: dict[str, Any] = {}
        for alg in algs:
            key = new_key(alg)
            self.keys[key.kid] = key
        self.mode = "normal"
        self.slow_seconds = 5.0
        self.cache_control: str | None = "max-age=300"
        self.discovery_issuer: str | None = None
        self.redirect_to = "https://elsewhere.test/keys"
        self.extra_jwks: list[dict[str, Any]] = []
        self.discovery_fetches = 0
        self.jwks_fetches = 0
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/jwks", self._jwks),
            ]
        )

    @property
    def jwks_uri(self) -> str:
        """Where this issuer publishes its keys."""
        return self.issuer.rstrip("/") + "/jwks"

    @property
    def kid(self) -> str:
        """The newest key's kid (the one :meth:`mint` uses by default)."""
        return list(self.keys)[-1]

    def public_jwks(self) -> dict[str, Any]:
        """The published JWK set: public halves with ``alg``, then ``extra_jwks``."""
        published = []
        for kid, key in self.keys.items():
            jwk = dict(key.as_dict(private=False))
            jwk.update({"kid": kid, "use": "sig"})
            published.append(jwk)
        return {"keys": published + self.extra_jwks}

    def rotate(self, alg: str = "ES256", *, drop_old: bool = False) -> str:
        """Add a new key (optionally retiring the others); return its kid."""
        key = new_key(alg)
        if drop_old:
            self.keys.clear()
        self.keys[key.kid] = key
        return key.kid

    def claims(self, now: float | None = None, **overrides: Any) -> dict[str, Any]:
        """Plausible access-token claims from this issuer; ``overrides`` replace or add (None removes)."""
        now = time.time() if now is None else now
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": "alice",
            "aud": "baton",
            "iat": int(now),
            "exp": int(now) + 300,
            "jti": f"j-{time.monotonic_ns()}",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def mint(
        self,
        claims: dict[str, Any] | bytes,
        *,
        kid: str | None = None,
        alg: str = "ES256",
        header_overrides: dict[str, Any] | None = None,
    ) -> str:
        """Sign ``claims`` with one of this issuer's keys (header ``alg``, ``kid``, ``typ: JWT``)."""
        if kid is None:
            kid = next((k for k, key in reversed(self.keys.items()) if key.key_type == KTY_FOR_ALG[alg]), self.kid)
        header: dict[str, Any] = {"alg": alg, "kid": kid, "typ": "JWT"}
        header.update(header_overrides or {})
        header = {k: v for k, v in header.items() if v is not None}
        payload = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
        signing_alg = "Ed25519" if alg == "EdDSA" else alg
        return jws.serialize_compact(header, payload, self.keys[kid], algorithms=[signing_alg, alg])

    async def _misbehave(self) -> Response | None:
        if self.mode == "slow":
            await asyncio.sleep(self.slow_seconds)
        if self.mode == "down":
            return Response("unavailable", status_code=500)
        if self.mode == "junk":
            return Response("<html>not json", media_type="text/html")
        if self.mode == "redirect":
            return RedirectResponse(self.redirect_to, status_code=302)
        return None

    def _json(self, document: dict[str, Any]) -> Response:
        headers = {"Cache-Control": self.cache_control} if self.cache_control is not None else {}
        return JSONResponse(document, headers=headers)

    async def _discovery(self, request: Request) -> Response:
        self.discovery_fetches += 1
        return await self._misbehave() or self._json(
            {
                "issuer": self.discovery_issuer or self.issuer,
                "jwks_uri": self.jwks_uri,
                "id_token_signing_alg_values_supported": sorted(KTY_FOR_ALG),
            }
        )

    async def _jwks(self, request: Request) -> Response:
        self.jwks_fetches += 1
        return await self._misbehave() or self._json(self.public_jwks())
