"""Load generators for ``baton bench``: wrk with a Lua script, or a built-in asyncio HTTP/1.1 client.

Both take a :class:`Workload` (one path, fixed headers, a list of pre-built
form bodies used in rotation, the status and a text every response should
have) and keep ``connections`` keep-alive connections busy for ``duration``
seconds. Both report a :class:`LoadResult`. Bodies marked ``single_use``
(``private_key_jwt`` assertions) are handed out once each; running out is
reported as errors, not papered over by reuse.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


@dataclass
class Workload:
    """What one scenario sends."""

    path: str
    headers: dict[str, str]
    bodies: list[str]
    expected_status: int = 200
    single_use: bool = False
    #: text every response with the expected status must contain, else it counts as an error (an
    #: introspection of an expired token is a 200 too, but ``{"active":false}``)
    expected_body: str = ""


@dataclass
class LoadResult:
    """What a load run measured."""

    generator: str
    connections: int
    duration: float
    requests: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Responses with the expected status (and text, where the workload names one) per second."""
        return (self.requests - self.errors) / self.duration if self.duration > 0 else 0.0


def wrk_available() -> bool:
    """True when ``wrk`` is on PATH."""
    return shutil.which("wrk") is not None


#: how a response with the expected status but without :attr:`Workload.expected_body` is counted in ``statuses``
WRONG_BODY = -1


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


# --------------------------------------------------------------------------- built-in generator


