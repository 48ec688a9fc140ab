"""``baton serve`` with several workers: a master killed outright (``kill -9``, the OOM killer) takes its workers
with it, instead of leaving them serving its port with nothing to stop them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ops.bench_env import process_tree
from ops.config_files import free_port
from tests.support.processes import alive

from .conftest import baton_command, cli_env, run_baton

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")


def _serving(tmp_path: Path, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    """A ``baton serve`` from a fresh ``baton init`` config with ``workers`` processes, once /healthz answers."""
    assert run_baton("init", str(tmp_path), cwd=tmp_path).returncode == 0
    port = free_port()
    config = tmp_path / "baton.toml"
    text = config.read_text().replace("port = 8000", f"port = {port}", 1).replace("workers = 1", f"workers = {workers}", 1)
    config.write_text(text)
    with (tmp_path / "serve.err").open("wb") as err:
        process = subprocess.Popen(
            baton_command("serve", "--config", str(config)), cwd=tmp_path, env=cli_env(),
            stdout=subprocess.DEVNULL, stderr=err,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            assert process.poll() is None, (tmp_path / "serve.err").read_text()[-2000:]
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    return process, url
            assert time.monotonic() < deadline, (tmp_path / "serve.err").read_text()[-2000:]
            time.sleep(0.2)
    except BaseException:
        _kill_tree(process.pid)
        raise


def _kill_tree(root: int) -> None:
    for pid in process_tree(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _workers_of(master: int) -> list[int]:
    """The master's worker processes (hypercorn's spawned children, not multiprocessing's resource tracker)."""
    found = []
    for pid in process_tree(master):
        with contextlib.suppress(OSError):
            if pid != master and alive(pid) and b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def test_workers_end_when_their_master_is_killed(tmp_path: Path) -> None:
    """SIGKILL of the master: both workers stop within seconds and the port is free again."""
    master, url = _serving(tmp_path, workers=2)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while len(workers) < 2:
            workers = _workers_of(master.pid)
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.2)
        assert len(workers) == 2, workers
        everything = process_tree(master.pid)  # the workers and the resource tracker: none may outlive it
        master.send_signal(signal.SIGKILL)
        master.wait(timeout=10)
        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in everything) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [pid for pid in everything if alive(pid)]
        assert left == [], f"processes {left} outlived their master"
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/healthz", timeout=1)
    finally:
        if master.poll() is None:
            _kill_tree(master.pid)
        for pid in workers:  # orphans, if the test failed: still ours while they run
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def test_a_worker_whose_master_died_before_it_asked_stops_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """The master's pid is in the environment but the parent is already someone else (it was reaped): SIGTERM."""
    import ctypes

    from ops import serving

    class FakeLibc:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def prctl(self, *args: object) -> int:
            return 0

    monkeypatch.setenv(serving.MASTER_ENV, str(os.getpid() + 1))
    monkeypatch.setattr(os, "getppid", lambda: 1)
    monkeypatch.setattr(ctypes, "CDLL", FakeLibc)
    calls: list[tuple] = []
    monkeypatch.setattr(os, "kill", lambda *args: calls.append(args))
    serving.end_with_master()
    assert calls == [(os.getpid(), signal.SIGTERM)]


def test_a_worker_outside_baton_serve_sets_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ops.asgi:app`` under another server (no master pid in the environment) is left to that server."""
    from ops import serving

    monkeypatch.delenv(serving.MASTER_ENV, raising=False)
    calls: list[object] = []
    monkeypatch.setattr(os, "kill", lambda *args: calls.append(args))
    serving.end_with_master()
    assert calls == []
