"""Two instances sharing one key file see every change without a restart; a damaged file changes nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from app import key_file
from app.key_lifecycle import promote, rotate
from app.key_schedule import apply_key_change
from app.metrics import KEY_RELOADS
from app.config import config_from_dict
from tests.support.fake_issuer import FakeIssuer
from tests.support.harness import Harness, base_config, decode_header


def _instance(tmp_path: Path, name: str, keys: Path, idp: FakeIssuer) -> Harness:
    root = tmp_path / name
    root.mkdir()
    raw = base_config(root, idp)
    raw["signing"] = {"keys": str(keys), "promote_after": 2, "reload_seconds": 0.05}
    return Harness(config_from_dict(raw), idp)


async def _published(h: Harness) -> set[str]:
    response = await h.http.get("/jwks")
    return {k["kid"] for k in response.json()["keys"]}


async def _issued_kid(h: Harness) -> str:
    response = await h.exchange(h.user_token(), audience="billing", scope="billing:read")
    assert response.status_code == 200, response.text
    return decode_header(response.json()["access_token"])["kid"]


async def test_two_instances_follow_rotation_through_the_shared_file(tmp_path: Path) -> None:
    """rotate: both publish the next key and keep signing with the old; promote: both sign with the new one."""
    idp = FakeIssuer("https://idp.test")
    keys = tmp_path / "shared" / "keys.json"
    async with _instance(tmp_path, "a", keys, idp) as a, _instance(tmp_path, "b", keys, idp) as b:
        for h in (a, b):
            await h.runtime.key_watcher.stop()  # reload by hand, so each step is checked exactly
        old = a.runtime.keyring.kid
        assert b.runtime.keyring.kid == old
        [change] = await apply_key_change(keys, a.runtime.store, lambda k: rotate(k, "ES256", time.time()), time.time())
        for h in (a, b):
            assert h.runtime.key_watcher.check()
            assert await _published(h) == {old, change.kid}
            assert await _issued_kid(h) == old
        await apply_key_change(keys, b.runtime.store, lambda k: promote(k, time.time()), time.time())
        for h in (a, b):
            assert h.runtime.key_watcher.check()
            assert await _issued_kid(h) == change.kid
            assert await _published(h) == {old, change.kid}  # the retired key verifies its tokens


async def test_the_poll_loop_picks_up_a_change_without_being_asked(tmp_path: Path) -> None:
    """Within a few reload intervals a running instance publishes a key another process added."""
    idp = FakeIssuer("https://idp.test")
    keys = tmp_path / "shared" / "keys.json"
    async with _instance(tmp_path, "a", keys, idp) as a:
        [change] = await apply_key_change(keys, a.runtime.store, lambda k: rotate(k, "ES256", time.time()), time.time())
        deadline = time.monotonic() + 5
        while change.kid not in await _published(a):
            assert time.monotonic() < deadline, "the watcher never reloaded the key file"
            await asyncio.sleep(0.05)


async def test_a_damaged_key_file_keeps_the_old_keys_and_logs_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Garbage or a file without an active key is refused: the old ring keeps signing, an error is logged."""
    errors: list[tuple[str, dict[str, Any]]] = []

    class Recorder:
        def error(self, event: str, **fields: Any) -> None:
            errors.append((event, fields))

        def info(self, event: str, **fields: Any) -> None:
            pass

    monkeypatch.setattr(key_file, "log", Recorder())
    idp = FakeIssuer("https://idp.test")
    keys = tmp_path / "shared" / "keys.json"
    async with _instance(tmp_path, "a", keys, idp) as a:
        await a.runtime.key_watcher.stop()  # drive reloads by hand
        ring = a.runtime.keyring
        failed = KEY_RELOADS.labels("failed")._value.get()
        keys.write_text('{"keys": [')
        assert not a.runtime.key_watcher.check()
        keys.write_text('{"keys": [{"kty": "EC", "kid": "x", "alg": "ES256", "baton_state": "next"}]}')
        assert not a.runtime.key_watcher.check()
        assert a.runtime.keyring is ring
        assert await _issued_kid(a) == ring.kid
        assert [e for e, _ in errors] == ["signing_keys_reload_failed"] * 2
        assert KEY_RELOADS.labels("failed")._value.get() == failed + 2
