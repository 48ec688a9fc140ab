"""A Baton instance for tests: config, fake issuer, ASGI client, and the event log to inspect."""

from __future__ import annotations

import base64
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx

from app.config import Config, config_from_dict
from app.secrets import hash_secret
from app.server import create_app
from app.types import GRANT_TOKEN_EXCHANGE, TT_ACCESS_TOKEN
from tests.support.fake_issuer import FakeIssuer

BATON = "https://baton.test"
SECRETS = {
    "frontend": "frontend-secret",
    "poster": "poster-secret",
    "billing": "billing-secret",
    "orders": "orders-secret",
    "noexchange": "noexchange-secret",
    "auditor": "auditor-secret",
}
USER_SCOPE = "billing:read billing:write orders:read ledger:read profile"


@lru_cache(maxsize=None)
def _hash(secret: str) -> str:
    return hash_secret(secret, log_n=10)  # cheap KDF cost for tests; production uses 2^15


def base_config(tmp_path: Path, idp: FakeIssuer, **overrides: Any) -> dict[str, Any]:
    """The raw test configuration (mutate it before :func:`config_from_dict`)."""
    raw: dict[str, Any] = {
        "issuer": BATON,
        "store": {"url": f"sqlite:///{tmp_path}/events.db"},
        "signing": {"keys": str(tmp_path / "keys.json")},
        "tokens": {"ttl": 300, "max_depth": 3},
        "trusted_issuers": [{"issuer": idp.issuer, "algorithms": ["ES256", "RS256"], "audiences": ["baton"]}],
        "audiences": [
            {
                "audience": "billing",
                "scopes": ["billing:read", "billing:write"],
                "resources": ["https://billing.example.com/api"],
                "ttl": 120,
                "claims": {"copy": ["email"], "rename": {"department": "dept"}, "set": {"tenant": "eu"}},
            },
            {"audience": "orders", "scopes": ["orders:read", "orders:write"], "resources": ["https://orders.example.com"]},
            {"audience": "ledger", "scopes": ["ledger:read"]},
        ],
        "clients": [
            {
                "client_id": "frontend",
                "secret_hash": _hash(SECRETS["frontend"]),
                "audiences": ["billing", "orders"],
                "scopes": ["billing:read", "billing:write", "orders:read"],
                "delegation": True,
                "impersonation": True,
            },
            {
                "client_id": "poster",
                "auth_method": "client_secret_post",
                "secret_hash": _hash(SECRETS["poster"]),
                "audiences": ["orders"],
                "scopes": ["orders:read"],
                "delegation": True,
                "impersonation": False,
                "actor": "client",
            },
            {
                "client_id": "billing",
                "secret_hash": _hash(SECRETS["billing"]),
                "audiences": ["orders"],
                "scopes": ["orders:read"],
                "delegation": True,
                "impersonation": True,
            },
            {
                "client_id": "orders",
                "secret_hash": _hash(SECRETS["orders"]),
                "audiences": ["ledger"],
                "scopes": ["ledger:read", "orders:read"],
                "delegation": True,
                "impersonation": True,
            },
            {
                "client_id": "auditor",
                "secret_hash": _hash(SECRETS["auditor"]),
                "audiences": [],
                "delegation": False,
                "audit": True,
            },
            {
                "client_id": "noexchange",
                "secret_hash": _hash(SECRETS["noexchange"]),
                "audiences": [],
                "delegation": False,
            },
        ],
    }
    raw.update(overrides)
    return raw


def decode_claims(token: str) -> dict[str, Any]:
    """The payload of a compact JWS, without verification (assertions on what Baton issued)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def decode_header(token: str) -> dict[str, Any]:
    """The protected header of a compact JWS."""
    header = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))


class Harness:
    """A started Baton app behind an ``httpx.AsyncClient``, with its fake issuer."""

    def __init__(self, config: Config, idp: FakeIssuer) -> None:
        self.config = config
        self.idp = idp
        self.idp_http = httpx.AsyncClient(transport=httpx.ASGITransport(app=idp.app))
        self.app = create_app(config, http=self.idp_http)
        self.runtime = self.app.state.runtime
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BATON)

    async def __aenter__(self) -> Harness:
        await self.runtime.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()
        await self.runtime.stop()

    def user_token(self, sub: str = "alice", **claims: Any) -> str:
        """A user access token from the fake IdP, audience Baton, with the standard user scopes."""
        return self.idp.mint(self.idp.claims(sub=sub, scope=USER_SCOPE, **claims))

    def service_token(self, sub: str, **claims: Any) -> str:
        """A service's own token from the fake IdP (an actor token)."""
        return self.idp.mint(self.idp.claims(sub=sub, **claims))

    async def exchange(
        self,
        subject_token: str | None,
        /,
        *,
        client: str = "frontend",
        auth: str | None = None,
        headers: dict[str, str] | None = None,
        **params: Any,
    ) -> httpx.Response:
        """POST /token with a token-exchange grant; ``params`` add or (with None) drop form fields."""
        form: dict[str, Any] = {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": subject_token,
                                "subject_token_type": TT_ACCESS_TOKEN}
        form.update(params)
        form = {k: v for k, v in form.items() if v is not None}
        method = auth or next(c.auth_method for c in self.config.clients if c.client_id == client)
        kwargs: dict[str, Any] = {"headers": headers or {}}
        if method == "client_secret_basic":
            kwargs["auth"] = (client, SECRETS[client])
        elif method == "client_secret_post":
            form.update(client_id=client, client_secret=SECRETS[client])
        return await self.http.post("/token", data=form, **kwargs)

    async def post(self, path: str, form: dict[str, Any], client: str = "frontend", **kwargs: Any) -> httpx.Response:
        """POST a form with the client's Basic credentials."""
        return await self.http.post(path, data=form, auth=(client, SECRETS[client]), **kwargs)

    async def events(self, event_type: str | None = None) -> list[Any]:
        """Every event in the log (optionally of one type), decoded."""
        records = await self.runtime.store.read_all(1, 100_000)
        return [r.event for r in records if event_type is None or r.event_type == event_type]


def make_harness(tmp_path: Path, idp: FakeIssuer | None = None, **overrides: Any) -> Harness:
    """A harness over a fresh SQLite store in ``tmp_path``."""
    idp = idp or FakeIssuer("https://idp.test")
    return Harness(config_from_dict(base_config(tmp_path, idp, **overrides)), idp)
