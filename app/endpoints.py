"""The OAuth endpoints: token (RFC 8693), introspection (RFC 7662), revocation (RFC 7009).

Each endpoint parses the form strictly, authenticates the client, does its
work and answers JSON with ``Cache-Control: no-store``. Every refusal is an
RFC 6749 §5.2 error body and is recorded as an event; no input a caller
controls produces a 5xx.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog
from starlette.requests import Request
from starlette.responses import Response

from eventstore import StoreUnavailable

from .config import ClientConfig
from .errors import OAuthError, temporarily_unavailable
from .exchange import DenialContext
from .forms import Form, read_form
from .issuers import ValidatedToken
from .jose_strict import TokenRejected, parse_compact
from .metrics import EXCHANGES, RATE_LIMITED, STORE_ERRORS, labelled, note_store_error
from .revocation import revoke_token
from .runtime import Runtime
from .types import GRANT_TOKEN_EXCHANGE

log = structlog.get_logger("baton")
_json = msgspec.json.Encoder()
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
INTROSPECTION_JWT = "application/token-introspection+jwt"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response that is never cached."""
    return Response(_json.encode(body), status, {**NO_STORE, **(headers or {})}, "application/json")


def error_response(error: OAuthError) -> Response:
    """The RFC 6749 §5.2 error body for ``error``."""
    return json_response(
        {"error": error.error, "error_description": error.description}, error.status, error.headers
    )


def grant_label(grant_type: str | None) -> str | None:
    """The grant type for logs: the one Baton knows by name, anything else (caller-controlled) as ``other``."""
    if grant_type is None:
        return None
    return "token-exchange" if grant_type == GRANT_TOKEN_EXCHANGE else "other"


def client_address(request: Request) -> str | None:
    """The caller's address: the direct peer, or behind a trusted proxy the address it saw.

    With ``server.trust_forwarded_for`` the last ``X-Forwarded-For`` entry is used: it is
    the one the proxy in front of Baton appended; earlier entries are the caller's to forge.
    """
    peer = request.client.host if request.client else None
    runtime: Runtime = request.app.state.runtime
    if runtime.config.server.trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for", "")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-1][:64]
    return peer


async def _authenticate(runtime: Runtime, request: Request, form: Form, ctx: DenialContext) -> ClientConfig:
    claimed = form.get("client_id")
    ctx.client_id = claimed[:128] if claimed else None  # as claimed: recorded, never trusted
    endpoint_url = runtime.config.issuer.rstrip("/") + request.scope["path"]
    client = await runtime.authenticator.authenticate(request.headers, form.single, endpoint_url)
    ctx.client_id = client.client_id
    ctx.authenticated = True
    return client


Handler = Callable[[Runtime, Request, Form, ClientConfig, DenialContext], Awaitable[Response]]


