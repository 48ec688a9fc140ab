"""Serve an ASGI app over real HTTP on 127.0.0.1 for tests (hypercorn, background thread).

``with run_asgi(app) as base_url: ...`` binds a free port (the socket is opened
here and handed to hypercorn, so no other process can take the port in between),
runs hypercorn on its own event loop in a daemon thread, waits until it answers,
and on exit asks it to shut down and joins the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
from hypercorn.asyncio import serve
from hypercorn.config import Config


def _wait_until_serving(base_url: str, thread: threading.Thread, failure: list[BaseException], deadline: float) -> None:
    while time.monotonic() < deadline:
        if failure:
            raise RuntimeError(f"server failed to start: {failure[0]!r}")
        if not thread.is_alive():
            raise RuntimeError("server thread exited during start-up")
        try:
            httpx.get(base_url + "/", timeout=0.5)
            return
        except httpx.TransportError:
            time.sleep(0.02)
    raise RuntimeError(f"server at {base_url} did not answer in time")


def bind_free_port() -> socket.socket:
    """A listening socket on a free 127.0.0.1 port (pass it to :func:`run_asgi` to know the URL first)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def base_url_of(sock: socket.socket) -> str:
    """``http://127.0.0.1:<port>`` of a socket from :func:`bind_free_port`."""
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextlib.contextmanager
def run_asgi(
    app: Any, *, startup_timeout: float = 10.0, graceful_timeout: float = 2.0, sock: socket.socket | None = None
) -> Iterator[str]:
    """Run ``app`` on ``http://127.0.0.1:<free port>`` (or on ``sock``) for the block; yield the base URL."""
    sock = sock or bind_free_port()
    port = sock.getsockname()[1]
    config = Config()
    # hypercorn closes the descriptor it is given: hand it a duplicate and keep ours to close
    config.bind = [f"fd://{os.dup(sock.fileno())}"]
    config.graceful_timeout = graceful_timeout
    config.accesslog = None
    config.errorlog = None
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    def runner() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve(app, config, shutdown_trigger=stop.wait))
        except BaseException as exc:  # surfaced to the test thread
            failure.append(exc)
        finally:
            # cancel what the server left behind (e.g. its shutdown-trigger waiter) before closing the loop
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    thread = threading.Thread(target=runner, name=f"asgi-{port}", daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(base_url, thread, failure, time.monotonic() + startup_timeout)
        yield base_url
    finally:
        if thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=graceful_timeout + 5)
        sock.close()
