"""Safe fetching of issuer metadata and key sets (app/http_fetch.py)."""

from __future__ import annotations

import httpx
import pytest

from app.http_fetch import FetchError, cache_ttl, check_url, fetch_json
from tests.support.fake_issuer import FakeIssuer
from tests.support.live_server import run_asgi

LIMITS = {"timeout": 2.0, "max_bytes": 4096, "allow_loopback_http": True}


class Recorder:
    """An httpx mock transport that answers JSON and records every request."""

    def __init__(self, response: httpx.Response | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.response = response

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.response or httpx.Response(200, json={"ok": True})


def client_for(handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


@pytest.fixture
def fake():
    return FakeIssuer("https://idp.test")


@pytest.fixture
async def fake_http(fake):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(fake.app)) as client:
        yield client


async def test_fetches_document_and_ttl(fake, fake_http):
    """An https JSON document is returned with the TTL from Cache-Control max-age."""
    fake.cache_control = "public, max-age=120"
    doc, ttl = await fetch_json(fake_http, "https://idp.test/jwks", **LIMITS)
    assert doc["keys"][0]["kid"] == fake.kid and ttl == 120


@pytest.mark.parametrize(
    "header,ttl",
    [(None, None), ("public", None), ("max-age=0", 0), ("no-store", 0), ("no-cache, max-age=60", 0), ('max-age="90"', 90), ("s-maxage=5, max-age=7", 7)],
)
def test_cache_ttl_parsing(header, ttl):
    """max-age gives the TTL, no-store/no-cache give 0, no directive gives None."""
    assert cache_ttl(header) == ttl


@pytest.mark.parametrize(
    "url",
    [
        "http://idp.example.com/jwks",
        "ftp://idp.example.com/jwks",
        "file:///etc/passwd",
        "https://user:pw@idp.example.com/jwks",
        "https:///jwks",
        "https://idp.example.com:99999/jwks",
        "https://10.0.0.8/jwks",
        "https://169.254.169.254/latest/meta-data",
        "https://[fe80::1]/jwks",
        "https://192.168.1.1/jwks",
        "https://0.0.0.0/jwks",
        "https://[::ffff:10.0.0.1]/jwks",
    ],
)
async def test_refused_urls_cause_no_request(url):
    """Plain http off loopback, other schemes, credentials and private/link-local literals are refused before any request."""
    recorder = Recorder()
    async with client_for(recorder) as client:
        with pytest.raises(FetchError):
            await fetch_json(client, url, **LIMITS)
    assert recorder.requests == []


async def test_private_addresses_allowed_when_configured():
    """allow_private lets a deployment fetch from its own private network."""
    recorder = Recorder()
    async with client_for(recorder) as client:
        doc, _ = await fetch_json(client, "https://10.0.0.8/jwks", **LIMITS, allow_private=True)
    assert doc == {"ok": True} and len(recorder.requests) == 1


def test_loopback_http_only_when_allowed():
    """http to 127.0.0.0/8, ::1 and localhost is allowed only with allow_loopback_http."""
    for url in ("http://127.0.0.1:8000/j", "http://127.8.9.1/j", "http://[::1]:81/j", "http://localhost/j"):
        check_url(url, allow_loopback_http=True)
        with pytest.raises(FetchError):
            check_url(url, allow_loopback_http=False)


async def test_real_loopback_server(fake):
    """A fetch over real HTTP from a loopback server works (the path local development uses)."""
    with run_asgi(fake.app) as base_url:
        fake.issuer = base_url
        async with httpx.AsyncClient() as client:
            doc, ttl = await fetch_json(client, f"{base_url}/.well-known/openid-configuration", **LIMITS)
    assert doc["issuer"] == base_url and doc["jwks_uri"] == f"{base_url}/jwks" and ttl == 300


async def test_redirect_is_refused(fake, fake_http):
    """A redirect is an error, never followed."""
    fake.mode = "redirect"
    with pytest.raises(FetchError, match="redirect"):
        await fetch_json(fake_http, "https://idp.test/jwks", **LIMITS)


@pytest.mark.parametrize("mode", ["down", "junk"])
async def test_errors_and_junk_are_fetch_errors(fake, fake_http, mode):
    """HTTP errors and bodies that are not JSON raise FetchError."""
    fake.mode = mode
    with pytest.raises(FetchError):
        await fetch_json(fake_http, "https://idp.test/jwks", **LIMITS)


@pytest.mark.parametrize("body", [b"[1,2]", b'{"keys":[],"keys":[{}]}', b'{"a": NaN}', b"\xff"])
async def test_non_object_or_ambiguous_json_is_refused(body):
    """Arrays, duplicate members, NaN and non-UTF-8 bodies are refused."""
    async with client_for(Recorder(httpx.Response(200, content=body))) as client:
        with pytest.raises(FetchError):
            await fetch_json(client, "https://idp.example.com/jwks", **LIMITS)


async def test_declared_oversized_body_is_refused():
    """A Content-Length above the cap is refused without reading the body."""
    response = httpx.Response(200, content=b"{" + b" " * 5000 + b"}")
    async with client_for(Recorder(response)) as client:
        with pytest.raises(FetchError, match="larger"):
            await fetch_json(client, "https://idp.example.com/jwks", **LIMITS)


async def test_streamed_oversized_body_is_cut_off():
    """A body without Content-Length is cut off as soon as it passes the cap."""
    sent = []

    async def endless():
        yield b'{"x":"'
        for _ in range(1000):
            sent.append(1)
            yield b"a" * 1024

    async with client_for(lambda request: httpx.Response(200, content=endless())) as client:
        with pytest.raises(FetchError, match="larger"):
            await fetch_json(client, "https://idp.example.com/jwks", **LIMITS)
    assert len(sent) < 10


async def test_slow_server_hits_the_deadline(fake, fake_http):
    """A server slower than the timeout yields FetchError instead of hanging."""
    fake.mode = "slow"
    fake.slow_seconds = 30
    with pytest.raises(FetchError, match="timed out"):
        await fetch_json(fake_http, "https://idp.test/jwks", **{**LIMITS, "timeout": 0.05})


async def test_transport_errors_are_fetch_errors():
    """A connection failure is a FetchError naming the URL, not an httpx exception."""

    def refuse(request):
        raise httpx.ConnectError("refused", request=request)

    async with client_for(refuse) as client:
        with pytest.raises(FetchError, match="cannot fetch"):
            await fetch_json(client, "https://idp.example.com/jwks", **LIMITS)
