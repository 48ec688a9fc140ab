"""Discovery and health: JWKS, RFC 8414 metadata, /healthz, /readyz, /metrics."""

from __future__ import annotations

import functools
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from eventstore import StoreError
from eventstore.migrate import MIGRATIONS_TABLE, load_migrations

from .endpoints import json_response
from .keys import jws_alg
from .metrics import READY, note_store_error, render
from .runtime import Runtime
from .types import GRANT_TOKEN_EXCHANGE

AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
ASSERTION_ALGS = ["ES256", "RS256", "PS256", "Ed25519"]


def metadata(runtime: Runtime) -> dict[str, Any]:
    """RFC 8414 authorization server metadata."""
    base = runtime.config.issuer.rstrip("/")
    return {
        "issuer": runtime.config.issuer,
        "token_endpoint": f"{base}/token",
        "introspection_endpoint": f"{base}/introspect",
        "revocation_endpoint": f"{base}/revoke",
        "jwks_uri": f"{base}/jwks",
        "grant_types_supported": [GRANT_TOKEN_EXCHANGE],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "introspection_signing_alg_values_supported": [jws_alg(runtime.config.signing.algorithm)],
        "id_token_signing_alg_values_supported": [jws_alg(runtime.config.signing.algorithm)],
        "access_token_signing_alg_values_supported": runtime.keyring.algorithms,
        "scopes_supported": sorted({s for a in runtime.config.audiences for s in a.scopes}),
        "token_types_supported": [
            "urn:ietf:params:oauth:token-type:access_token",
            "urn:ietf:params:oauth:token-type:jwt",
            "urn:ietf:params:oauth:token-type:id_token",
        ],
        "subject_types_supported": ["public"],
    }


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def discovery(request: Request) -> Response:
    """``/.well-known/oauth-authorization-server`` and ``/.well-known/openid-configuration``."""
    body = metadata(_runtime(request))
    return Response(json_response(body).body, 200, {"Cache-Control": "public, max-age=300"}, "application/json")


async def jwks(request: Request) -> Response:
    """Baton's public signing keys."""
    runtime = _runtime(request)
    body = json_response(runtime.keyring.public_jwks).body
    max_age = runtime.config.signing.jwks_max_age()  # shorter than promote_after: caches see a next key in time
    return Response(body, 200, {"Cache-Control": f"public, max-age={max_age}"}, "application/jwk-set+json")


async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    return json_response({"status": "ok"})


@functools.cache
def _shipped_migrations() -> dict[int, str]:
    return {m.version: m.checksum for m in load_migrations()}


async def migration_state(store: Any) -> str:
    """``current`` when PostgreSQL has exactly the shipped migrations, ``behind``/``mismatch`` if not, ``n/a`` for SQLite."""
    if getattr(store, "dialect", "") != "postgresql":
        return "n/a"  # SQLite creates its schema when it opens
    try:
        rows = await store.fetch(f"SELECT version, checksum FROM {MIGRATIONS_TABLE}")
    except StoreError:
        return "unknown"
    applied = {int(r[0]): str(r[1]) for r in rows}
    shipped = _shipped_migrations()
    if applied == shipped:
        return "current"
    if all(shipped.get(v) == c for v, c in applied.items()):
        return "behind"
    return "mismatch"


async def readyz(request: Request) -> Response:
    """Readiness: store reachable, migrations current, keys loaded; a degraded cache is reported but does not fail."""
    runtime = _runtime(request)
    store_ok = await runtime.store.ping()
    if not store_ok:
        note_store_error(runtime.store, "readiness")
    cache_ok = await runtime.cache.ping()
    migrations = await migration_state(runtime.store) if store_ok else "unknown"
    keyring = getattr(runtime, "keyring", None)
    ready = store_ok and keyring is not None and migrations in ("current", "n/a") and not runtime.draining
    READY.set(1 if ready else 0)
    body = {
        "status": "ready" if ready else "unavailable",
        "store": "ok" if store_ok else "unreachable",
        "cache": "ok" if cache_ok else "degraded",
        "migrations": migrations,
        "keys": keyring.kid if keyring is not None else "not loaded",
        "published_keys": len(keyring.public_jwks["keys"]) if keyring is not None else 0,
        "draining": runtime.draining,
    }
    return json_response(body, 200 if ready else 503)


async def metrics(request: Request) -> Response:
    """Prometheus exposition."""
    body, content_type = render()
    return Response(body, 200, {"Cache-Control": "no-store"}, content_type)
