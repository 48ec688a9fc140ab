"""The /audit HTTP API: auth hook, formats (JSON, CSV, JSON Lines), cursors, strict parameters, OpenAPI."""

from __future__ import annotations

import csv
import io
import json

import httpx
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request

from app.audit_api import AUDIT_OPENAPI_PATHS, audit_routes, csv_cell
from app.errors import OAuthError
from projections.audit import AuditProjection
from projections.runner import ProjectionRunner
from tests.projections.workload import IDP, Workload, append


class Gate:
    """An authorize hook that records calls and refuses when told to."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.refuse: Exception | None = None

    async def __call__(self, request: Request) -> None:
        self.calls.append(request.url.path)
        if self.refuse is not None:
            raise self.refuse


@pytest.fixture
async def api(store):
    """A client for an app with only the audit routes, over a small projected log."""
    w = Workload()
    root = w.exchange()
    child = w.exchange(parent=root, actor="svc-b", client="svc-b")
    events = [root, child, w.exchange(sub="bob"), w.denied(sub="=cmd|calc"), w.revoke_token(child.issued_jti)]
    await append(store, events)
    runner = ProjectionRunner(store, [AuditProjection()])
    await runner.setup()
    await runner.catch_up()
    gate = Gate()
    app = Starlette(routes=audit_routes(store, gate))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://baton") as client:
        yield client, gate, {"root": root, "child": child}


async def test_every_route_calls_the_authorize_hook(api):
    """Each audit route awaits the hook before answering."""
    client, gate, t = api
    paths = [
        "/audit/exchanges",
        "/audit/denied",
        "/audit/revocations",
        f"/audit/subjects/{IDP}/alice/summary",
        f"/audit/tokens/{t['root'].issued_jti}/tree",
    ]
    for path in paths:
        assert (await client.get(path)).status_code == 200, path
    assert gate.calls == ["/audit/exchanges", "/audit/denied", "/audit/revocations", "/audit/subjects/https://idp.example/alice/summary", f"/audit/tokens/{t['root'].issued_jti}/tree"]


@pytest.mark.parametrize(
    ("refusal", "status"),
    [(OAuthError("invalid_client", "who are you", status=401), 401), (HTTPException(403, "no audit scope"), 403)],
)
async def test_refusal_from_the_hook_stops_the_request(api, refusal, status):
    """When the hook raises 401/403 the caller gets that status and no audit data."""
    client, gate, _ = api
    gate.refuse = refusal
    response = await client.get("/audit/exchanges")
    assert response.status_code == status
    assert "items" not in response.text


async def test_json_page_with_next_cursor_and_link(api):
    """JSON answers `{items, next}`; `next` and the Link header lead to the following page."""
    client, _, _ = api
    first = await client.get("/audit/exchanges", params={"limit": 2})
    body = first.json()
    assert [i["position"] for i in body["items"]] == [1, 2] and body["next"] == 2
    assert first.headers["cache-control"] == "no-store"
    assert 'rel="next"' in first.headers["link"] and "after=2" in first.headers["link"]
    second = (await client.get("/audit/exchanges", params={"limit": 2, "after": body["next"]})).json()
    assert [i["position"] for i in second["items"]] == [3] and second["next"] is None


async def test_filters_reach_the_query(api):
    """Query parameters filter: by subject, by actor anywhere in the chain."""
    client, _, t = api
    body = (await client.get("/audit/exchanges", params={"subject_iss": IDP, "subject_sub": "bob"})).json()
    assert [i["subject_sub"] for i in body["items"]] == ["bob"]
    body = (await client.get("/audit/exchanges", params={"actor_sub": "svc-b"})).json()
    assert [i["issued_jti"] for i in body["items"]] == [t["child"].issued_jti]


async def test_csv_by_format_parameter_streams_all_rows_with_header(api):
    """`format=csv` without limit exports every row with a header; list cells are space-joined."""
    client, _, _ = api
    response = await client.get("/audit/exchanges", params={"format": "csv"})
    assert response.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["position"] for r in table] == ["1", "2", "3"]
    assert table[1]["act"] == '{"sub":"svc-b"}' and table[0]["scope"] == "read"


async def test_csv_defuses_spreadsheet_formulas(api):
    """A caller-controlled value starting with `=` is written with a leading quote (CSV injection)."""
    client, _, _ = api
    response = await client.get("/audit/denied", params={"format": "csv", "limit": 10})
    [row] = list(csv.DictReader(io.StringIO(response.text)))
    assert row["subject_sub"] == "'=cmd|calc"
    assert csv_cell(["a", "b"]) == "a b" and csv_cell(None) == "" and csv_cell(True) == "true"


async def test_jsonl_by_accept_header_with_cursor_header(api):
    """`Accept: application/x-ndjson` gives one JSON object per line; a limited page sets X-Next-Cursor."""
    client, _, _ = api
    response = await client.get("/audit/exchanges", params={"limit": 1}, headers={"Accept": "application/x-ndjson"})
    lines = response.text.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["position"] == 1
    assert response.headers["x-next-cursor"] == "1"
    everything = await client.get("/audit/revocations", headers={"Accept": "application/jsonl"})
    assert [json.loads(line)["kind"] for line in everything.text.splitlines()] == ["token"]


@pytest.mark.parametrize(
    "params",
    [
        {"subject": "alice"},  # a typo must not silently widen the answer
        {"limit": "0"},
        {"limit": "lots"},
        {"after": "-3"},
        {"since": "yesterday"},
        {"format": "xml"},
        [("client_id", "a"), ("client_id", "b")],
    ],
)
async def test_bad_parameters_are_400(api, params):
    """Unknown, repeated or malformed parameters are refused with an OAuth-style JSON error."""
    client, _, _ = api
    response = await client.get("/audit/exchanges", params=params)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_summary_and_tree_found_and_not_found(api):
    """Summary and tree answer 200 with data, 404 for an unknown subject or jti."""
    client, _, t = api
    summary = (await client.get(f"/audit/subjects/{IDP}/alice/summary")).json()
    assert summary["exchanges"] == 2
    assert (await client.get(f"/audit/subjects/{IDP}/nobody/summary")).status_code == 404
    tree = (await client.get(f"/audit/tokens/{t['child'].issued_jti}/tree")).json()
    assert tree["ancestors"] == [t["root"].issued_jti]
    assert tree["root"]["children"][0]["revoked"]["how"] == "token"
    assert (await client.get("/audit/tokens/nope/tree")).status_code == 404


async def test_routes_are_read_only(api):
    """Only GET is served: POST and DELETE are 405."""
    client, _, _ = api
    assert (await client.post("/audit/exchanges")).status_code == 405
    assert (await client.delete("/audit/revocations")).status_code == 405


def test_openapi_documents_every_route():
    """Each audit route has an OpenAPI 3.1 GET operation with responses and security."""
    assert set(AUDIT_OPENAPI_PATHS) == {
        "/audit/exchanges",
        "/audit/denied",
        "/audit/revocations",
        "/audit/subjects/{iss}/{sub}/summary",
        "/audit/tokens/{jti}/tree",
    }
    for path, item in AUDIT_OPENAPI_PATHS.items():
        op = item["get"]
        assert op["security"] and "200" in op["responses"] and "401" in op["responses"], path
    names = {p["name"] for p in AUDIT_OPENAPI_PATHS["/audit/exchanges"]["get"]["parameters"]}
    assert {"subject_iss", "subject_sub", "actor_sub", "client_id", "audience", "since", "until", "after", "limit", "format"} <= names
