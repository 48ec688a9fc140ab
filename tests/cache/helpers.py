"""Test helpers: polling for an eventual state, a private redis-server, a silent TCP server."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from ops.config_files import free_port
from redis.asyncio import Redis


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> bool:
    """Poll ``check`` until it is true or ``within`` seconds pass; its last answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if await check():
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.02)


class RedisServer:
    """A throwaway redis-server on ``port`` (no persistence) that a test can stop and restart."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        """Start the server and wait until it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server binary not installed")
        self._process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        async def answers() -> bool:
            client = Redis.from_url(self.url, socket_connect_timeout=0.2, socket_timeout=0.2)
            try:
                return bool(await client.ping())
            except Exception:
                return False
            finally:
                await client.aclose()

        assert await eventually(answers, within=10), "redis-server did not start"

    def stop(self) -> None:
        """Stop the server and wait for it to exit."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


@asynccontextmanager
async def redis_server() -> AsyncIterator[RedisServer]:
    """A private redis-server on a free port, always stopped at the end."""
    server = RedisServer(free_port())
    try:
        await server.start()
        yield server
    finally:
        server.stop()


@asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers (a hung Redis); its port."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in held:
            writer.close()
        await server.wait_closed()
