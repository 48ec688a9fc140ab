"""A representative run of a real ``baton serve``: one JSON log line per request, and no secret in any line.

Exchanges (basic, post, private_key_jwt), denials, client-authentication
failures (wrong secret, replayed assertion), introspection (JSON and JWT),
revocation. Afterwards every token, secret, assertion and private key that
took part is searched for in the captured stderr, whole and by JWS segment.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import httpx
from joserfc import jws
from joserfc.jwk import ECKey

from app.keys import read_key_file
from app.types import GRANT_TOKEN_EXCHANGE, TT_ACCESS_TOKEN
from tests.observability.live_baton import live_baton
from tests.support.harness import SECRETS, USER_SCOPE

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}")


def _assertion(key: ECKey, client_id: str, audience: str) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "jti": uuid.uuid4().hex, "iat": now, "exp": now + 60}
    return jws.serialize_compact({"alg": "ES256", "kid": key.kid}, json.dumps(claims), key)


def test_no_token_secret_or_assertion_reaches_the_logs(tmp_path: Path) -> None:
    """Every request is logged once with id, client, grant, outcome and latency; nothing sensitive is."""
    client_key = ECKey.generate_key("P-256", private=True)
    client_key.ensure_kid()
    public = {**client_key.as_dict(private=False), "kid": client_key.kid, "alg": "ES256", "use": "sig"}
    extra_client = {"client_id": "pkjwt", "auth_method": "private_key_jwt", "jwks": {"keys": [public]},
                    "audiences": ["orders"], "scopes": ["orders:read"], "delegation": True, "impersonation": True}
    sensitive: list[str] = list(SECRETS.values()) + [str(client_key.as_dict(private=True)["d"])]
    with live_baton(tmp_path, clients=[extra_client]) as baton:
        idp = baton.idp
        token_url = baton.url + "/token"
        with httpx.Client(base_url=baton.url, timeout=10) as http:
            subject = idp.mint(idp.claims(sub="alice", scope=USER_SCOPE))
            actor = idp.mint(idp.claims(sub="svc-frontend"))
            sensitive += [subject, actor]
            form = {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": subject, "subject_token_type": TT_ACCESS_TOKEN}
            ok = http.post("/token", data={**form, "audience": "billing", "scope": "billing:read"},
                           auth=("frontend", SECRETS["frontend"]), headers={"X-Request-ID": "req-exchange-1"})
            assert ok.status_code == 200 and ok.headers["x-request-id"] == "req-exchange-1"
            issued = ok.json()["access_token"]
            sensitive.append(issued)
            denied = http.post("/token", data={**form, "audience": "ledger"}, auth=("frontend", SECRETS["frontend"]))
            assert denied.status_code == 400
            wrong = http.post("/token", data=form, auth=("frontend", SECRETS["frontend"] + "x"))
            assert wrong.status_code == 401
            junk_grant = http.post("/token", data={**form, "grant_type": subject}, auth=("frontend", SECRETS["frontend"]))
            assert junk_grant.status_code == 400
            posted = http.post("/token", data={**form, "audience": "orders", "scope": "orders:read",
                                               "client_id": "poster", "client_secret": SECRETS["poster"]})
            assert posted.status_code == 200, posted.text
            sensitive.append(posted.json()["access_token"])
            with_actor = http.post("/token", data={**form, "audience": "orders", "actor_token": actor,
                                                   "actor_token_type": TT_ACCESS_TOKEN},
                                   auth=("frontend", SECRETS["frontend"]))
            sensitive.append(with_actor.json().get("access_token", ""))
            assertion = _assertion(client_key, "pkjwt", token_url)
            sensitive.append(assertion)
            pk_form = {**form, "audience": "orders", "scope": "orders:read", "client_assertion": assertion,
                       "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}
            assert http.post("/token", data=pk_form).status_code == 200
            assert http.post("/token", data=pk_form).status_code == 401  # replayed assertion
            introspected = http.post("/introspect", data={"token": issued}, auth=("frontend", SECRETS["frontend"]))
            assert introspected.json()["active"] is True
            as_jwt = http.post("/introspect", data={"token": issued}, auth=("frontend", SECRETS["frontend"]),
                               headers={"Accept": "application/token-introspection+jwt"})
            sensitive.append(as_jwt.text)
            assert http.post("/revoke", data={"token": issued}, auth=("frontend", SECRETS["frontend"])).status_code == 200
            assert http.post("/introspect", data={"token": issued},
                             auth=("frontend", SECRETS["frontend"])).json() == {"active": False}
        baton.terminate()
        baton.process.wait(timeout=15)
        logs = baton.logs()
        sensitive += [str(k["d"]) for k in read_key_file(baton.key_file) if "d" in k]

    requests = [json.loads(line) for line in logs.splitlines() if line.startswith("{") and '"request"' in line]
    requests = [r for r in requests if r.get("event") == "request" and r.get("path") != "/readyz"]
    assert len(requests) == 12
    for entry in requests:
        assert {"request_id", "client_id", "grant", "outcome", "latency_ms", "status"} <= set(entry)
    first = next(r for r in requests if r["request_id"] == "req-exchange-1")
    assert (first["client_id"], first["grant"], first["outcome"]) == ("frontend", "token-exchange", "ok")
    assert {r["grant"] for r in requests if r["path"] == "/token"} == {"token-exchange", "other"}
    for value in sensitive:
        pieces = [value] + [p for p in value.split(".") if len(p) >= 16]
        for piece in pieces:
            assert piece not in logs, f"sensitive material in logs: {piece[:12]}…"
    assert not _JWT.search(logs)
