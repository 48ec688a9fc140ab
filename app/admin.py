"""Administrative revocation over HTTP (``POST /admin/revoke``), for incident response.

Authenticated by the admin bearer credential (``[admin] token_hash``) or by a
client whose configuration has ``admin = true``. Exactly one of ``jti``,
(``iss`` + ``sub``) or ``client_id`` says what to revoke; ``before`` (epoch
seconds) bounds subject and client revocations (default: now).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math

from starlette.requests import Request
from starlette.responses import Response

from eventstore import StoreUnavailable

from .config import ClientConfig
from .errors import OAuthError, invalid_request, temporarily_unavailable
from .exchange import DenialContext
from .forms import Form, read_form
from .endpoints import client_address, error_response, json_response
from .revocation import revoke_client, revoke_subject, revoke_token
from .runtime import Runtime
from .secrets import verify_secret

_verified: dict[str, bytes] = {}
#: scrypt is ~70 ms of CPU: a flood of wrong admin secrets must not stall the event loop
_kdf_slots = asyncio.Semaphore(2)


async def _bearer_ok(runtime: Runtime, header: str) -> bool:
    """Check the admin bearer secret; the KDF runs off the event loop, a few at a time."""
    encoded = runtime.config.admin.token_hash
    if not encoded or not header.lower().startswith("bearer "):
        return False
    secret = header[7:].strip()
    digest = hashlib.sha256(encoded.encode() + b"\0" + secret.encode()).digest()
    cached = _verified.get(encoded)
    if cached is not None and hmac.compare_digest(cached, digest):
        return True
    async with _kdf_slots:
        ok = await asyncio.to_thread(verify_secret, secret, encoded)
    if ok:
        _verified[encoded] = digest
    return ok


async def _principal(runtime: Runtime, request: Request, form: Form) -> str:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        if await _bearer_ok(runtime, header):
            return "admin"
        raise OAuthError("invalid_token", "admin credential rejected", status=401, reason="admin_auth_failed",
                         headers={"WWW-Authenticate": 'Bearer realm="baton-admin"'})
    endpoint_url = runtime.config.issuer.rstrip("/") + request.url.path
    client: ClientConfig = await runtime.authenticator.authenticate(dict(request.headers), form.single, endpoint_url)
    if not client.admin:
        raise OAuthError("insufficient_scope", "client is not an administrator", status=403, reason="not_admin")
    return f"client:{client.client_id}"


async def authorize_audit(request: Request) -> None:
    """Guard for ``/audit/…``: the admin bearer credential, or a client with ``audit`` or ``admin`` rights.

    Clients authenticate with HTTP Basic (``client_secret_basic``); the audit API is read-only GET.
    """
    runtime: Runtime = request.app.state.runtime
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        if await _bearer_ok(runtime, header):
            return
        raise OAuthError("invalid_token", "admin credential rejected", status=401, reason="admin_auth_failed",
                         headers={"WWW-Authenticate": 'Bearer realm="baton-audit"'})
    endpoint_url = runtime.config.issuer.rstrip("/") + request.url.path
    client = await runtime.authenticator.authenticate(dict(request.headers), {}, endpoint_url)
    if not (client.audit or client.admin):
        raise OAuthError("insufficient_scope", "client has no audit rights", status=403, reason="not_auditor")


def _before(form: Form) -> float | None:
    value = form.get("before")
    if value is None:
        return None
    try:
        before = float(value)
    except ValueError as exc:
        raise invalid_request("before must be epoch seconds", reason="bad_before") from exc
    if not math.isfinite(before) or before < 0:
        raise invalid_request("before must be finite epoch seconds", reason="bad_before")
    return before


async def admin_revoke(request: Request) -> Response:
    """Revoke a token (with its lineage), a subject's tokens, or a client's tokens."""
    runtime: Runtime = request.app.state.runtime
    try:
        form = await read_form(request, runtime.config.server.max_body_bytes)
        by = await _principal(runtime, request, form)
        reason = form.get("reason") or "admin"
        chosen = [k for k in ("jti", "sub", "client_id") if form.get(k)]
        if len(chosen) != 1 or (chosen == ["sub"]) != bool(form.get("iss")):
            raise invalid_request("send exactly one of: jti, iss+sub, client_id", reason="bad_admin_request")
        try:
            if form.get("jti"):
                cascade = form.get("cascade") not in ("false", "0", "no")
                record = await revoke_token(runtime.store, form.require("jti"), by=by, reason=reason, cascade=cascade)
            elif form.get("sub"):
                record = await revoke_subject(
                    runtime.store, form.require("iss"), form.require("sub"), by=by, reason=reason, before=_before(form)
                )
            else:
                record = await revoke_client(
                    runtime.store, form.require("client_id"), by=by, reason=reason, before=_before(form)
                )
        except StoreUnavailable as exc:
            raise temporarily_unavailable("the event store is unavailable; nothing was revoked") from exc
    except OAuthError as exc:
        if exc.status not in (503,):
            request_id = request.scope.get("state", {}).get("request_id", "")
            await runtime.record_denial(exc, request_id, "admin_revoke", client_address(request), DenialContext())
        return error_response(exc)
    return json_response({"revoked": True, "event_type": record.event_type, "position": record.position})
