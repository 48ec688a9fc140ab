"""Baton's OpenAPI 3.1 document, served at ``GET /openapi.json``.

Describes the OAuth endpoints (token exchange, introspection, revocation),
administrative revocation, the key set, the RFC 8414 metadata documents and
the health endpoints; the audit API adds its paths through
``app.audit_api.AUDIT_OPENAPI_PATHS`` when that module is present. The
document is what schemathesis fuzzes in ``tests/fuzz``.
"""

from __future__ import annotations

import importlib
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .endpoints import json_response
from .types import ACCEPTED_TOKEN_TYPES, CLIENT_ASSERTION_TYPE_JWT, GRANT_TOKEN_EXCHANGE, ISSUABLE_TOKEN_TYPES

FORM = "application/x-www-form-urlencoded"
_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


_RETRY_AFTER = {"Retry-After": {"schema": {"type": "string"}, "description": "seconds to wait"}}
_ERRORS = {
    "400": _json(_ref("OAuthError"), "refused (RFC 6749 §5.2 / RFC 8693 §2.2.2)"),
    "401": _json(_ref("OAuthError"), "client authentication failed (`invalid_client`)"),
    "429": _json(_ref("OAuthError"), "rate limited (`slow_down`)", _RETRY_AFTER),
    "503": _json(_ref("OAuthError"), "event store unavailable (`temporarily_unavailable`); nothing issued",
                 _RETRY_AFTER),
}
_CLIENT_AUTH = [{"clientSecretBasic": []}, {}]  # {}: client_secret_post / private_key_jwt travel in the form

_CLIENT_AUTH_FIELDS: dict[str, Any] = {
    "client_id": {"type": "string"},
    "client_secret": {"type": "string"},
    "client_assertion_type": {"type": "string", "enum": [CLIENT_ASSERTION_TYPE_JWT]},
    "client_assertion": {"type": "string"},
}

SCHEMAS: dict[str, Any] = {
    "OAuthError": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
    },
    "TokenExchangeRequest": {
        "type": "object",
        "required": ["grant_type", "subject_token", "subject_token_type"],
        "properties": {
            "grant_type": {"type": "string", "enum": [GRANT_TOKEN_EXCHANGE]},
            "subject_token": {"type": "string"},
            "subject_token_type": {"type": "string", "enum": sorted(ACCEPTED_TOKEN_TYPES)},
            "actor_token": {"type": "string"},
            "actor_token_type": {"type": "string", "enum": sorted(ACCEPTED_TOKEN_TYPES)},
            "requested_token_type": {"type": "string", "enum": list(ISSUABLE_TOKEN_TYPES)},
            "audience": {"type": "string"},
            "resource": {"type": "string", "format": "uri"},
            "scope": {"type": "string"},
            **_CLIENT_AUTH_FIELDS,
        },
    },
    "TokenExchangeResponse": {
        "type": "object",
        "required": ["access_token", "issued_token_type", "token_type", "expires_in"],
        "properties": {
            "access_token": {"type": "string"},
            "issued_token_type": {"type": "string"},
            "token_type": {"type": "string", "enum": ["Bearer"]},
            "expires_in": {"type": "integer"},
            "scope": {"type": "string"},
        },
    },
    "TokenRequest": {
        "type": "object",
        "required": ["token"],
        "properties": {"token": {"type": "string"}, "token_type_hint": {"type": "string"}, **_CLIENT_AUTH_FIELDS},
    },
    "IntrospectionResponse": {
        "type": "object",
        "required": ["active"],
        "properties": {"active": {"type": "boolean"}},
        "additionalProperties": True,
    },
    "AdminRevokeRequest": {
        "type": "object",
        "properties": {
            "jti": {"type": "string"}, "iss": {"type": "string"}, "sub": {"type": "string"},
            "client_id": {"type": "string"}, "before": {"type": "string"}, "reason": {"type": "string"},
            "cascade": {"type": "string", "enum": ["true", "false"]},
        },
    },
    "JWKSet": {
        "type": "object",
        "required": ["keys"],
        "properties": {"keys": {"type": "array", "items": {"type": "object"}}},
    },
    "Metadata": {"type": "object", "required": ["issuer", "token_endpoint", "jwks_uri"]},
    "Health": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
}


def _form_post(summary: str, schema: str, ok: dict[str, Any], security: list[dict[str, list[str]]]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "security": security,
            "requestBody": {"required": True, "content": {FORM: {"schema": _ref(schema)}}},
            "responses": {"200": ok, **_ERRORS},
        }
    }


def _get(summary: str, schema: dict[str, Any], media: str = "application/json", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "security": [],
            "responses": {"200": {"description": "OK", "content": {media: {"schema": schema}}}, **(extra or {})},
        }
    }


PATHS: dict[str, Any] = {
    "/token": _form_post("Token exchange (RFC 8693)", "TokenExchangeRequest",
                         _json(_ref("TokenExchangeResponse"), "issued token"), _CLIENT_AUTH),
    "/introspect": _form_post("Token introspection (RFC 7662), lineage-aware", "TokenRequest",
                              _json(_ref("IntrospectionResponse"), "introspection result"), _CLIENT_AUTH),
    "/revoke": _form_post("Token revocation (RFC 7009), cascading", "TokenRequest",
                          _json({"type": "object"}, "revoked, or nothing to revoke"), _CLIENT_AUTH),
    "/admin/revoke": _form_post("Administrative revocation: a token, a subject or a client", "AdminRevokeRequest",
                                _json({"type": "object"}, "revocation recorded"),
                                [{"adminBearer": []}, {"clientSecretBasic": []}]),
    "/jwks": _get("Baton's public signing keys", _ref("JWKSet"), "application/jwk-set+json"),
    "/.well-known/oauth-authorization-server": _get("Authorization server metadata (RFC 8414)", _ref("Metadata")),
    "/.well-known/openid-configuration": _get("Same metadata at the OpenID Connect location", _ref("Metadata")),
    "/healthz": _get("Liveness", _ref("Health")),
    "/readyz": _get("Readiness: store reachable and not draining", _ref("Health"),
                    extra={"503": _json(_ref("Health"), "not ready (store unreachable or draining)")}),
    "/metrics": _get("Prometheus metrics", {"type": "string"}, "text/plain"),
    "/openapi.json": _get("This document", {"type": "object"}),
}


def _audit_parts() -> tuple[dict[str, Any], dict[str, Any]]:
    """The audit API's paths and components, when that module is present."""
    try:
        module = importlib.import_module("app.audit_api")
    except ImportError:
        return {}, {}
    return dict(getattr(module, "AUDIT_OPENAPI_PATHS", {})), dict(getattr(module, "AUDIT_OPENAPI_COMPONENTS", {}))


def openapi_document(issuer: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document for a Baton at ``issuer``."""
    audit_paths, audit_components = _audit_parts()
    return {
        "openapi": "3.1.0",
        "info": {"title": "Baton", "version": "0.1.0",
                 "description": "OAuth 2.0 Token Exchange (RFC 8693) Security Token Service"},
        "servers": [{"url": issuer.rstrip("/")}],
        "paths": {**PATHS, **audit_paths},
        "components": {
            "schemas": {**SCHEMAS, **audit_components.get("schemas", {})},
            "securitySchemes": {
                "clientSecretBasic": {"type": "http", "scheme": "basic"},
                "adminBearer": {"type": "http", "scheme": "bearer"},
                **audit_components.get("securitySchemes", {}),
            },
        },
    }


async def openapi_endpoint(request: Request) -> Response:
    """``GET /openapi.json``."""
    return json_response(openapi_document(request.app.state.runtime.config.issuer))
