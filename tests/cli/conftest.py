"""Helpers for driving the ``baton`` command line in tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[2]


def baton_command(*args: str) -> list[str]:
    """argv running the ``baton`` CLI from this checkout (installed or not)."""
    return [sys.executable, "-m", "ops.cli", *args]


def cli_env() -> dict[str, str]:
    """The environment for a ``baton`` subprocess: this checkout importable, no config overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_baton(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``baton ARGS`` to completion in a subprocess."""
    return subprocess.run(
        baton_command(*args), cwd=cwd, env=cli_env(), input=stdin, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(autouse=True)
def _no_baton_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Configuration overrides from the developer's shell must not leak into CLI tests."""
    for name in list(os.environ):
        if name.startswith("BATON_") and not name.startswith("BATON_TEST_"):
            monkeypatch.delenv(name)
