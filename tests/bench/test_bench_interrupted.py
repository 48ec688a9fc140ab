"""A ``baton bench`` stopped by SIGTERM (from a supervisor or ``kill``) leaves nothing behind:
no Baton server still running, no throwaway database on the PostgreSQL server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ops.bench_env import process_tree
from tests.conftest import PG_URL


def _bench_databases() -> set[str]:
    import asyncio

    import asyncpg

    async def names() -> set[str]:
        conn = await asyncpg.connect(PG_URL, timeout=5)
        try:
            return {r[0] for r in await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'baton_bench_%'")}
        finally:
            await conn.close()

    return asyncio.run(names())


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _left_running(tree: dict[int, bytes]) -> list[int]:
    """The processes of ``tree`` still running, after a moment to exit; killed, so a failure leaves no orphans.

    A pid counts only while it runs the same command line: one reused by another process is not ours.
    """
    time.sleep(0.5)
    alive = [pid for pid, cmdline in tree.items() if _alive(pid) and _cmdline(pid) == cmdline]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    return alive


def _terminate_once_serving(argv: list[str], cwd: Path) -> tuple[int, dict[int, bytes]]:
    """Start the bench, SIGTERM it once its Baton serves, and return its exit code and the processes it had."""
    log = cwd / "bench.err"
    with log.open("w") as err:
        bench = subprocess.Popen([sys.executable, "-m", "ops.cli", "bench", *argv], cwd=cwd, stdout=subprocess.DEVNULL,
                                 stderr=err)
    try:
        deadline = time.monotonic() + 90
        while "baton serve on" not in log.read_text():
            assert bench.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        tree = {pid: _cmdline(pid) for pid in process_tree(bench.pid)}
        bench.send_signal(signal.SIGTERM)
        code = bench.wait(timeout=60)
    finally:
        if bench.poll() is None:
            bench.kill()
    return code, tree


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
def test_a_terminated_bench_stops_the_servers_it_started(tmp_path: Path) -> None:
    # SIGTERM comes while the bench waits for its Baton to be ready (the log line comes first), and the
    # kept work directory is not deleted under that server
    code, tree = _terminate_once_serving(
        ["--quick", "--duration", "5", "--no-ceiling", "--workdir", str(tmp_path / "work")], tmp_path
    )
    assert len(tree) > 1  # the bench had started Baton (and its workers)
    assert _left_running(tree) == []
    assert code == 128 + signal.SIGTERM


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
def test_a_terminated_bench_drops_its_database(tmp_path: Path, pg_dsn: str, redis_url: str) -> None:
    before = _bench_databases()
    code, tree = _terminate_once_serving(
        ["--quick", "--duration", "5", "--no-ceiling", "--no-embedded", "--scenarios", "impersonation",
         "--pg", PG_URL, "--redis", redis_url], tmp_path,
    )
    assert _left_running(tree) == []
    assert code == 128 + signal.SIGTERM
    assert not _bench_databases() - before
