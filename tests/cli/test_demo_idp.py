"""The built-in demo identity provider: discovery, JWKS, and the tokens it mints."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from app.config import Config, config_from_dict
from app.demo_idp import TOKEN_LIFETIME, demo_idp_app, demo_key_path

ISSUER = "http://127.0.0.1:8000"
IDP = ISSUER + "/demo-idp"


def _config(tmp_path: Path, demo: bool = True) -> Config:
    return config_from_dict({"issuer": ISSUER, "demo": demo, "signing": {"keys": str(tmp_path / "k" / "signing.json")}})


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return _config(tmp_path)


@pytest.fixture
async def idp(config: Config):
    app = Starlette(routes=[Mount("/demo-idp", app=demo_idp_app(config))])  # mounted as create_app does
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=IDP) as client:
        yield client


async def _verify(client: httpx.AsyncClient, token: str, audience: str = "frontend") -> dict[str, Any]:
    jwks = (await client.get("/jwks")).json()
    key = jwt.PyJWK(jwks["keys"][0])
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    return jwt.decode(token, key, algorithms=["ES256"], audience=audience, issuer=IDP)


async def test_discovery_names_issuer_jwks_and_token_endpoint(idp: httpx.AsyncClient) -> None:
    """The demo IdP publishes OIDC discovery like a real issuer, under Baton's issuer + /demo-idp."""
    doc = (await idp.get("/.well-known/openid-configuration")).json()
    assert doc["issuer"] == IDP
    assert doc["jwks_uri"] == IDP + "/jwks"
    assert doc["token_endpoint"] == IDP + "/token"
    keys = (await idp.get("/jwks")).json()["keys"]
    assert [(k["kty"], k["alg"]) for k in keys] == [("EC", "ES256")]
    assert "d" not in keys[0]


async def test_user_token_claims(idp: httpx.AsyncClient) -> None:
    """A user token carries iss, sub=username, default aud/scope, email, iat, exp=iat+600 and a jti."""
    response = await idp.post("/token", data={"username": "alice", "email": "alice@example.com"})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    claims = await _verify(idp, body["access_token"])
    assert claims["sub"] == "alice"
    assert claims["aud"] == "frontend"
    assert claims["scope"] == "billing:read orders:read profile"
    assert claims["email"] == "alice@example.com"
    assert claims["exp"] - claims["iat"] == TOKEN_LIFETIME == body["expires_in"]
    assert len(claims["jti"]) >= 16
    assert "may_act" not in claims


async def test_user_token_options(idp: httpx.AsyncClient) -> None:
    """audience, scope and may_act are honoured; each token gets a fresh jti."""
    data = {"username": "bob", "audience": "mobile", "scope": "orders:read", "may_act": "svc:checkout"}
    first = await _verify(idp, (await idp.post("/token", data=data)).json()["access_token"], "mobile")
    assert first["scope"] == "orders:read"
    assert first["may_act"] == {"sub": "svc:checkout"}
    second = await _verify(idp, (await idp.post("/token", data=data)).json()["access_token"], "mobile")
    assert first["jti"] != second["jti"]


async def test_service_token(idp: httpx.AsyncClient) -> None:
    """username=svc:<name> mints a service token (sub svc:<name>, client_id <name>, no user scope)."""
    body = (await idp.post("/token", data={"username": "svc:checkout"})).json()
    claims = await _verify(idp, body["access_token"])
    assert claims["sub"] == "svc:checkout"
    assert claims["client_id"] == "checkout"
    assert "scope" not in claims and "email" not in claims


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"email": "a@example.com"}, "username"),
        ({"username": "alice", "password": "x"}, "unsupported parameter"),
        ({"username": "al ice"}, "username"),
        ({"username": "svc:"}, "service name"),
        ({"username": "svc:x", "email": "x@example.com"}, "email"),
        ({"username": "alice", "email": "not-an-email"}, "email"),
        ({"username": "alice", "may_act": "a b"}, "may_act"),
        ({"username": "alice", "audience": ["a", "b"]}, "audience"),
        ({"username": "alice", "scope": "a\\b"}, "scope"),
    ],
)
async def test_bad_requests_are_json_errors(idp: httpx.AsyncClient, data: dict[str, Any], fragment: str) -> None:
    """Anything but a well-formed mint request is a 400 JSON OAuth error; no token is minted."""
    response = await idp.post("/token", data=data)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] in ("invalid_request", "invalid_scope")
    assert fragment in body["error_description"]
    assert "access_token" not in body


async def test_wrong_content_type_and_method(idp: httpx.AsyncClient) -> None:
    """JSON bodies and wrong methods are refused with JSON errors too."""
    response = await idp.post("/token", json={"username": "alice"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    response = await idp.get("/token")
    assert response.status_code == 405
    assert response.json()["error"] == "invalid_request"


def test_key_is_private_and_persistent(config: Config) -> None:
    """The demo key is stored next to the signing keys with mode 0600 and reused across restarts."""
    demo_idp_app(config)
    path = demo_key_path(config)
    assert path.parent == Path(config.signing.keys).parent
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()
    demo_idp_app(config)
    assert path.read_bytes() == before


def test_refuses_outside_demo_mode(tmp_path: Path) -> None:
    """The demo IdP cannot be built unless demo = true."""
    with pytest.raises(RuntimeError, match="demo = true"):
        demo_idp_app(_config(tmp_path, demo=False))
    assert not demo_key_path(_config(tmp_path, demo=False)).exists()


def test_startup_warns_loudly(config: Config) -> None:
    """Building the demo IdP logs a warning that it is not for production."""
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        demo_idp_app(config)
    assert any(e["log_level"] == "warning" and "NOT FOR PRODUCTION" in e["event"] for e in logs)
