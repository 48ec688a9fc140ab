"""Rotation under load: an independent resource server (PyJWT, caching PyJWKClient) verifies every token.

Baton runs over real HTTP (hypercorn). The resource server finds ``jwks_uri`` in
Baton's discovery document, caches the key set for the ``max-age`` Baton sends,
and never refetches on an unknown ``kid``: a token signed by a key its cache
does not hold yet counts as a failure. Two full rotate → promote cycles run
while clients exchange tokens continuously.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
from jwt import PyJWKClient

from app.config import config_from_dict
from app.key_lifecycle import promote, rotate
from app.key_schedule import apply_key_change
from app.server import create_app
from eventstore import open_store
from tests.support.fake_issuer import FakeIssuer
from tests.support.harness import SECRETS, USER_SCOPE, base_config
from tests.support.live_server import base_url_of, bind_free_port, run_asgi

PROMOTE_AFTER = 2
CONCURRENCY = 6


class StrictResourceServer:
    """Verifies Baton's tokens with PyJWT; keys only from its cache (refreshed when max-age runs out)."""

    def __init__(self, base_url: str) -> None:
        discovery = httpx.get(f"{base_url}/.well-known/oauth-authorization-server").json()
        jwks = httpx.get(discovery["jwks_uri"])
        self.max_age = int(re.search(r"max-age=(\d+)", jwks.headers["cache-control"])[1])
        self.issuer = discovery["issuer"]
        self.fetches = 0
        server = self

        class CountingClient(PyJWKClient):
            def fetch_data(self) -> Any:
                server.fetches += 1
                return super().fetch_data()

        self.client = CountingClient(discovery["jwks_uri"], cache_jwk_set=True, lifespan=self.max_age)

    def verify(self, token: str) -> str:
        """The token's kid when it verifies; raises otherwise (no refetch on an unknown kid)."""
        kid = jwt.get_unverified_header(token)["kid"]
        key = PyJWKClient.match_kid(self.client.get_signing_keys(), kid)
        if key is None:
            raise LookupError(f"kid {kid} not in the cached key set")
        jwt.decode(token, key.key, algorithms=["ES256"], audience="billing", issuer=self.issuer)
        return kid


async def test_rotation_under_load_has_zero_verification_failures(tmp_path: Path) -> None:
    """Every token issued during two rotations verifies at a caching resource server that obeys Cache-Control."""
    idp = FakeIssuer("https://idp.test")
    sock = bind_free_port()
    base = base_url_of(sock)
    raw = base_config(tmp_path, idp, issuer=base)
    raw["signing"] = {"keys": str(tmp_path / "keys.json"), "promote_after": PROMOTE_AFTER, "reload_seconds": 0.1}
    app = create_app(config_from_dict(raw), http=httpx.AsyncClient(transport=httpx.ASGITransport(app=idp.app)))
    key_events = open_store(f"sqlite:///{tmp_path}/key-events.db")
    await key_events.open()
    subject = idp.mint(idp.claims(sub="alice", scope=USER_SCOPE, exp=int(time.time()) + 3600))
    verified: list[str] = []
    failures: list[str] = []
    stop = asyncio.Event()
    with run_asgi(app, sock=sock) as url:
        rs = await asyncio.to_thread(StrictResourceServer, url)
        assert rs.max_age < PROMOTE_AFTER

        async def client_loop(http: httpx.AsyncClient) -> None:
            form = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": subject,
                    "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
                    "audience": "billing", "scope": "billing:read"}
            while not stop.is_set():
                response = await http.post("/token", data=form, auth=("frontend", SECRETS["frontend"]))
                if response.status_code != 200:
                    failures.append(f"exchange {response.status_code}: {response.text}")
                    continue
                try:
                    verified.append(await asyncio.to_thread(rs.verify, response.json()["access_token"]))
                except Exception as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")

        async def operator() -> None:
            path = tmp_path / "keys.json"
            for _ in range(2):
                await asyncio.sleep(0.5)
                await apply_key_change(path, key_events, lambda k: rotate(k, "ES256", time.time()), time.time())
                await asyncio.sleep(PROMOTE_AFTER + 0.1)
                await apply_key_change(
                    path, key_events, lambda k: promote(k, time.time(), min_age=PROMOTE_AFTER), time.time()
                )
            await asyncio.sleep(1.0)
            stop.set()

        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            await asyncio.gather(operator(), *(client_loop(http) for _ in range(CONCURRENCY)))
    await key_events.close()
    assert failures == []
    assert len(verified) > 50
    assert len(set(verified)) == 3  # tokens from the original key and both promoted keys
    assert rs.fetches < len(verified) / 5  # the resource server really cached
