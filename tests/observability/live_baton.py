"""``baton serve`` in a child process for tests that need the real server: its stderr, its signals.

The fake identity provider runs in the test process over real HTTP (see
:func:`tests.support.live_server.run_asgi`); Baton's configuration is the test
harness's, written as TOML with the issuer set to the child's URL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ops.config_files import free_port, toml_value
from tests.support.fake_issuer import FakeIssuer
from tests.support.harness import base_config
from tests.support.live_server import base_url_of, bind_free_port, run_asgi

REPO = Path(__file__).resolve().parents[2]


@dataclass
class LiveBaton:
    """A running ``baton serve`` child and the fake IdP it trusts."""

    url: str
    idp: FakeIssuer
    process: subprocess.Popen[bytes]
    stderr_path: Path
    key_file: Path

    def logs(self) -> str:
        """Everything the child wrote to stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def terminate(self) -> None:
        """Send SIGTERM (the orchestrator's stop signal)."""
        self.process.send_signal(signal.SIGTERM)


@contextlib.contextmanager
def live_baton(
    tmp_path: Path, *, server: dict[str, Any] | None = None, clients: list[dict[str, Any]] = ()  # type: ignore[assignment]
) -> Iterator[LiveBaton]:
    """Start the fake IdP and ``baton serve`` (JSON logs on stderr) with extra ``clients``; stop both afterwards."""
    idp_sock = bind_free_port()
    idp = FakeIssuer(base_url_of(idp_sock))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    raw = base_config(tmp_path, idp, issuer=url)
    raw["clients"] += list(clients)
    raw["server"] = {"host": "127.0.0.1", "port": port, **(server or {})}
    raw["logging"] = {"format": "json", "level": "info"}
    config_path = tmp_path / "baton.toml"
    config_path.write_text("\n".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in raw.items()) + "\n")
    stderr_path = tmp_path / "stderr.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with run_asgi(idp.app, sock=idp_sock), stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", "serve", "-c", str(config_path)],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr, env=env,
        )
        live = LiveBaton(url, idp, process, stderr_path, Path(raw["signing"]["keys"]))
        try:
            _wait_ready(live)
            yield live
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _wait_ready(live: LiveBaton, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if live.process.poll() is not None:
            raise RuntimeError(f"baton serve exited with {live.process.returncode}:\n{live.logs()}")
        try:
            if httpx.get(live.url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"baton serve did not become ready:\n{live.logs()}")
