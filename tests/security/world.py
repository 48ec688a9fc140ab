"""The world the attack catalogue runs in: one Baton, many fake issuers, every outbound fetch counted.

Besides the ordinary issuer (``https://idp.test``) the world holds issuers that
misbehave in one way each (discovery naming another issuer, redirects, junk,
private addresses, symmetric or private keys published …) and an untrusted
issuer whose host is reachable, so a test can prove Baton never fetched from
it. All HTTP Baton makes goes through :class:`CountingRouter`: no request ever
leaves the process, and each host's request count is kept.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from app.config import config_from_dict
from app.server import create_app
from tests.support.fake_issuer import FakeIssuer, new_key
from tests.support.harness import BATON, SECRETS, USER_SCOPE, Harness, _hash, base_config

MAIN = "https://idp.test"
SECOND = "https://idp-b.test"
STRICT = "https://idp-at.test"
UNTRUSTED = "https://evil.test"

#: issuer -> (FakeIssuer mode, what is wrong with it); each is trusted by Baton
BROKEN_ISSUERS: dict[str, str] = {
    "https://mismatch.test": "discovery document names another issuer",
    "https://redirect.test": "discovery and JWKS answer with a redirect to another host",
    "https://junk.test": "discovery and JWKS answer with HTML instead of JSON",
    "https://down.test": "discovery and JWKS answer HTTP 500",
    "https://slow.test": "JWKS answers after the fetch deadline",
    "https://manykeys.test": "JWK set with more keys than Baton accepts",
    "https://huge.test": "JWK set larger than the fetch size cap",
    "https://symmetric.test": "JWK set holds only a symmetric (oct) key",
    "https://privkey.test": "JWK set holds only a private key",
    "https://disco-private.test": "discovery points jwks_uri at a private address",
}
#: issuers configured with a jwks_uri Baton must refuse to fetch
REFUSED_JWKS_URIS: dict[str, str] = {
    "https://private.test": "https://10.0.0.5/jwks",
    "https://linklocal.test": "https://169.254.169.254/latest/meta-data/jwks",
    "https://v6private.test": "https://[fd00::1]/jwks",
    "https://plainhttp.test": "http://plainhttp.test/jwks",
}
PKJWT_CLIENTS = ("pkjwt", "pkjwt2")
FETCH_TIMEOUT = 0.3


class _PointingIssuer(FakeIssuer):
    """A fake issuer whose discovery document advertises a chosen ``jwks_uri``."""

    advertised_jwks_uri = ""

    async def _discovery(self, request: Any) -> Any:  # type: ignore[override]
        self.discovery_fetches += 1
        return self._json({"issuer": self.issuer, "jwks_uri": self.advertised_jwks_uri})


class CountingRouter(httpx.AsyncBaseTransport):
    """Routes requests by host to in-process fake apps and counts them; unknown hosts are unreachable."""

    def __init__(self, apps: dict[str, Any]) -> None:
        self._transports = {host: httpx.ASGITransport(app=app) for host, app in apps.items()}
        self.counts: dict[str, int] = {}

    @property
    def total(self) -> int:
        """Requests attempted so far, to any host."""
        return sum(self.counts.values())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.counts[host] = self.counts.get(host, 0) + 1
        transport = self._transports.get(host)
        if transport is None:
            raise httpx.ConnectError(f"unreachable in tests: {host}", request=request)
        return await transport.handle_async_request(request)


def _host(url: str) -> str:
    return httpx.URL(url).host


def _issuers() -> dict[str, FakeIssuer]:
    issuers: dict[str, FakeIssuer] = {
        MAIN: FakeIssuer(MAIN, algs=("RS256", "ES256")),
        SECOND: FakeIssuer(SECOND),
        STRICT: FakeIssuer(STRICT),
        UNTRUSTED: FakeIssuer(UNTRUSTED),
    }
    for issuer in BROKEN_ISSUERS:
        issuers[issuer] = _PointingIssuer(issuer) if issuer == "https://disco-private.test" else FakeIssuer(issuer)
    for issuer in REFUSED_JWKS_URIS:
        issuers[issuer] = FakeIssuer(issuer)
    issuers["https://mismatch.test"].discovery_issuer = UNTRUSTED
    issuers["https://redirect.test"].mode = "redirect"
    issuers["https://redirect.test"].redirect_to = UNTRUSTED + "/jwks"
    issuers["https://junk.test"].mode = "junk"
    issuers["https://down.test"].mode = "down"
    issuers["https://slow.test"].mode = "slow"
    issuers["https://slow.test"].slow_seconds = FETCH_TIMEOUT * 4
    junk_key = {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}
    issuers["https://manykeys.test"].extra_jwks = [dict(junk_key, kid=f"k{i}") for i in range(80)]
    issuers["https://huge.test"].extra_jwks = [{"kty": "oct", "kid": "pad", "k": "A" * 300_000}]
    symmetric = issuers["https://symmetric.test"]
    symmetric.public_jwks = lambda: {"keys": [{"kty": "oct", "kid": symmetric.kid, "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]}  # type: ignore[method-assign]
    private = issuers["https://privkey.test"]
    private.public_jwks = lambda: {"keys": [dict(private.keys[private.kid].as_dict(private=True), kid=private.kid)]}  # type: ignore[method-assign]
    pointing = issuers["https://disco-private.test"]
    assert isinstance(pointing, _PointingIssuer)
    pointing.advertised_jwks_uri = "https://10.20.30.40/jwks"
    return issuers


def _trusted(issuers: dict[str, FakeIssuer]) -> list[dict[str, Any]]:
    trusted: list[dict[str, Any]] = [
        {"issuer": MAIN, "algorithms": ["ES256", "RS256"], "audiences": ["baton"]},
        {"issuer": SECOND, "algorithms": ["ES256"], "audiences": ["baton"]},
        {"issuer": STRICT, "algorithms": ["ES256"], "audiences": ["baton"], "token_types": ["access_token"],
         "require_typ": True},
    ]
    for issuer in BROKEN_ISSUERS:
        trusted.append({"issuer": issuer, "algorithms": ["ES256"], "audiences": ["baton"]})
    for issuer, uri in REFUSED_JWKS_URIS.items():
        trusted.append({"issuer": issuer, "algorithms": ["ES256"], "audiences": ["baton"], "jwks_uri": uri})
    return trusted


def world_config(tmp_path: Path, issuers: dict[str, FakeIssuer], client_keys: dict[str, Any]) -> dict[str, Any]:
    """The catalogue's configuration: the HTTP suite's, plus issuers, clients and audiences attacks need."""
    raw = base_config(tmp_path, issuers[MAIN], trusted_issuers=_trusted(issuers))
    raw["cache"] = {"fetch_timeout": FETCH_TIMEOUT, "unknown_kid_interval": 30.0}
    raw["audiences"].append({"audience": "shallow", "scopes": ["orders:read"], "max_depth": 1})
    for client in raw["clients"]:
        if client["client_id"] == "billing":
            client["audiences"] = ["orders", "shallow"]
    extra = [
        {"client_id": "restricted", "secret_hash": _hash(SECRETS["frontend"]), "audiences": ["orders"],
         "scopes": ["orders:read"], "impersonation": True, "subject_issuers": [SECOND]},
        {"client_id": "delegator", "secret_hash": _hash(SECRETS["frontend"]), "audiences": ["orders"],
         "scopes": ["orders:read"], "delegation": True, "impersonation": False},
        {"client_id": "imponly", "secret_hash": _hash(SECRETS["frontend"]), "audiences": ["orders"],
         "scopes": ["orders:read"], "delegation": False, "impersonation": True},
        {"client_id": "ledger", "secret_hash": _hash(SECRETS["frontend"]), "audiences": ["orders"],
         "scopes": ["orders:read"], "impersonation": True},
        {"client_id": "farkeys", "auth_method": "private_key_jwt", "jwks_uri": "https://10.9.9.9/jwks",
         "audiences": ["orders"], "scopes": ["orders:read"], "impersonation": True},
    ]
    for client_id in PKJWT_CLIENTS:
        public = dict(client_keys[client_id].as_dict(private=False), kid=client_keys[client_id].kid)
        extra.append({"client_id": client_id, "auth_method": "private_key_jwt", "jwks": {"keys": [public]},
                      "audiences": ["orders"], "scopes": ["orders:read"], "impersonation": True})
    raw["clients"].extend(extra)
    return raw


class World(Harness):
    """A started Baton over every fake issuer of the catalogue, with client keys and fetch counters."""

    def __init__(self, tmp_path: Path, store_url: str | None = None) -> None:
        self.issuers = _issuers()
        self.client_keys = {c: new_key("ES256", f"{c}-key") for c in PKJWT_CLIENTS}
        raw = world_config(tmp_path, self.issuers, self.client_keys)
        if store_url is not None:
            raw["store"] = {"url": store_url}
        config = config_from_dict(raw)
        self.config = config
        self.idp = self.issuers[MAIN]
        self.router = CountingRouter({_host(i): fake.app for i, fake in self.issuers.items()})
        self.idp_http = httpx.AsyncClient(transport=self.router)
        self.app = create_app(config, http=self.idp_http)
        self.runtime = self.app.state.runtime
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BATON)

    def token(self, issuer: str = MAIN, /, **claims: Any) -> str:
        """A well-formed user token from ``issuer``; ``claims`` override (None removes)."""
        return self.issuers[issuer].mint(self.claims(issuer, **claims))

    def claims(self, issuer: str = MAIN, **claims: Any) -> dict[str, Any]:
        """Plausible user-token claims from ``issuer``."""
        return self.issuers[issuer].claims(time.time(), **{"scope": USER_SCOPE, **claims})

    async def issue(self, subject: str, client: str = "frontend", **params: Any) -> str:
        """Run a successful exchange (a setup step) and return the issued token."""
        response = await self.exchange(subject, client=client, **params)
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    async def head(self) -> int:
        """The event log's current head position."""
        position, _ = await self.runtime.store.head()
        return position

    async def events_after(self, position: int) -> list[Any]:
        """Recorded events after ``position``, as (type, event) records."""
        return await self.runtime.store.read_all(position + 1, 100_000)
