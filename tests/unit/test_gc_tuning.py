"""A serving Baton freezes what start-up left alive and collects young objects less often; stopping undoes it."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from app.config import config_from_dict
from app.gc_tuning import tuned_gc
from app.server import create_app
from tests.support.fake_issuer import FakeIssuer
from tests.support.harness import base_config


def test_tuned_gc_freezes_and_sets_the_young_threshold_then_restores_both() -> None:
    """Inside: the objects that existed are frozen, the threshold is the one asked for; after: as before."""
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    with tuned_gc(freeze=True, young_threshold=12_345):
        assert gc.get_freeze_count() > 1000
        assert gc.get_threshold()[0] == 12_345
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_nothing_changes_when_both_are_off() -> None:
    """``gc_freeze = false`` and ``gc_young_threshold = 0`` leave CPython's collector alone."""
    before = gc.get_threshold()
    with tuned_gc(freeze=False, young_threshold=0):
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == before


async def _lifespan(app, during) -> None:
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    during()
    await inbox.put({"type": "lifespan.shutdown"})
    assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
    await task


async def test_the_apps_lifespan_applies_the_server_settings(tmp_path: Path) -> None:
    """While the app runs, ``[server] gc_freeze`` and ``gc_young_threshold`` are in force; after shutdown they are not."""
    idp = FakeIssuer("https://idp.test")
    config = base_config(tmp_path, idp)
    config["server"] = {**config.get("server", {}), "gc_young_threshold": 30_000}
    app = create_app(config_from_dict(config))
    before = gc.get_threshold()
    seen: dict[str, object] = {}
    await _lifespan(app, lambda: seen.update(frozen=gc.get_freeze_count(), threshold=gc.get_threshold()[0]))
    assert seen["frozen"] > 1000 and seen["threshold"] == 30_000
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before