def oauth_endpoint(name: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler with form parsing, client authentication, refusal recording and metrics."""

    async def endpoint(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        ctx = DenialContext()
        request_id: str = request.scope.get("state", {}).get("request_id", "")
        try:
            form = await read_form(request, runtime.config.server.max_body_bytes)
            if name == "token":
                request.scope.setdefault("state", {})["grant_type"] = grant_label(form.get("grant_type"))
            client = await _authenticate(runtime, request, form, ctx)
            response = await handler(runtime, request, form, client, ctx)
            request.scope.setdefault("state", {})["client_id"] = client.client_id
            if name == "token":
                labelled(EXCHANGES, "issued", "").inc()
            return response
        except OAuthError as exc:
            request.scope.setdefault("state", {}).update(client_id=ctx.client_id, reason=exc.reason)
            if exc.status == 503:
                STORE_ERRORS.inc()
                note_store_error(runtime.store, "request")
            elif exc.status == 429:
                RATE_LIMITED.inc()
            if name == "token":
                labelled(EXCHANGES, "denied", exc.reason).inc()
            if exc.status != 503:
                await runtime.record_denial(exc, request_id, name, client_address(request), ctx)
            return error_response(exc)

    endpoint.__name__ = f"{name}_endpoint"
    return endpoint


async def _token(runtime: Runtime, request: Request, form: Form, client: ClientConfig, ctx: DenialContext) -> Response:
    request_id = request.scope.get("state", {}).get("request_id", "")
    body = await runtime.exchanger.exchange(form, client, request_id, client_address(request), ctx)
    return json_response(body)


async def _own_token(runtime: Runtime, token: str) -> ValidatedToken | None:
    """Baton's own token, signature and structure checked; None for anything else."""
    try:
        if parse_compact(token).claims.get("iss") != runtime.config.issuer:
            return None  # foreign tokens are never fetched for: they are simply not active here
        validated = await runtime.issuers.validate(token, "access_token")
    except TokenRejected:
        return None
    return validated if validated.local else None


async def _introspect(
    runtime: Runtime, request: Request, form: Form, client: ClientConfig, ctx: DenialContext
) -> Response:
    token = form.require("token")
    inactive: dict[str, Any] = {"active": False}
    body = inactive
    validated = await _own_token(runtime, token)
    if validated is not None:
        try:
            row = await runtime.lineage.get(str(validated.claims.get("jti", "")))
        except StoreUnavailable as exc:
            raise temporarily_unavailable("the event store is unavailable") from exc
        now = time.time()
        claims = validated.claims
        if row is not None and not row.revoked and row.expires_at > now and claims.get("nbf", 0) <= now + 60:
            body = {
                "active": True,
                "iss": claims.get("iss"),
                "sub": claims.get("sub"),
                "aud": claims.get("aud"),
                "client_id": claims.get("client_id"),
                "exp": claims.get("exp"),
                "iat": claims.get("iat"),
                "nbf": claims.get("nbf"),
                "jti": claims.get("jti"),
                "token_type": "Bearer",
                "depth": row.depth,
                "root_jti": row.root_jti,
                "parent_jti": row.parent_jti,
            }
            for optional in ("scope", "act"):
                if optional in claims:
                    body[optional] = claims[optional]
    if INTROSPECTION_JWT in request.headers.get("accept", ""):
        now_i = int(time.time())
        signed = runtime.keyring.sign(
            {"iss": runtime.config.issuer, "aud": client.client_id, "iat": now_i, "token_introspection": body},
            typ="token-introspection+jwt",
        )
        return Response(signed, 200, NO_STORE, INTROSPECTION_JWT)
    return json_response(body)


async def _revoke(runtime: Runtime, request: Request, form: Form, client: ClientConfig, ctx: DenialContext) -> Response:
    token = form.require("token")
    # token_type_hint only speeds up lookup (RFC 7009 §2.1); Baton issues access tokens only and
    # searches them whatever the hint says.
    validated = await _own_token(runtime, token)
    if validated is None:
        return json_response({})
    jti = str(validated.claims.get("jti", ""))
    try:
        row = await runtime.lineage.get(jti)
        if row is None or row.revoked:
            return json_response({})
        allowed = row.client_id == client.client_id or await _holds_ancestor(runtime, row.parent_jti, client.client_id)
        if not allowed:
            raise OAuthError(
                "unauthorized_client", "this token was not issued to the client, nor derived from one that was",
                reason="revoke_not_holder",
            )
        request_id = request.scope.get("state", {}).get("request_id", "")
        await revoke_token(runtime.store, jti, by=f"client:{client.client_id}", reason="rfc7009", request_id=request_id)
    except StoreUnavailable as exc:
        raise temporarily_unavailable("the event store is unavailable; nothing was revoked") from exc
    return json_response({})


async def _holds_ancestor(runtime: Runtime, parent_jti: str | None, client_id: str) -> bool:
    current = parent_jti
    for _ in range(64):
        if current is None:
            return False
        row = await runtime.lineage.get(current)
        if row is None:
            return False
        if row.client_id == client_id:
            return True
        current = row.parent_jti
    return False


token_endpoint = oauth_endpoint("token", _token)
introspection_endpoint = oauth_endpoint("introspect", _introspect)
revocation_endpoint = oauth_endpoint("revoke", _revoke)
