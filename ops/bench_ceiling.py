"""The ceiling ``baton bench`` compares Baton against: the least any exchange endpoint must do.

A bare Starlette app under the same hypercorn settings as Baton: ``POST /token``
parses the same urlencoded form, verifies the same ES256 subject token against
the issuer's key (fetched once at start-up over HTTP, as Baton does), signs the
same shape of claims with an ES256 key, and answers the same JSON body. No
client authentication, policy, rate limit, event, log line or metric. Whatever
Baton achieves as a fraction of this is what its security and durability cost.

Run as ``python -m ops.bench_ceiling --config FILE`` (Baton's own config file:
its ``[server]`` settings and trusted issuer are used).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from urllib.parse import parse_qsl

import httpx
import msgspec
from joserfc import jws
from joserfc.jwk import ECKey, KeySet
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ops.serving import MASTER_ENV, end_with_master

CONFIG_ENV = "BATON_BENCH_CEILING_CONFIG"
_json = msgspec.json.Encoder()


def build_app(issuer_url: str, jwks: dict, baton_issuer: str) -> Starlette:
    """The ceiling app for tokens of ``issuer_url`` (verified with ``jwks``)."""
    verify_keys = KeySet.import_key_set(jwks)
    signing_key = ECKey.generate_key("P-256", private=True)
    header = {"alg": "ES256", "typ": "at+jwt", "kid": signing_key.thumbprint()}

    async def token(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True))
        try:
            obj = jws.deserialize_compact(form["subject_token"], verify_keys, algorithms=["ES256"])
            subject = msgspec.json.decode(obj.payload)
        except Exception:
            return Response(b'{"error":"invalid_request"}', 400, media_type="application/json")
        now = int(time.time())
        claims = {"iss": baton_issuer, "sub": subject["sub"], "aud": form.get("audience", ""), "exp": now + 300,
                  "iat": now, "nbf": now, "jti": secrets.token_urlsafe(18), "client_id": "imp",
                  "scope": subject.get("scope", "")}
        signed = jws.serialize_compact(header, _json.encode(claims), signing_key, algorithms=["ES256"])
        body = {"access_token": signed, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "token_type": "Bearer", "expires_in": 300, "scope": claims["scope"]}
        return Response(_json.encode(body), 200, {"Cache-Control": "no-store"}, "application/json")

    async def ready(request: Request) -> Response:
        return Response(b"{}", 200, media_type="application/json")

    return Starlette(routes=[Route("/token", token, methods=["POST"]), Route("/readyz", ready)])


def _app_from_env() -> Starlette:
    from app.config import load_config

    config = load_config(os.environ[CONFIG_ENV])
    issuer = config.trusted_issuers[0].issuer
    jwks = httpx.get(issuer + "/jwks", timeout=5).json()
    return build_app(issuer, jwks, config.issuer)


def _worker_app() -> Starlette | None:
    """The app of a hypercorn worker process (it inherits the environment), which ends with its master."""
    if CONFIG_ENV not in os.environ:
        return None
    end_with_master()
    return _app_from_env()


#: ``ops.bench_ceiling:app`` for hypercorn worker processes
app: Starlette | None = _worker_app()


def main(argv: list[str] | None = None) -> int:
    """Serve the ceiling app with the ``[server]`` settings of a Baton config file."""
    from hypercorn.run import run

    from app.config import load_config
    from ops.serving import hypercorn_config

    parser = argparse.ArgumentParser(prog="python -m ops.bench_ceiling")
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    config = load_config(args.config)
    os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    os.environ[MASTER_ENV] = str(os.getpid())  # its workers end with it, as ``baton serve``'s do
    global app
    app = _app_from_env()
    hc = hypercorn_config(config.server)
    hc.application_path = "ops.bench_ceiling:app"
    if config.server.workers == 1:
        hc.workers = 0  # serve in this process, as ``baton serve`` does with one worker
    return run(hc)


if __name__ == "__main__":
    sys.exit(main())
