"""``baton keys rotate|promote|retire|list``: file changes, recorded events, and ``baton verify`` after removal."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from app.config import load_config
from app.key_lifecycle import KEY_STREAM, state_of
from app.keys import KeyRing, KeyRingSigner, read_key_file, write_key_file
from eventstore import TokenRevoked, open_store
from eventstore.checkpoints import CHECKPOINT_TYP, Checkpointer
from ops.cli import main

PRIVATE = {"d", "p", "q", "dp", "dq", "qi"}


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "baton.toml"
    path.write_text(
        f'issuer = "https://baton.test"\n'
        f'[store]\nurl = "sqlite:///{tmp_path}/events.db"\n'
        f'[signing]\nkeys = "{tmp_path}/keys.json"\npromote_after = 30\nreload_seconds = 1.0\n'
        f"[tokens]\nttl = 60\nleeway = 0\n"
    )
    assert main(["keys", "generate", "-o", str(tmp_path / "keys.json")]) == 0
    return path


def _keys(config_path: Path) -> list[dict]:
    return read_key_file(load_config(config_path).signing.keys)


async def _events(config_path: Path) -> list:
    store = open_store(load_config(config_path).store.url)
    await store.open()
    try:
        return [r.event for r in await store.read_stream(KEY_STREAM)]
    finally:
        await store.close()


def test_rotate_promote_retire_are_recorded_with_public_keys_only(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each command changes the file (still 0600) and appends one SigningKeyRotated per change, no private part."""
    first = _keys(config_path)[0]["kid"]
    assert main(["keys", "rotate", "-c", str(config_path)]) == 0
    second = capsys.readouterr().out.split()[0]
    assert [state_of(k) for k in _keys(config_path)] == ["active", "next"]

    assert main(["keys", "promote", "-c", str(config_path)]) == 2  # published 0 s ago < promote_after
    assert "promote_after" in capsys.readouterr().err
    assert main(["keys", "promote", "-c", str(config_path), "--force"]) == 0
    assert KeyRing(_keys(config_path)).kid == second

    assert main(["keys", "rotate", "-c", str(config_path)]) == 0
    third = capsys.readouterr().out.split()[-2]
    # "--": a thumbprint may start with "-" (one kid in 64)
    assert main(["keys", "retire", "-c", str(config_path), "--", third]) == 0
    assert main(["keys", "retire", "-c", str(config_path), "--", second]) == 2  # the only active key

    path = Path(load_config(config_path).signing.keys)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    events = asyncio.run(_events(config_path))
    assert [(e.kid, e.state) for e in events] == [
        (second, "next"), (first, "retired"), (second, "active"), (third, "next"), (third, "removed")
    ]
    assert all(not PRIVATE & set(e.public_jwk) for e in events)


def test_list_shows_state_kid_alg_created_and_expiry(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``keys list`` prints one row per key and never private material."""
    assert main(["keys", "rotate", "-c", str(config_path), "--alg", "RS256"]) == 0
    assert main(["keys", "promote", "-c", str(config_path), "--force"]) == 0
    capsys.readouterr()
    assert main(["keys", "list", "-c", str(config_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["STATE", "KID", "ALG", "CREATED", "EXPIRES"]
    rows = [line.split() for line in out[1:]]
    assert [(r[0], r[2]) for r in rows] == [("retired", "ES256"), ("active", "RS256")]
    assert rows[0][4].endswith("Z") and rows[1][4] == "-"
    assert all(k["kid"] in "\n".join(out) for k in _keys(config_path))
    assert '"d"' not in "\n".join(out)


def test_verify_still_checks_checkpoints_signed_by_a_removed_key(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a key's tokens expired and it was removed, ``baton verify`` still verifies its checkpoints."""
    config = load_config(config_path)

    async def checkpoint_with_current_key() -> None:
        store = open_store(config.store.url)
        await store.open()
        try:
            await store.append("s", [TokenRevoked(at=1.0, jti="j", by="t")])
            ring = KeyRing(read_key_file(config.signing.keys))
            assert await Checkpointer(store, KeyRingSigner(lambda: ring, CHECKPOINT_TYP)).checkpoint() is not None
        finally:
            await store.close()

    asyncio.run(checkpoint_with_current_key())
    old = _keys(config_path)[0]["kid"]
    assert main(["keys", "rotate", "-c", str(config_path)]) == 0
    assert main(["keys", "promote", "-c", str(config_path), "--force"]) == 0
    keys = _keys(config_path)
    keys[0]["baton_retired"] -= 3600  # retired an hour ago: its 60 s tokens are long expired
    write_key_file(config.signing.keys, keys)
    assert main(["keys", "rotate", "-c", str(config_path)]) == 0  # any change prunes expired keys
    assert f"{old} removed" in capsys.readouterr().out
    assert old not in {k["kid"] for k in KeyRing(_keys(config_path)).public_jwks["keys"]}
    assert main(["verify", "--config", str(config_path)]) == 0
    assert "OK" in capsys.readouterr().out


def _with_kid(config_path: Path, kid: str, state: str) -> None:
    """Give the file's key of ``state`` the id ``kid`` (a thumbprint may begin with "-")."""
    path = load_config(config_path).signing.keys
    write_key_file(path, [{**k, "kid": kid} if state_of(k) == state else k for k in read_key_file(path)])


def test_kids_beginning_with_a_dash_work_with_kid_options(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``promote --kid -x…`` and ``retire --kid -x…`` take the value as the kid, not as an option."""
    assert main(["keys", "rotate", "-c", str(config_path)]) == 0
    _with_kid(config_path, "-next-key", "next")
    assert main(["keys", "promote", "-c", str(config_path), "--force", "--kid", "-next-key"]) == 0
    assert KeyRing(_keys(config_path)).kid == "-next-key"
    assert main(["keys", "rotate", "-c", str(config_path)]) == 0
    _with_kid(config_path, "-second-next", "next")
    capsys.readouterr()
    assert main(["keys", "retire", "-c", str(config_path), "--kid", "-second-next"]) == 0
    assert "-second-next removed" in capsys.readouterr().out
    assert "-second-next" not in {k["kid"] for k in _keys(config_path) if state_of(k) != "removed"}


@pytest.mark.parametrize("argv", [[], ["a", "--kid", "b"]], ids=["none", "two-different"])
def test_retire_needs_exactly_one_kid(config_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Neither a positional kid nor --kid, or two different ones: refused, the file unchanged."""
    before = _keys(config_path)
    assert main(["keys", "retire", "-c", str(config_path), *argv]) == 2
    assert "name the key to retire once" in capsys.readouterr().err
    assert _keys(config_path) == before
