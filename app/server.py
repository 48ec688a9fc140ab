"""The ASGI application: routes, middleware and the lifespan that owns the :class:`Runtime`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from .admin import admin_revoke, authorize_audit
from .audit_api import audit_routes
from .config import Config
from .endpoints import introspection_endpoint, json_response, revocation_endpoint, token_endpoint
from .gc_tuning import tuned_gc
from .middleware import RequestContextMiddleware
from .openapi import openapi_endpoint
from .runtime import Runtime
from .wellknown import discovery, healthz, jwks, metrics, readyz


async def _not_found(request: Request, exc: Exception) -> Response:
    return json_response({"error": "not_found"}, 404)


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    return json_response({"error": "invalid_request", "error_description": "method not allowed"}, 405)


async def _server_error(request: Request, exc: Exception) -> Response:
    return json_response({"error": "server_error", "error_description": "internal error"}, 500)


def routes(runtime: Runtime) -> list[BaseRoute]:
    """Every route Baton serves for the runtime's configuration."""
    config = runtime.config
    table: list[BaseRoute] = [
        Route("/token", token_endpoint, methods=["POST"]),
        Route("/introspect", introspection_endpoint, methods=["POST"]),
        Route("/revoke", revocation_endpoint, methods=["POST"]),
        Route("/admin/revoke", admin_revoke, methods=["POST"]),
        Route("/jwks", jwks, methods=["GET"]),
        Route("/.well-known/oauth-authorization-server", discovery, methods=["GET"]),
        Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
    ]
    table.extend(audit_routes(runtime.store, authorize_audit, create_schema=runtime.creates_schema))
    if config.demo:
        from .demo_idp import demo_idp_app

        table.append(Mount("/demo-idp", app=demo_idp_app(config)))
    return table


def create_app(config: Config, *, http: httpx.AsyncClient | None = None) -> Starlette:
    """Build Baton's ASGI app for ``config``; the runtime starts in the lifespan.

    ``http`` replaces the client used to fetch issuer metadata and keys (tests route it to fakes).
    """
    runtime = Runtime(config, http=http)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        try:
            server = config.server
            with tuned_gc(freeze=server.gc_freeze, young_threshold=server.gc_young_threshold):
                yield
        finally:
            await runtime.stop()

    app = Starlette(
        routes=routes(runtime),
        middleware=[Middleware(RequestContextMiddleware)],
        exception_handlers={404: _not_found, 405: _method_not_allowed, 500: _server_error},
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app
