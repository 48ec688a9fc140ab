"""The world ``baton bench`` runs in: a loopback issuer, pre-minted tokens, Baton's config and process.

:class:`BenchIssuer` is an OIDC issuer served over HTTP on 127.0.0.1 (discovery
and JWKS with ``Cache-Control``), so Baton fetches its keys exactly as it would
a real one. :class:`BenchSetup` holds everything a run needs and can be written
to a directory (``--prepare``) and loaded back (``--target``): the issuer key,
the client secret and private key, and Baton's configuration.
:class:`ServerProcess` runs ``baton serve`` (or the ceiling app) and reads its
CPU time from ``/proc``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from joserfc import jws
from joserfc.jwk import ECKey

from app.client_auth import MAX_ASSERTION_LIFETIME
from app.secrets import hash_secret
from ops.config_files import free_port, toml_text
from ops.serving import ending_with_this_process

BATON_ISSUER = "https://baton.bench"
USER_AUDIENCE = "baton"
#: the target audiences: impersonation/delegation/pkj go to "orders"; a chain goes a → b → c → d
AUDIENCES = ("orders", "svc-b", "svc-c", "svc-d")
HIGH_RATE = 1_000_000.0  # rate limits that never refuse, so every exchange pays the Redis round trip


def _compact_json(claims: dict[str, Any]) -> bytes:
    """Claims as identity providers write them: compact JSON (no whitespace), UTF-8."""
    return json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode()


def b64(data: bytes) -> str:
    """Unpadded base64url."""
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class BenchIssuer:
    """A trusted issuer on loopback HTTP: discovery + JWKS, and the key that mints user tokens."""

    def __init__(self, key: ECKey, port: int) -> None:
        self.key = key
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.fetches = 0
        self._server: ThreadingHTTPServer | None = None

    def jwks(self) -> dict[str, Any]:
        """The published key set."""
        public = dict(self.key.as_dict(private=False), kid=self.key.kid, alg="ES256", use="sig")
        return {"keys": [public]}

    def mint(self, claims: dict[str, Any]) -> str:
        """An ES256 access token from this issuer."""
        header = {"alg": "ES256", "kid": self.key.kid, "typ": "JWT"}
        return jws.serialize_compact(header, _compact_json(claims), self.key, algorithms=["ES256"])

    def claims(self, sub: str, now: int, lifetime: int, **extra: Any) -> dict[str, Any]:
        """Access-token claims for ``sub``, audience Baton."""
        claims = {"iss": self.url, "sub": sub, "aud": USER_AUDIENCE, "iat": now, "exp": now + lifetime,
                  "jti": uuid.uuid4().hex, "scope": "orders:read"}
        claims.update(extra)
        return claims

    @contextlib.contextmanager
    def serving(self) -> Iterator[BenchIssuer]:
        """Serve discovery and JWKS on the issuer's port for the duration of the block."""
        issuer = self
        documents = {
            "/.well-known/openid-configuration": {"issuer": self.url, "jwks_uri": self.url + "/jwks"},
            "/jwks": self.jwks(),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                document = documents.get(self.path)
                body = json.dumps(document).encode() if document is not None else b"{}"
                issuer.fetches += 1
                self.send_response(200 if document is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "max-age=3600")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        thread = threading.Thread(target=self._server.serve_forever, name="bench-issuer", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()


#: how long the bench's ``private_key_jwt`` assertions live: a margin under the most Baton accepts
ASSERTION_LIFETIME_S = MAX_ASSERTION_LIFETIME - 20


@dataclass
class BenchSetup:
    """Keys, secrets and the Baton configuration of one benchmark (writable with ``--prepare``)."""

    workdir: Path
    issuer: BenchIssuer
    client_key: ECKey
    secret: str
    secret_hash: str

    @classmethod
    def create(cls, workdir: Path) -> BenchSetup:
        """Fresh keys and a fresh client secret (hashed with the production KDF cost)."""
        workdir.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(24)
        return cls(
            workdir=workdir,
            issuer=BenchIssuer(ECKey.generate_key("P-256", private=True, auto_kid=True), free_port()),
            client_key=ECKey.generate_key("P-256", private=True, auto_kid=True),
            secret=secret,
            secret_hash=hash_secret(secret),
        )

    def save(self) -> Path:
        """Write the setup (0600) so a later ``--target`` run can reuse it; returns its path."""
        path = self.workdir / "bench-setup.json"
        data = {
            "issuer_key": self.issuer.key.as_dict(private=True), "issuer_port": self.issuer.port,
            "client_key": self.client_key.as_dict(private=True), "secret": self.secret,
            "secret_hash": self.secret_hash,
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        return path

    @classmethod
    def load(cls, workdir: Path) -> BenchSetup:
        """Read a setup written by :meth:`save`."""
        data = json.loads((workdir / "bench-setup.json").read_text())
        return cls(
            workdir=workdir,
            issuer=BenchIssuer(ECKey.import_key(data["issuer_key"]), int(data["issuer_port"])),
            client_key=ECKey.import_key(data["client_key"]),
            secret=data["secret"],
            secret_hash=data["secret_hash"],
        )

    def config(self, *, port: int, store_url: str, cache_url: str, workers: int, worker_class: str,
               prefix: str = "baton:") -> dict[str, Any]:
        """Baton's configuration for the benchmark (production defaults except where noted)."""
        public = dict(self.client_key.as_dict(private=False), kid=self.client_key.kid, alg="ES256", use="sig")

        def client(client_id: str, audience: str, **extra: Any) -> dict[str, Any]:
            entry: dict[str, Any] = {
                "client_id": client_id, "secret_hash": self.secret_hash, "audiences": [audience],
                "scopes": ["orders:read"], "delegation": False, "impersonation": True,
                "rate": HIGH_RATE, "burst": 1_000_000, "subject_rate": HIGH_RATE, "subject_burst": 1_000_000,
            }
            entry.update(extra)
            return entry

        return {
            "issuer": BATON_ISSUER,
            "server": {"host": "127.0.0.1", "port": port, "workers": workers, "worker_class": worker_class,
                       "keep_alive_timeout": 75.0, "read_timeout": 10.0, "graceful_timeout": 5.0},
            # SQLite: a 2 ms gathering window makes group-commit batches larger when several workers share
            # the file's write lock. PostgreSQL keeps the default, none: the lock it asks for ahead gathers
            # the next batch, and a window opened after each batch left the workers idle (docs/performance.md)
            "store": {"url": store_url, **({"batch_wait_ms": 2.0} if store_url.startswith("sqlite") else {})},
            "cache": {"url": cache_url, "prefix": prefix},
            "signing": {"keys": str(self.workdir / "signing-keys.json")},
            "tokens": {"ttl": 300, "max_depth": 3},
            "logging": {"level": "info", "format": "json"},
            "trusted_issuers": [{"issuer": self.issuer.url, "algorithms": ["ES256"], "audiences": [USER_AUDIENCE]}],
            "audiences": [{"audience": a, "scopes": ["orders:read"]} for a in AUDIENCES],
            "clients": [
                client("imp", "orders"),
                client("dlg", "orders", delegation=True, impersonation=False),
                {**client("pkj", "orders"), "auth_method": "private_key_jwt", "secret_hash": None,
                 "jwks": {"keys": [public]}},
                client("chain-a", "svc-b"),
                client("svc-b", "svc-c"),
                client("svc-c", "svc-d"),
            ],
        }

    def write_config(self, config: dict[str, Any], name: str = "baton.toml") -> Path:
        """Write ``config`` as TOML in the work directory."""
        clean = {**config, "clients": [{k: v for k, v in c.items() if v is not None} for c in config["clients"]]}
        path = self.workdir / name
        path.write_text(toml_text(clean))
        return path

    def assertion(self, now: int) -> str:
        """A fresh single-use ``private_key_jwt`` client assertion for client ``pkj``."""
        claims = {"iss": "pkj", "sub": "pkj", "aud": BATON_ISSUER + "/token", "iat": now,
                  "exp": now + ASSERTION_LIFETIME_S, "jti": uuid.uuid4().hex}
        header = {"alg": "ES256", "kid": self.client_key.kid, "typ": "JWT"}
        return jws.serialize_compact(header, _compact_json(claims), self.client_key, algorithms=["ES256"])


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (from ``/proc/*/stat``)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, frontier = [root], [root]
    while frontier:
        frontier = [c for p in frontier for c in children.get(p, [])]
        found += frontier
    return found


def service_pids(program: str, argument: str | None = None) -> list[int]:
    """Pids of local processes of ``program`` (``postgres``, ``redis-server``) whose command line holds ``argument``
    as a whole word (``:6390`` does not match ``:63901``).

    How the bench counts the CPU a database or cache on this machine spends for Baton;
    empty when the server runs elsewhere.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if (comm == program or cmdline.split(" ", 1)[0].endswith("/" + program)) and (
            argument is None or re.search(rf"{re.escape(argument)}(\s|$)", cmdline)
        ):
            found.append(int(entry))
    return found


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each live pid (``/proc/<pid>/stat`` utime + stime)."""
    ticks = os.sysconf("SC_CLK_TCK")
    result: dict[int, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        result[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return result


def wait_until_idle(pids: list[int], *, cores: float = 0.05, window: float = 0.5, timeout: float = 15.0) -> float:
    """Wait until ``pids`` together use under ``cores`` of CPU over ``window`` seconds; the last reading."""
    deadline = time.monotonic() + timeout
    while True:
        before = cpu_seconds(pids)
        time.sleep(window)
        after = cpu_seconds(pids)
        used = sum(after[pid] - before.get(pid, after[pid]) for pid in after) / window
        if used < cores or time.monotonic() >= deadline:
            return used


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


@contextlib.contextmanager
def _stop_signals_deferred() -> Iterator[None]:
    """Hold SIGTERM, SIGHUP and SIGINT meanwhile, then act on the first that came, with the handler set before.

    A stop request that interrupted ``subprocess.Popen`` after its fork would leave the child
    running with no handle to stop it by. Only the main thread may set handlers (elsewhere: nothing held).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    # signals whose handler was not set from Python (getsignal() is None) cannot be restored: left alone
    held = [sig for sig in _STOP_SIGNALS if signal.getsignal(sig) is not None]
    previous = {sig: signal.signal(sig, lambda signum, _frame: arrived.append(signum)) for sig in held}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if arrived:
            signal.raise_signal(arrived[0])


class ServerProcess:
    """A server started as a child process (``baton serve`` or the ceiling), with its log file."""

    def __init__(self, argv: list[str], url: str, log_path: Path, ready_path: str,
                 env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.url = url
        self.log_path = log_path
        self.ready_path = ready_path
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start and wait until ``ready_path`` answers 200."""
        log = self.log_path.open("ab")
        try:
            with _stop_signals_deferred():  # a stop request must not land between the fork and self.proc
                # a process group of its own: hypercorn's workers are stopped with it even if its master dies
                # first; and the master gets SIGTERM from the kernel should the bench be killed outright
                self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log, env=self.env,
                                             cwd=Path(__file__).resolve().parent.parent, start_new_session=True,
                                             preexec_fn=ending_with_this_process())
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.argv[0]} exited with {self.proc.returncode}: {self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(self.url + self.ready_path, timeout=1).status_code == 200:
                        return
                time.sleep(0.1)
            raise RuntimeError(f"server on {self.url} not ready: {self.tail()}")
        except BaseException:  # not ready, or the bench itself is stopping: no server outlives it
            self.stop()
            raise

    def tail(self) -> str:
        """The end of the server's log."""
        try:
            return self.log_path.read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def pids(self) -> list[int]:
        """The process and its workers."""
        return process_tree(self.proc.pid) if self.proc is not None else []

    def stop(self) -> None:
        """SIGTERM to the server's process group, then SIGKILL to whatever of it is left after a grace period.

        The group, not the master alone: a master stopped while it was still starting its workers
        (before hypercorn handles SIGTERM) would leave them running, orphaned.
        """
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)


def baton_process(config_path: Path, url: str) -> ServerProcess:
    """``baton serve --config FILE`` as a child process."""
    argv = [sys.executable, "-m", "ops.cli", "serve", "--config", str(config_path)]
    return ServerProcess(argv, url, config_path.with_suffix(".log"), "/readyz")
