"""Graceful shutdown of a real ``baton serve``: readiness drops first, in-flight requests finish."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from app.types import GRANT_TOKEN_EXCHANGE, TT_ACCESS_TOKEN
from tests.observability.live_baton import live_baton
from tests.support.harness import SECRETS, USER_SCOPE


def test_sigterm_drops_readiness_then_finishes_in_flight_requests(tmp_path: Path) -> None:
    """After SIGTERM /readyz answers 503 (draining) while a slow exchange still completes with 200; exit code 0."""
    with live_baton(tmp_path, server={"drain_seconds": 1.0, "graceful_timeout": 5.0}) as baton:
        idp = baton.idp
        idp.mode, idp.slow_seconds = "slow", 0.8  # discovery + JWKS: the exchange takes ~1.6 s
        subject = idp.mint(idp.claims(sub="alice", scope=USER_SCOPE))
        result: dict[str, httpx.Response] = {}

        def slow_exchange() -> None:
            result["response"] = httpx.post(
                baton.url + "/token",
                data={"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": subject,
                      "subject_token_type": TT_ACCESS_TOKEN, "audience": "billing", "scope": "billing:read"},
                auth=("frontend", SECRETS["frontend"]), timeout=20,
            )

        worker = threading.Thread(target=slow_exchange)
        worker.start()
        time.sleep(0.3)
        assert httpx.get(baton.url + "/readyz").status_code == 200
        baton.terminate()
        deadline = time.monotonic() + 1.0
        readiness = None
        while time.monotonic() < deadline:
            readiness = httpx.get(baton.url + "/readyz")
            if readiness.status_code == 503:
                break
            time.sleep(0.05)
        assert readiness is not None and readiness.status_code == 503
        assert readiness.json()["draining"] is True
        assert httpx.get(baton.url + "/healthz").status_code == 200  # alive while draining
        worker.join(timeout=15)
        assert result["response"].status_code == 200, result["response"].text
        assert baton.process.wait(timeout=15) == 0
