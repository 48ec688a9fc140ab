"""schemathesis against Baton's own OpenAPI document: no generated request gets a 5xx.

Baton runs under hypercorn on a loopback port (real HTTP, lifespan and all) with
the test harness configuration; every operation of ``/openapi.json`` is fuzzed
with and without client credentials. The example count follows
``BATON_FUZZ_EXAMPLES`` (see ``strategies.py``).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import settings

from app.openapi import openapi_document
from app.server import create_app
from tests.support.fake_issuer import FakeIssuer
from tests.support.harness import BATON, SECRETS, base_config
from tests.support.live_server import run_asgi
from app.config import config_from_dict

from .strategies import EXAMPLES, FUZZ_SETTINGS

schema = schemathesis.openapi.from_dict(openapi_document(BATON))
BASIC = "Basic " + base64.b64encode(f"frontend:{SECRETS['frontend']}".encode()).decode()


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    idp = FakeIssuer()
    config = config_from_dict(base_config(tmp_path_factory.mktemp("openapi"), idp))
    app = create_app(config, http=httpx.AsyncClient(transport=httpx.ASGITransport(app=idp.app)))
    with run_asgi(app) as url:
        yield url


def test_document_is_served(live_url: str) -> None:
    """GET /openapi.json is the OpenAPI 3.1 document naming every OAuth and health endpoint."""
    document = httpx.get(live_url + "/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    assert {"/token", "/introspect", "/revoke", "/admin/revoke", "/jwks", "/healthz", "/readyz",
            "/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} <= set(document["paths"])


@schema.parametrize()
@settings(FUZZ_SETTINGS, max_examples=max(10, EXAMPLES // 4))
def test_no_generated_request_gets_a_server_error(case: schemathesis.Case, live_url: str) -> None:
    """Whatever schemathesis generates from the document, Baton answers below 500."""
    headers = dict(case.headers or {})
    if case.path in ("/token", "/introspect", "/revoke") and "authorization" not in {h.lower() for h in headers}:
        headers["Authorization"] = BASIC
    response = case.call(base_url=live_url, headers=headers, timeout=10)
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
