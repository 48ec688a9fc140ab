"""The operator's store commands end to end: migrate, export-checkpoints, verify (on both backends)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest

from app.keys import KeyRing
from eventstore import TokenRevoked
from eventstore.checkpoints import Checkpointer
from ops import cmd_store
from ops.cmd_store import keyring_signer

from .conftest import Backend


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="baton")
    cmd_store.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.func(args))


async def baton(*argv: str) -> int:
    """Run a store command as ``baton`` does (in a thread: it runs its own event loop)."""
    return await asyncio.to_thread(_main, list(argv))


@pytest.fixture
def config(backend: Backend, tmp_path: Path) -> Path:
    path = tmp_path / "baton.toml"
    path.write_text(
        f'issuer = "https://baton.test"\n[store]\nurl = "{backend.url}"\n'
        f'[signing]\nkeys = "{tmp_path / "keys.json"}"\n'
    )
    return path


async def test_migrate_export_and_verify(backend: Backend, config: Path, tmp_path: Path, capsys) -> None:
    """A migrated, checkpointed log verifies (exit 0); after tampering, verify exits 1 naming the position."""
    assert await baton("migrate", "--config", str(config)) == 0
    ring = KeyRing.load_or_create(tmp_path / "keys.json", "ES256")
    store = backend.make()
    await store.open()
    try:
        cp = Checkpointer(store, keyring_signer(ring), every=5)
        for i in range(12):
            await store.append("s", [TokenRevoked(at=float(i), jti=f"j{i}", by="tester")])
            await cp.maybe_checkpoint()
    finally:
        await store.close()
    export = tmp_path / "cp.jsonl"
    assert await baton("export-checkpoints", "--config", str(config), "-o", str(export)) == 0
    assert len(export.read_bytes().splitlines()) == 2
    assert await baton("verify", "--config", str(config), "--checkpoints", str(export)) == 0
    assert "OK" in capsys.readouterr().out

    await backend.drop_append_only_guard()
    await backend.raw("DELETE FROM events WHERE position > 4")
    assert await baton("verify", "--config", str(config), "--checkpoints", str(export)) == 1
    assert "FAILED at position 5" in capsys.readouterr().out


async def test_verify_with_a_broken_config_exits_2(tmp_path: Path, capsys) -> None:
    """A configuration error is reported by name, with exit code 2."""
    bad = tmp_path / "baton.toml"
    bad.write_text("issuer = 3\n")
    assert await baton("verify", "--config", str(bad)) == 2
    assert "issuer" in capsys.readouterr().err
