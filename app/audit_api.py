"""The read-only audit API under ``/audit/…`` for compliance teams.

Every route first awaits the ``authorize`` hook the application provides (a
client with the audit scope, or the admin credential); it raises (or returns)
the 401/403 response itself. Lists filter with query parameters, page by log
position (``after`` + ``limit``; the JSON body carries ``next``, every format
also a ``Link: rel="next"`` header) and come as JSON, CSV or JSON Lines
(``format=json|csv|jsonl`` or the ``Accept`` header). CSV and JSON Lines
without ``limit`` stream every matching row. Unknown or repeated parameters
are refused rather than ignored: a typo must never widen an audit answer.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from eventstore import EventStore, StoreError, StoreUnavailable
from projections import audit_queries as q
from projections.audit import AuditProjection
from projections.runner import ensure_schema

from .errors import OAuthError

Authorize = Callable[[Request], Awaitable[Any]]

_json = msgspec.json.Encoder()
NO_STORE = {"Cache-Control": "no-store"}
MEDIA = {"json": "application/json", "csv": "text/csv; charset=utf-8", "jsonl": "application/jsonl"}
_ACCEPT = {"text/csv": "csv", "application/jsonl": "jsonl", "application/x-ndjson": "jsonl", "application/json": "json"}
_FORMAT_ALIASES = {"json": "json", "csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl"}
COLUMNS = {"exchanges": q.EXCHANGE_COLUMNS, "denied": q.DENIED_COLUMNS, "revocations": q.REVOCATION_COLUMNS}
#: cells starting with these are formulas in spreadsheets; prefixed with ' in CSV (OWASP CSV injection)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class BadRequest(Exception):
    """A query parameter is missing, unknown, repeated or malformed."""


def _error(status: int, error: str, description: str, headers: dict[str, str] | None = None) -> Response:
    body = _json.encode({"error": error, "error_description": description})
    return Response(body, status, {**NO_STORE, **(headers or {})}, "application/json")


def negotiate(request: Request) -> str:
    """``json``, ``csv`` or ``jsonl`` from ``format=`` (wins) or ``Accept`` (JSON by default)."""
    values = request.query_params.getlist("format")
    if len(values) > 1:
        raise BadRequest("format given more than once")
    if values:
        if values[0] not in _FORMAT_ALIASES:
            raise BadRequest("format must be json, csv or jsonl")
        return _FORMAT_ALIASES[values[0]]
    for part in request.headers.get("accept", "").split(","):
        media = part.split(";")[0].strip().lower()
        if media in _ACCEPT:
            return _ACCEPT[media]
    return "json"


def _single(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise BadRequest(f"{name} given more than once")
    return values[0] if values else None


def _int(request: Request, name: str, default: int | None) -> int | None:
    value = _single(request, name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None


def parse_filters(request: Request, query: str) -> dict[str, Any]:
    """The keyword arguments of ``query`` from the query string; unknown parameters are refused."""
    filters = q.FILTERS[query]
    allowed = {f.name for f in filters} | {"after", "limit", "format"}
    unknown = sorted(set(request.query_params.keys()) - allowed)
    if unknown:
        raise BadRequest(f"unknown parameter(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    kwargs: dict[str, Any] = {}
    for f in filters:
        value = _single(request, f.name)
        if value is None:
            continue
        if f.kind == "time":
            try:
                kwargs[f.name] = q.parse_time(value)
            except ValueError:
                raise BadRequest(f"{f.name} must be RFC 3339 or epoch seconds") from None
        else:
            kwargs[f.name] = value
    return kwargs


def csv_cell(value: Any) -> str:
    """One CSV cell: lists space-joined, objects as JSON, formulas defused."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    elif isinstance(value, dict):
        value = _json.encode(value).decode()
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_lines(columns: tuple[str, ...], items: list[dict[str, Any]], *, header: bool) -> str:
    """CSV text for ``items`` (with the header row when ``header``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(columns)
    writer.writerows([csv_cell(item.get(c)) for c in columns] for item in items)
    return out.getvalue()


def jsonl_lines(items: list[dict[str, Any]]) -> str:
    """One JSON document per line."""
    return "".join(_json.encode(item).decode() + "\n" for item in items)


def _next_link(request: Request, cursor: int | None) -> dict[str, str]:
    if cursor is None:
        return {}
    url = request.url.include_query_params(after=str(cursor))
    return {"Link": f'<{url.path}?{url.query}>; rel="next"', "X-Next-Cursor": str(cursor)}


def _body(fmt: str, query: str, page: dict[str, Any]) -> str | bytes:
    if fmt == "csv":
        return csv_lines(COLUMNS[query], page["items"], header=True)
    if fmt == "jsonl":
        return jsonl_lines(page["items"])
    return _json.encode(page)


async def _stream(store: EventStore, query: str, fmt: str, kwargs: dict[str, Any], after: int) -> AsyncIterator[str]:
    """Every matching row, a page at a time (CSV or JSON Lines)."""
    run, header = q.LIST_QUERIES[query], True
    while True:
        page = await run(store, **kwargs, after=after, limit=q.MAX_LIMIT)
        if fmt == "csv":
            yield csv_lines(COLUMNS[query], page["items"], header=header)
            header = False
        else:
            yield jsonl_lines(page["items"])
        if page["next"] is None:
            return
        after = page["next"]


def audit_routes(store: EventStore, authorize: Authorize, *, create_schema: bool = True) -> list[Route]:
    """The ``/audit/…`` routes over ``store``; ``authorize(request)`` guards each of them.

    With ``create_schema`` the views' tables are made on first use if missing; without it
    (a runtime role) ``baton migrate`` has made them.
    """
    ready: list[bool] = [] if create_schema else [True]

    def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                refusal = await authorize(request)
                if isinstance(refusal, Response):
                    return refusal
                if not ready:  # the views exist even before the runner's first batch
                    await ensure_schema(store, [AuditProjection()])
                    ready.append(True)
                return await handler(request)
            except OAuthError as exc:
                return _error(exc.status, exc.error, exc.description, exc.headers)
            except BadRequest as exc:
                return _error(400, "invalid_request", str(exc))
            except (StoreUnavailable, StoreError):
                return _error(503, "temporarily_unavailable", "the audit store is unavailable", {"Retry-After": "1"})

        return endpoint

    def list_endpoint(query: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            fmt = negotiate(request)
            kwargs = parse_filters(request, query)
            after = _int(request, "after", 0) or 0
            limit = _int(request, "limit", None)
            try:
                q.check_page(after, q.DEFAULT_LIMIT if limit is None else limit)
            except ValueError as exc:
                raise BadRequest(str(exc)) from None
            if limit is None and fmt != "json":
                await q.LIST_QUERIES[query](store, **kwargs, after=after, limit=1)  # fail before streaming starts
                return StreamingResponse(_stream(store, query, fmt, kwargs, after), headers=NO_STORE, media_type=MEDIA[fmt])
            page = await q.LIST_QUERIES[query](store, **kwargs, after=after, limit=q.DEFAULT_LIMIT if limit is None else limit)
            headers = {**NO_STORE, **_next_link(request, page["next"])}
            return Response(_body(fmt, query, page), 200, headers, MEDIA[fmt])

        return endpoint

    async def summary(request: Request) -> Response:
        result = await q.subject_summary(store, request.path_params["iss"], request.path_params["sub"])
        if result is None:
            return _error(404, "not_found", "no activity recorded for this subject")
        return Response(_json.encode(result), 200, NO_STORE, MEDIA["json"])

    async def tree(request: Request) -> Response:
        result = await q.token_tree(store, request.path_params["jti"])
        if result is None:
            return _error(404, "not_found", "no exchange issued this jti")
        return Response(_json.encode(result), 200, NO_STORE, MEDIA["json"])

    return [
        *(Route(f"/audit/{name}", guarded(list_endpoint(name)), methods=["GET"]) for name in q.LIST_QUERIES),
        Route("/audit/subjects/{iss:path}/{sub}/summary", guarded(summary), methods=["GET"]),
        Route("/audit/tokens/{jti}/tree", guarded(tree), methods=["GET"]),
    ]


# --- OpenAPI 3.1 -----------------------------------------------------------------------------------------------

_ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AuditError"}}}}


def _list_operation(query: str, summary: str, item_schema: dict[str, Any]) -> dict[str, Any]:
    params = [
        {
            "name": f.name,
            "in": "query",
            "required": False,
            "description": f.help,
            "schema": {"type": "string", **({"examples": ["2026-11-23T00:00:00Z"]} if f.kind == "time" else {})},
        }
        for f in q.FILTERS[query]
    ]
    params += [
        {"name": "after", "in": "query", "description": "cursor: the last position seen", "schema": {"type": "integer", "minimum": 0, "default": 0}},
        {"name": "limit", "in": "query", "description": "page size (CSV/JSONL without limit stream everything)", "schema": {"type": "integer", "minimum": 1, "maximum": q.MAX_LIMIT, "default": q.DEFAULT_LIMIT}},
        {"name": "format", "in": "query", "description": "overrides Accept", "schema": {"enum": ["json", "csv", "jsonl"]}},
    ]  # fmt: skip
    return {
        "get": {
            "tags": ["audit"],
            "summary": summary,
            "operationId": f"audit_{query}",
            "security": [{"auditClient": []}, {"adminToken": []}],
            "parameters": params,
            "responses": {
                "200": {
                    "description": "one page (JSON) or the rows (CSV, JSON Lines)",
                    "headers": {"Link": {"description": 'rel="next" page', "schema": {"type": "string"}}},
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["items", "next"],
                                "properties": {
                                    "items": {"type": "array", "items": item_schema},
                                    "next": {"type": ["integer", "null"], "description": "pass as after= for the next page"},
                                },
                            }
                        },
                        "text/csv": {"schema": {"type": "string"}},
                        "application/jsonl": {"schema": {"type": "string"}},
                    },
                },
                "400": _ERROR,
                "401": _ERROR,
                "403": _ERROR,
                "503": _ERROR,
            },
        }
    }


def _object(columns: tuple[str, ...], arrays: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": {c: ({"type": "array", "items": {"type": "string"}} if c in arrays else {}) for c in columns}}


def _get(summary: str, params: list[str], description: str) -> dict[str, Any]:
    return {
        "get": {
            "tags": ["audit"],
            "summary": summary,
            "description": description,
            "security": [{"auditClient": []}, {"adminToken": []}],
            "parameters": [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params],
            "responses": {"200": {"description": "found", "content": {"application/json": {"schema": {"type": "object"}}}}, "401": _ERROR, "403": _ERROR, "404": _ERROR, "503": _ERROR},
        }
    }  # fmt: skip


#: the audit endpoints for Baton's /openapi.json (the lead merges them with the other paths)
AUDIT_OPENAPI_PATHS: dict[str, Any] = {
    "/audit/exchanges": _list_operation(
        "exchanges", "Token exchanges by subject, any actor in the chain, client, audience, time",
        _object(q.EXCHANGE_COLUMNS, ("audience", "resource", "scope")),
    ),
    "/audit/denied": _list_operation(
        "denied", "Refused exchanges and failed client authentications, with reasons",
        _object(q.DENIED_COLUMNS, ("audience", "scope")),
    ),
    "/audit/revocations": _list_operation(
        "revocations", "Revocations of tokens, subjects and clients", _object(q.REVOCATION_COLUMNS)
    ),
    "/audit/subjects/{iss}/{sub}/summary": _get(
        "Activity summary of one subject", ["iss", "sub"],
        "Counts (exchanges, denied, revocations), first and last seen, top clients, audiences and actors. "
        "`iss` is percent-encoded or given as is (slashes allowed).",
    ),
    "/audit/tokens/{jti}/tree": _get(
        "Delegation tree of a token", ["jti"],
        "Ancestors up to the root (parent_jti), then every descendant, each node with its revocation state.",
    ),
}  # fmt: skip

#: components the paths refer to (merge into ``components``)
AUDIT_OPENAPI_COMPONENTS: dict[str, Any] = {
    "schemas": {
        "AuditError": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
        }
    },
    "securitySchemes": {
        "auditClient": {"type": "http", "scheme": "basic", "description": "a client configured with audit = true"},
        "adminToken": {"type": "http", "scheme": "bearer", "description": "the admin credential"},
    },
}
