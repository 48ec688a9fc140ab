"""A built-in demo identity provider, mounted at ``/demo-idp`` in demo mode only.

It lets a newcomer try token exchange without a real IdP: ``POST /token`` mints
a user access token for any ``username`` (no password!) and, for
``username=svc:<name>``, a service token to present as ``actor_token``. It is
published like a real issuer (OIDC discovery + JWKS) so Baton validates its
tokens exactly as it validates a production IdP's. Its ES256 key lives next to
Baton's signing keys (``demo-idp-key.json``, mode 0600).

Anyone who can reach it can mint tokens for anyone: never enable it in production.
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .config import Config
from .errors import OAuthError, invalid_request
from .forms import read_form
from .keys import KeyRing
from .policy import parse_scope
from .types import TT_ACCESS_TOKEN

MOUNT_PATH = "/demo-idp"
KEY_FILE = "demo-idp-key.json"
TOKEN_LIFETIME = 600
SERVICE_PREFIX = "svc:"
DEFAULT_AUDIENCE = "frontend"
DEFAULT_SCOPE = "billing:read orders:read profile"

_PARAMETERS = frozenset({"username", "audience", "scope", "may_act", "email"})
_NAME = re.compile(r"^[A-Za-z0-9._@:+-]{1,128}$")
_EMAIL = re.compile(r"^[^\s@]{1,64}@[^\s@]{1,190}$")
_MAX_BODY = 8192
_NO_STORE = {"Cache-Control": "no-store"}

log = structlog.get_logger("baton.demo_idp")


def demo_issuer(config: Config) -> str:
    """The demo IdP's issuer URL: Baton's issuer + ``/demo-idp``."""
    return config.issuer.rstrip("/") + MOUNT_PATH


def demo_key_path(config: Config) -> Path:
    """Where the demo IdP keeps its private key: next to Baton's signing keys."""
    return Path(config.signing.keys).parent / KEY_FILE


def load_demo_keys(config: Config) -> KeyRing:
    """The demo IdP's ES256 key ring, created (mode 0600) when missing."""
    return KeyRing.load_or_create(demo_key_path(config), "ES256")


def _error(exc: OAuthError) -> JSONResponse:
    return JSONResponse(
        {"error": exc.error, "error_description": exc.description},
        status_code=exc.status,
        headers={**_NO_STORE, **exc.headers},
    )


def _name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise invalid_request(f"{what} must be 1-128 characters of A-Z a-z 0-9 . _ @ : + -")
    return value


def mint_claims(form_values: dict[str, str], audience: str, issuer: str, now: int) -> dict[str, Any]:
    """The claims of a demo token from validated form values (user or ``svc:`` service token)."""
    username = _name(form_values["username"], "username")
    claims: dict[str, Any] = {"iss": issuer, "sub": username, "aud": audience}
    if username.startswith(SERVICE_PREFIX):
        service = _name(username[len(SERVICE_PREFIX) :], "service name")
        if "email" in form_values:
            raise invalid_request("service tokens carry no email")
        claims["client_id"] = service
        if "scope" in form_values:
            claims["scope"] = " ".join(parse_scope(form_values["scope"]))
    else:
        claims["scope"] = " ".join(parse_scope(form_values.get("scope", DEFAULT_SCOPE)))
        email = form_values.get("email")
        if email is not None:
            if not _EMAIL.match(email):
                raise invalid_request("email is not a valid address")
            claims["email"] = email
    may_act = form_values.get("may_act")
    if may_act is not None:
        claims["may_act"] = {"sub": _name(may_act, "may_act")}
    claims.update({"iat": now, "exp": now + TOKEN_LIFETIME, "jti": secrets.token_urlsafe(16)})
    return claims


def demo_idp_app(config: Config) -> Starlette:
    """The demo IdP as an ASGI app to mount at ``/demo-idp`` (refuses to build outside demo mode)."""
    if not config.demo:
        raise RuntimeError("the demo identity provider runs only with demo = true")
    issuer = demo_issuer(config)
    keys = load_demo_keys(config)
    metadata = {
        "issuer": issuer,
        "jwks_uri": issuer + "/jwks",
        "token_endpoint": issuer + "/token",
        "grant_types_supported": ["password"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [keys.alg],
        "token_endpoint_auth_methods_supported": ["none"],
    }

    async def discovery(request: Request) -> JSONResponse:
        return JSONResponse(metadata)

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse(keys.public_jwks, headers={"Cache-Control": "public, max-age=300"})

    async def token(request: Request) -> JSONResponse:
        try:
            form = await read_form(request, _MAX_BODY)
            unknown = sorted((set(form.single) | set(form.multi)) - _PARAMETERS)
            if unknown:
                raise invalid_request(f"unsupported parameter: {', '.join(unknown)}")
            audiences = form.getlist("audience")
            if len(audiences) > 1:
                raise invalid_request("give at most one audience")
            values = dict(form.single)
            if "username" not in values:
                raise invalid_request("missing required parameter: username")
            audience = _name(audiences[0], "audience") if audiences else DEFAULT_AUDIENCE
            claims = mint_claims(values, audience, issuer, int(time.time()))
        except OAuthError as exc:
            return _error(exc)
        body = {
            "access_token": keys.sign(claims),
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
            "issued_token_type": TT_ACCESS_TOKEN,
        }
        if "scope" in claims:
            body["scope"] = claims["scope"]
        return JSONResponse(body, headers=_NO_STORE)

    log.warning(
        "DEMO IDENTITY PROVIDER ENABLED: anyone can mint tokens for any user. NOT FOR PRODUCTION.",
        issuer=issuer,
    )
    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return JSONResponse(
            {"error": "invalid_request", "error_description": exc.detail},
            status_code=exc.status_code,
            headers={**_NO_STORE, **(exc.headers or {})},
        )

    return Starlette(
        exception_handlers={HTTPException: http_error},
        routes=[
            Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
            Route("/jwks", jwks, methods=["GET"]),
            Route("/token", token, methods=["POST"]),
        ]
    )
