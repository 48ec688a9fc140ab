"""``baton init`` writes a commented starter configuration that Baton accepts."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from app.config import load_config
from app.secrets import verify_secret
from ops.cli import main
from ops.cmd_server import TEMPLATE_PLACEHOLDER, template_text

SECRET_LINE = re.compile(r"\(shown once, only its hash is stored\): (\S+)")


def test_template_loads() -> None:
    """The shipped template is a valid configuration as it stands."""
    config = load_config(template_text().encode(), environ={})
    assert config.issuer == "http://127.0.0.1:8000"
    assert [c.client_id for c in config.clients] == ["frontend"]


def test_template_comments_every_key() -> None:
    """Every active key in the template has a comment line right above it or a commented group."""
    lines = template_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-z_]+ = ", line):
            above = lines[max(0, i - 6) : i]
            assert any(a.startswith("#") for a in above), f"key without a comment: {line}"


def test_init_writes_a_config_that_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """init writes DIR/baton.toml (0600) that load_config accepts, with the printed secret's hash filled in."""
    assert main(["init", str(tmp_path / "conf")]) == 0
    path = tmp_path / "conf" / "baton.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert TEMPLATE_PLACEHOLDER not in text
    config = load_config(path, environ={})
    secret = SECRET_LINE.search(capsys.readouterr().out)
    assert secret is not None
    assert verify_secret(secret.group(1), config.clients[0].secret_hash or "")


def test_init_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An existing baton.toml is left untouched (exit 2) unless --force is given."""
    path = tmp_path / "baton.toml"
    path.write_text("issuer = 'keep me'\n")
    assert main(["init", str(tmp_path)]) == 2
    assert "--force" in capsys.readouterr().err
    assert path.read_text() == "issuer = 'keep me'\n"
    assert main(["init", str(tmp_path), "--force"]) == 0
    assert load_config(path, environ={}).issuer == "http://127.0.0.1:8000"
