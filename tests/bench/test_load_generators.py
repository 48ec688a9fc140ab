"""Both load generators count a response with the right status but the wrong body as an error.

An introspection of an expired token answers 200 ``{"active":false}``: counted by
status alone, a run whose tokens had expired looked like a fast, faultless one.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ops.bench_load import Workload, run_load, wrk_available

GENERATORS = [
    "builtin",
    pytest.param("wrk", marks=pytest.mark.skipif(not wrk_available(), reason="wrk is optional and not installed")),
]


@pytest.fixture
def half_inactive() -> Iterator[str]:
    """A keep-alive HTTP/1.1 server answering every POST with 200, alternately active and inactive."""
    answers = itertools.cycle([b'{"active":true,"sub":"u"}', b'{"active":false}'])
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                body = next(answers)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("generator", GENERATORS)
def test_a_200_without_the_expected_text_is_an_error(half_inactive: str, generator: str) -> None:
    """About half the answers lack ``"active":true``: they are errors, listed as wrong_body, and not in the rate."""
    work = Workload("/introspect", {}, ["token=a", "token=b"], expected_body='"active":true')
    result = run_load(half_inactive, work, connections=1, duration=1.0, generator=generator)
    good, wrong = result.statuses.get("200", 0), result.statuses.get("wrong_body", 0)
    assert good > 0 and wrong > 0
    assert abs(good - wrong) <= 1  # one connection: the answers alternate
    assert result.errors == wrong
    assert result.rate == pytest.approx(good / result.duration)


@pytest.mark.parametrize("generator", GENERATORS)
def test_without_an_expected_text_the_status_decides(half_inactive: str, generator: str) -> None:
    """A workload that names no text counts every 200 as a success."""
    result = run_load(half_inactive, Workload("/x", {}, ["a=1"]), connections=2, duration=1.0, generator=generator)
    assert result.errors == 0 and "wrong_body" not in result.statuses
    assert result.statuses["200"] == result.requests > 0
