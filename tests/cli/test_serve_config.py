"""``baton serve`` refuses bad configuration cleanly and maps ``[server]`` onto hypercorn."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from app.config import ServerConfig
from ops.cli import main
from ops.serving import ASGI_PATH, bind_address, hypercorn_config

from .conftest import run_baton

BAD_CONFIGS = {
    "wrong type": ('issuer = "http://127.0.0.1:8000"\n[tokens]\nttl = "long"\n', "$.tokens.ttl"),
    "unknown key": ('issuer = "http://127.0.0.1:8000"\n[server]\nprot = 80\n', "prot"),
    "missing issuer": ("[server]\nport = 8000\n", "issuer"),
    "not toml": ("issuer = \n", "not valid TOML"),
    "cross-field": (
        'issuer = "http://127.0.0.1:8000"\n[[clients]]\nclient_id = "a"\nauth_method = "client_secret_post"\n',
        "clients[0]",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_exits_2_naming_the_key(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad configuration stops ``baton serve`` with exit 2 and a one-line message naming the key."""
    text, named = BAD_CONFIGS[name]
    path = tmp_path / "baton.toml"
    path.write_text(text)
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("baton: error: ")
    assert named in err
    assert "Traceback" not in err


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A configuration path that does not exist is reported, not a traceback."""
    assert main(["serve", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "cannot read configuration" in capsys.readouterr().err


def test_bad_config_through_the_real_command(tmp_path: Path) -> None:
    """The installed entry point prints no traceback for a bad config and exits 2."""
    (tmp_path / "baton.toml").write_text('issuer = "http://127.0.0.1:8000"\n[server]\nport = 99999\n')
    result = run_baton("serve", "--config", "baton.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert "$.server.port" in result.stderr
    assert "Traceback" not in result.stderr


def test_hypercorn_settings_come_from_server_config() -> None:
    """Timeouts, workers, worker class and bind are set from [server], never left at hypercorn's defaults."""
    server = ServerConfig(
        host="0.0.0.0", port=9000, workers=3, worker_class="uvloop",
        keep_alive_timeout=7.5, read_timeout=12.0, graceful_timeout=4.0,
    )
    hc = hypercorn_config(server)
    assert hc.bind == ["0.0.0.0:9000"]
    assert (hc.workers, hc.worker_class) == (3, "uvloop")
    assert (hc.keep_alive_timeout, hc.read_timeout, hc.graceful_timeout) == (7.5, 12.0, 4.0)
    assert hc.h11_max_incomplete_size == 16 * 1024
    assert hc.application_path == ASGI_PATH
    assert hc.include_server_header is False


def test_ipv6_hosts_are_bracketed() -> None:
    """An IPv6 literal host becomes a valid hypercorn bind address."""
    assert bind_address("::1", 8000) == "[::1]:8000"
    assert bind_address("127.0.0.1", 8000) == "127.0.0.1:8000"


def test_busy_port_is_a_clean_error(tmp_path: Path) -> None:
    """A port already in use is reported in one line (exit 1) before Baton starts, not as a traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (tmp_path / "baton.toml").write_text(f'issuer = "http://127.0.0.1:{port}"\n[server]\nport = {port}\n')
        result = run_baton("serve", "--config", "baton.toml", cwd=tmp_path)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_uncreatable_key_file_is_a_config_error(tmp_path: Path) -> None:
    """A signing key path that cannot be created stops start-up with exit 2 naming signing.keys."""
    (tmp_path / "not-a-dir").write_text("")
    (tmp_path / "baton.toml").write_text(
        'issuer = "http://127.0.0.1:8000"\n[signing]\nkeys = "not-a-dir/keys.json"\n'
    )
    result = run_baton("serve", "--config", "baton.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert "signing.keys" in result.stderr
    assert "Traceback" not in result.stderr
