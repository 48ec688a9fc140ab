"""Request middleware: request ids, one log line per request, latency metrics.

Pure ASGI (no BaseHTTPMiddleware) to keep the hot path cheap. The request id
comes from ``X-Request-ID`` when the caller sends a sane one, else is
generated, and is returned in the response header.
"""

from __future__ import annotations

import re
import secrets
import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import REQUEST_SECONDS, labelled

log = structlog.get_logger("baton.access")
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_KNOWN = frozenset(
    {"/token", "/introspect", "/revoke", "/jwks", "/healthz", "/readyz", "/metrics", "/admin/revoke",
     "/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"}
)


class RequestContextMiddleware:
    """Assign a request id, log the outcome, observe latency per endpoint."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _SANE_ID.match(candidate):
                    request_id = candidate
                break
        if not request_id:
            request_id = secrets.token_hex(8)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            path = scope.get("path", "")
            endpoint = path if path in _KNOWN else ("/audit" if path.startswith("/audit") else "other")
            labelled(REQUEST_SECONDS, endpoint).observe(elapsed)
            log.info(
                "request",
                request_id=request_id,
                method=scope.get("method"),
                path=endpoint,
                status=status,
                client_id=state.get("client_id"),
                grant=state.get("grant_type"),
                outcome="ok" if status < 400 else state.get("reason", "error"),
                latency_ms=round(elapsed * 1000, 2),
            )