def _request_bytes(host: str, workload: Workload, body: str) -> bytes:
    data = body.encode()
    head = [f"POST {workload.path} HTTP/1.1", f"Host: {host}", "Content-Type: application/x-www-form-urlencoded",
            f"Content-Length: {len(data)}"]
    head += [f"{k}: {v}" for k, v in workload.headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


async def _connection(host: str, port: int, requests: list[bytes], cursor: list[int], step: int,
                      stop_at: float, workload: Workload, latencies: list[float], statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    marker = workload.expected_body.encode()
    try:
        while time.perf_counter() < stop_at:
            index = cursor[0]
            cursor[0] += step
            if workload.single_use and index >= len(requests):
                statuses[0] = statuses.get(0, 0) + 1  # ran out of single-use bodies: counted as an error
                await asyncio.sleep(0.001)
                continue
            started = time.perf_counter()
            writer.write(requests[index % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            body = await reader.readexactly(int(match.group(1))) if match else b""
            latencies.append(time.perf_counter() - started)
            if status == workload.expected_status and marker not in body:
                status = WRONG_BODY
            statuses[status] = statuses.get(status, 0) + 1
            if b"connection: close" in head.lower():
                break
    finally:
        writer.close()


async def run_builtin(url: str, workload: Workload, connections: int, duration: float) -> LoadResult:
    """Drive ``url`` with ``connections`` keep-alive connections for ``duration`` seconds (asyncio streams)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [_request_bytes(f"{host}:{port}", workload, b) for b in workload.bodies]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    cursor = [0]
    started = time.perf_counter()
    stop_at = started + duration
    results = await asyncio.gather(
        *(_connection(host, port, requests, cursor, 1, stop_at, workload, latencies, statuses)
          for _ in range(connections)),
        return_exceptions=True,
    )
    elapsed = time.perf_counter() - started
    failures = sum(1 for r in results if isinstance(r, BaseException))
    latencies.sort()
    total = sum(statuses.values()) + failures
    errors = total - statuses.get(workload.expected_status, 0)
    return LoadResult(
        generator="builtin", connections=connections, duration=elapsed, requests=total, errors=errors,
        p50_ms=_percentile(latencies, 0.50) * 1000, p95_ms=_percentile(latencies, 0.95) * 1000,
        p99_ms=_percentile(latencies, 0.99) * 1000, statuses={_status_name(k): v for k, v in sorted(statuses.items())},
    )


def _status_name(status: int) -> str:
    return "wrong_body" if status == WRONG_BODY else str(status)


# --------------------------------------------------------------------------- wrk

#: Rotates through the bodies file (one urlencoded body per line). Thread ``t`` of ``n`` takes bodies
#: t, t+n, t+2n …, so single-use bodies are never sent twice; ``done`` prints one JSON line.
WRK_LUA = r"""
local bodies = {}
for line in io.lines(os.getenv("BENCH_BODIES")) do bodies[#bodies + 1] = line end
local single = os.getenv("BENCH_SINGLE_USE") == "1"
local expected = tonumber(os.getenv("BENCH_EXPECTED"))
local marker = os.getenv("BENCH_EXPECTED_BODY") or ""
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  thread:set("nthreads", tonumber(os.getenv("BENCH_THREADS")))
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  idx = id
  bad = 0
  statuses = {}
  wrk.method = "POST"
  wrk.path = os.getenv("BENCH_PATH")
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  for k, v in string.gmatch(os.getenv("BENCH_HEADERS") or "", "([^\n:]+): ([^\n]+)") do wrk.headers[k] = v end
end

function request()
  local i = idx
  idx = idx + nthreads
  if single and i >= #bodies then bad = bad + 1 end
  return wrk.format(nil, nil, nil, bodies[(i % #bodies) + 1])
end

function response(status, headers, body)
  if status == expected and marker ~= "" and not string.find(body, marker, 1, true) then status = "wrong_body" end
  statuses[status] = (statuses[status] or 0) + 1
  if status ~= expected then bad = bad + 1 end
end

function done(summary, latency, requests)
  local bad_total, codes = 0, {}
  for _, t in ipairs(threads) do
    bad_total = bad_total + t:get("bad")
    for code, n in pairs(t:get("statuses")) do codes[tostring(code)] = (codes[tostring(code)] or 0) + n end
  end
  local parts = {}
  for code, n in pairs(codes) do parts[#parts + 1] = string.format('"%s": %d', code, n) end
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "socket_errors": %d, "bad": %d, ' ..
    '"p50_us": %d, "p95_us": %d, "p99_us": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    bad_total, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    table.concat(parts, ", ")))
end
"""


def run_wrk(url: str, workload: Workload, connections: int, duration: float, threads: int = 2) -> LoadResult:
    """Drive ``url`` with wrk (``threads`` threads, ``connections`` connections) for ``duration`` seconds."""
    threads = max(1, min(threads, connections))
    with tempfile.TemporaryDirectory(prefix="baton-wrk-") as tmp:
        script = Path(tmp) / "bench.lua"
        script.write_text(WRK_LUA)
        bodies = Path(tmp) / "bodies.txt"
        bodies.write_text("\n".join(workload.bodies) + "\n")
        env = {
            "BENCH_BODIES": str(bodies), "BENCH_PATH": workload.path, "BENCH_THREADS": str(threads),
            "BENCH_EXPECTED": str(workload.expected_status), "BENCH_SINGLE_USE": "1" if workload.single_use else "0",
            "BENCH_EXPECTED_BODY": workload.expected_body,
            "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in workload.headers.items()),
            "PATH": "/usr/bin:/bin:/usr/local/bin",
        }
        seconds = max(1, round(duration))
        out = subprocess.run(
            ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "5s",
             "-s", str(script), url],
            capture_output=True, text=True, env=env, timeout=seconds + 30, check=False,
        )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk produced no result: {out.stdout[-500:]} {out.stderr[-500:]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    requests = int(data["requests"])
    # a request cut off by the end of the run is counted by wrk as a socket error only if it failed
    errors = int(data["bad"]) + int(data["socket_errors"])
    return LoadResult(
        generator="wrk", connections=connections, duration=int(data["duration_us"]) / 1e6, requests=requests,
        errors=errors, p50_ms=data["p50_us"] / 1000, p95_ms=data["p95_us"] / 1000, p99_ms=data["p99_us"] / 1000,
        statuses=dict(sorted(data["statuses"].items())),
    )


def run_load(url: str, workload: Workload, connections: int, duration: float, generator: str) -> LoadResult:
    """Run the chosen generator (``wrk`` or ``builtin``)."""
    if generator == "wrk":
        return run_wrk(url, workload, connections, duration)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        return runner.run(run_builtin(url, workload, connections, duration))
