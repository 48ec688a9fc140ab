"""A ``baton bench`` stopped by SIGTERM (from a supervisor or ``kill``) leaves nothing behind:
no Baton server still running, no throwaway database on the PostgreSQL server. Killed outright
(SIGKILL, the OOM killer), it still leaves no server running: the kernel stops them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ops.bench_env import process_tree
from tests.conftest import PG_URL
from tests.support.processes import alive


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


def _started_from(workdir: Path) -> list[int]:
    """Processes whose command line or environment names ``workdir`` (Baton's ``serve`` and its workers)."""
    mark = str(workdir).encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if mark in Path(f"/proc/{entry}/cmdline").read_bytes() or mark in Path(f"/proc/{entry}/environ").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return [pid for pid in found if alive(pid)]


def _left_running(workdir: Path) -> list[int]:
    """The bench's servers still running, after a moment to exit; killed, so a failure leaves no orphans."""
    time.sleep(0.5)
    running = _started_from(workdir)
    for pid in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return running


def _terminate_once_serving(argv: list[str], cwd: Path, how: signal.Signals = signal.SIGTERM) -> tuple[int, list[int]]:
    """Start the bench, send it ``how`` once it starts its Baton, and return its exit code and the processes it had."""
    log = cwd / "bench.err"
    with log.open("w") as err:
        bench = subprocess.Popen([sys.executable, "-m", "ops.cli", "bench", *argv], cwd=cwd, stdout=subprocess.DEVNULL,
                                 stderr=err)
    try:
        deadline = time.monotonic() + 90
        while "baton serve on" not in log.read_text():
            assert bench.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        tree = process_tree(bench.pid)
        bench.send_signal(how)
        code = bench.wait(timeout=60)
    finally:
        if bench.poll() is None:
            bench.kill()
    return code, tree


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
def test_a_terminated_bench_stops_the_servers_it_started(tmp_path: Path) -> None:
    # SIGTERM comes while the bench waits for its Baton to be ready (the log line comes first), with the
    # ceiling server (up for the whole run) measured once already; the kept work directory is not deleted
    # under those servers
    work = tmp_path / "work"
    code, tree = _terminate_once_serving(["--quick", "--duration", "1", "--workdir", str(work)], tmp_path)
    assert len(tree) > 2  # the bench had started the ceiling and Baton
    assert _left_running(work) == []
    assert code == 128 + signal.SIGTERM


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
def test_a_killed_bench_leaves_no_server_running(tmp_path: Path) -> None:
    # no handler of the bench runs on SIGKILL: the servers' masters end by the kernel's parent-death
    # signal, and their workers with them (the ceiling's as well as Baton's)
    work = tmp_path / "work"
    code, tree = _terminate_once_serving(["--quick", "--duration", "1", "--workdir", str(work)], tmp_path,
                                         signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert len(tree) > 4  # the ceiling and Baton, each a master and its workers
    deadline = time.monotonic() + 20
    while _started_from(work) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _left_running(work) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_forked_server_is_killed_by_sigterm_even_before_it_execs(tmp_path: Path) -> None:
    """Between fork and exec the child runs the bench's Python handlers: the set-up puts SIGTERM back to its default,
    so the parent's death (or a stop request) kills it there instead of being handled and lost."""
    code = (
        "import os, signal, sys\n"
        "from ops.serving import ending_with_this_process\n"
        "signal.signal(signal.SIGTERM, lambda *args: None)\n"  # as the bench's deferring handler
        "setup = ending_with_this_process()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    setup()\n"
        "    os._exit(0 if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL else 1)\n"
        "sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], timeout=30)
    assert done.returncode == 0


def test_a_stop_request_while_a_server_is_forked_still_stops_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM arriving inside ``Popen`` (after the fork) is acted on once the bench holds the child: it is stopped."""
    from ops import bench_env
    from ops.cli import stopped_cleanly_on
    from ops.config_files import free_port

    real_popen = subprocess.Popen

    def signalled_while_forking(*args, **kwargs):
        child = real_popen(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # delivered before Popen has returned the child
        time.sleep(0.05)
        return child

    monkeypatch.setattr(bench_env.subprocess, "Popen", signalled_while_forking)
    port = free_port()
    server = bench_env.ServerProcess([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                                     f"http://127.0.0.1:{port}", tmp_path / "server.log", "/")
    with pytest.raises(SystemExit), stopped_cleanly_on(signal.SIGTERM):
        server.start()
    assert server.proc is not None  # the child was known when the stop came
    assert server.proc.poll() is not None  # and it was stopped


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
def test_a_terminated_bench_drops_its_database(tmp_path: Path, pg_dsn: str, redis_url: str) -> None:
    before = _bench_databases()
    work = tmp_path / "work"
    code, _ = _terminate_once_serving(
        ["--quick", "--duration", "5", "--no-ceiling", "--no-embedded", "--scenarios", "impersonation",
         "--pg", PG_URL, "--redis", redis_url, "--workdir", str(work)], tmp_path,
    )
    assert _left_running(work) == []
    assert code == 128 + signal.SIGTERM
    assert not _bench_databases() - before
