"""Running Baton under hypercorn, with the settings of ``[server]``.

One worker: the app is built here and served in this process. Several workers:
hypercorn spawns processes that each import ``ops.asgi:app``, which rebuilds
the app from the file named by ``BATON_CONFIG``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from hypercorn.config import Config as HypercornConfig

from app.config import Config, ConfigError, ServerConfig
from app.demo_idp import load_demo_keys
from app.keys import KeyRing
from app.logs import configure_logging

#: hypercorn's buffer for an incomplete request line + headers; Baton's requests
#: carry tokens in the body, so the 16 KiB default is kept, but set deliberately.
H11_MAX_INCOMPLETE_SIZE = 16 * 1024
ASGI_PATH = "ops.asgi:app"
_LISTEN_ERRORS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})
CONFIG_ENV = "BATON_CONFIG"


def bind_address(host: str, port: int) -> str:
    """hypercorn's ``bind`` for ``host``/``port`` (IPv6 literals in brackets)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def hypercorn_config(server: ServerConfig) -> HypercornConfig:
    """A hypercorn configuration from ``[server]`` (timeouts set, never hypercorn's open-ended defaults)."""
    hc = HypercornConfig()
    hc.bind = [bind_address(server.host, server.port)]
    hc.workers = server.workers
    hc.worker_class = server.worker_class
    hc.keep_alive_timeout = server.keep_alive_timeout
    hc.read_timeout = server.read_timeout  # type: ignore[assignment]  # hypercorn annotates int, uses float
    hc.graceful_timeout = server.graceful_timeout
    hc.h11_max_incomplete_size = H11_MAX_INCOMPLETE_SIZE
    hc.include_server_header = False
    hc.accesslog = None  # Baton logs one structured line per request itself
    hc.errorlog = "-"
    hc.application_path = ASGI_PATH
    return hc


def _loop_factory(worker_class: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if worker_class != "uvloop":
        return None
    try:
        import uvloop
    except ImportError as exc:
        raise ConfigError(
            "server.worker_class: uvloop is not installed (pip install uvloop)"
        ) from exc
    return uvloop.new_event_loop


def serve(config: Config, config_path: str | Path) -> int:
    """Serve ``config`` until SIGINT/SIGTERM; returns the process exit code."""
    configure_logging(config.logging.level, config.logging.format)
    hc = hypercorn_config(config.server)
    loop_factory = _loop_factory(config.server.worker_class)
    _create_key_files(config)
    try:
        if config.server.workers > 1:
            return _serve_workers(hc, config_path)
        _serve_here(config, hc, loop_factory)
    except OSError as exc:
        if exc.errno in _LISTEN_ERRORS:
            return fail(f"cannot listen on {hc.bind[0]}: {exc.strerror}", 1)
        raise
    return 0


def _create_key_files(config: Config) -> None:
    """Create missing key files once here, so worker processes never race to generate different keys."""
    try:
        KeyRing.load_or_create(config.signing.keys, config.signing.algorithm)
        if config.demo:
            load_demo_keys(config)
    except OSError as exc:
        raise ConfigError(f"signing.keys: cannot create key files next to {config.signing.keys}: {exc.strerror}") from exc


#: the pid of the ``baton serve`` process whose workers these are (see :func:`end_with_master`)
MASTER_ENV = "BATON_MASTER_PID"
_PR_SET_PDEATHSIG = 1


def _serve_workers(hc: HypercornConfig, config_path: str | Path) -> int:
    from hypercorn.run import run

    os.environ[CONFIG_ENV] = str(Path(config_path).resolve())
    os.environ[MASTER_ENV] = str(os.getpid())
    return run(hc)


def end_with_master() -> None:
    """In a worker of ``baton serve``: have the kernel send SIGTERM when the master dies, even by SIGKILL.

    hypercorn's master stops its workers on SIGTERM and SIGINT, but a master killed
    outright (OOM killer, ``kill -9``) would leave them serving on its port with
    no one to stop them. Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere, and
    outside ``baton serve``, nothing is done. A master that died before the call
    is caught by comparing the parent with the pid it left in the environment.
    The worker then stops at once (hypercorn's workers have no SIGTERM handler of
    their own when the master runs them): requests in flight are cut, which is
    what a dead master means anyway.
    """
    master = os.environ.get(MASTER_ENV)
    if not master or not sys.platform.startswith("linux") or os.getpid() == int(master):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if not _ask_parent_death_signal(libc):
        # not permitted here (a seccomp profile): the master's own SIGTERM handling still applies
        print(f"baton: warning: prctl(PR_SET_PDEATHSIG) failed (errno {ctypes.get_errno()})", file=sys.stderr)
        return
    if os.getppid() != int(master):
        os.kill(os.getpid(), signal.SIGTERM)


def _ask_parent_death_signal(libc: object) -> bool:
    """``prctl(PR_SET_PDEATHSIG, SIGTERM)`` for the calling process; False when the kernel refused."""
    import ctypes

    arguments = (ctypes.c_ulong(int(signal.SIGTERM)), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
    return libc.prctl(ctypes.c_int(_PR_SET_PDEATHSIG), *arguments) == 0  # type: ignore[attr-defined]


def ending_with_this_process() -> Callable[[], None] | None:
    """A ``preexec_fn`` for :class:`subprocess.Popen`: the child gets SIGTERM when this process dies.

    For servers a tool starts and must not leave behind, even when the tool itself is
    killed outright (``kill -9``, the OOM killer), which no cleanup handler of its own
    survives. A child forked after this process already died stops itself at once.
    None off Linux (then only the tool's own cleanup stops its children).
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)  # loaded here, before the fork: the child only makes the call
    parent = os.getpid()

    def end_with_parent() -> None:
        # until exec, this child runs the parent's Python signal handlers: SIGTERM must kill it, not be handled
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        # a refusal (a seccomp profile) leaves the tool's own cleanup, as off Linux
        if _ask_parent_death_signal(libc) and os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return end_with_parent


def _check_listen(hc: HypercornConfig) -> None:
    """Bind (and release) the listening sockets first, so a busy port fails before the app starts."""
    sockets = hc.create_sockets()
    for sock in (*sockets.insecure_sockets, *sockets.secure_sockets, *sockets.quic_sockets):
        sock.close()


def _serve_here(
    config: Config, hc: HypercornConfig, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None
) -> None:
    from hypercorn.asyncio import serve as hypercorn_serve

    from app.server import create_app

    _check_listen(hc)
    app = create_app(config)
    drain = config.server.drain_seconds

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)

        async def drain_then_stop() -> None:
            # readiness drops first (load balancers stop sending), then hypercorn stops accepting
            # and finishes in-flight requests within graceful_timeout
            await stop.wait()
            app.state.runtime.draining = True
            await asyncio.sleep(drain)

        await hypercorn_serve(app, hc, shutdown_trigger=drain_then_stop)  # type: ignore[arg-type]

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(run())


def fail(message: str, code: int = 2) -> int:
    """Print a clean ``baton: error: …`` line (no traceback) and return ``code``."""
    print(f"baton: error: {message}", file=sys.stderr)
    return code
