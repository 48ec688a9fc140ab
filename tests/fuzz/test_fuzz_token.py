"""Fuzzing /token: random forms and random tokens are never accepted and never answered with a 5xx.

One Baton (SQLite store, fake issuer) runs on an event loop owned by the
module; each hypothesis example is one request to it. After all examples, the
log holds no ``TokenExchanged`` event at all. The example count is
``BATON_FUZZ_EXAMPLES`` (small by default; tens of thousands in a dedicated run).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.types import GRANT_TOKEN_EXCHANGE, TT_ACCESS_TOKEN
from tests.support.fake_issuer import new_key
from tests.support.harness import SECRETS, Harness, make_harness

from .strategies import FUZZ_SETTINGS, forms, tokens

UNTRUSTED_KEY = new_key("ES256")


class Running:
    """A started harness and the loop it lives on."""

    def __init__(self, loop: asyncio.AbstractEventLoop, baton: Harness) -> None:
        self.loop = loop
        self.baton = baton

    def post(self, pairs: list[tuple[str, str]], auth: tuple[str, str] | None = ("frontend", SECRETS["frontend"])) -> httpx.Response:
        body = str(httpx.QueryParams(pairs)).encode()
        kwargs: dict[str, Any] = {"content": body, "headers": {"content-type": "application/x-www-form-urlencoded"}}
        if auth is not None:
            kwargs["auth"] = auth
        return self.loop.run_until_complete(self.baton.http.post("/token", **kwargs))


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    loop = asyncio.new_event_loop()
    baton = make_harness(tmp_path_factory.mktemp("fuzz"))
    loop.run_until_complete(baton.__aenter__())
    try:
        yield Running(loop, baton)
        issued = loop.run_until_complete(baton.events("TokenExchanged"))
        assert issued == [], "a fuzzed request was accepted"
    finally:
        loop.run_until_complete(baton.__aexit__(None, None, None))
        loop.close()


def _refused(response: httpx.Response) -> None:
    assert response.status_code in (400, 401), response.text
    body = response.json()
    assert isinstance(body["error"], str) and "access_token" not in body


def _token_strategy(running: Running) -> st.SearchStrategy[str]:
    key = next(iter(running.baton.idp.keys.values()))
    return tokens(key, UNTRUSTED_KEY)


@FUZZ_SETTINGS
@given(data=st.data(), role=st.sampled_from(["subject", "actor"]))
def test_random_tokens_are_refused(running: Running, data: st.DataObject, role: str) -> None:
    """A random, tampered or untrusted-key token as subject or actor is a 400, never accepted, never a 5xx."""
    token = data.draw(_token_strategy(running))
    subject = token if role == "subject" else running.baton.user_token()
    pairs = [("grant_type", GRANT_TOKEN_EXCHANGE), ("subject_token", subject),
             ("subject_token_type", TT_ACCESS_TOKEN), ("audience", "orders")]
    if role == "actor":
        pairs += [("actor_token", token), ("actor_token_type", TT_ACCESS_TOKEN)]
    response = running.post(pairs)
    assert response.status_code == 400, response.text
    _refused(response)


@FUZZ_SETTINGS
@given(data=st.data(), authenticated=st.booleans())
def test_random_forms_are_refused(running: Running, data: st.DataObject, authenticated: bool) -> None:
    """Any form (missing, repeated, unknown or hostile fields; random tokens) is a 400/401, never a 5xx."""
    pairs = data.draw(forms(_token_strategy(running)))
    _refused(running.post(pairs, ("frontend", SECRETS["frontend"]) if authenticated else None))


@FUZZ_SETTINGS
@given(content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]),
       body=st.binary(max_size=400))
def test_random_bodies_are_refused(running: Running, content_type: str, body: bytes) -> None:
    """Random bytes under any content type are a 400/401, never a 5xx."""
    headers = {"content-type": content_type} if content_type else {}
    response = running.loop.run_until_complete(
        running.baton.http.post("/token", content=body, headers=headers, auth=("frontend", SECRETS["frontend"])))
    _refused(response)
