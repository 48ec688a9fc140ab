"""``baton keys generate`` and ``baton hash-secret``."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.keys import KeyRing, read_key_file
from app.secrets import verify_secret
from ops import cmd_keys
from ops.cli import main


@pytest.mark.parametrize("alg", ["ES256", "RS256", "PS256", "EdDSA"])
def test_keys_generate_writes_a_loadable_private_key_set(
    alg: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The key file is mode 0600, KeyRing loads it, and the printed kid is the active key's."""
    path = tmp_path / "keys" / "signing.json"
    assert main(["keys", "generate", "--alg", alg, "-o", str(path)]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ring = KeyRing(read_key_file(path))
    assert capsys.readouterr().out.strip() == ring.kid
    assert "d" in read_key_file(path)[0]  # the private half is there
    assert all("d" not in k for k in ring.public_jwks["keys"])


def test_keys_generate_refuses_to_replace_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An existing key file is never silently replaced (its tokens would stop verifying)."""
    path = tmp_path / "signing.json"
    assert main(["keys", "generate", "-o", str(path)]) == 0
    before = path.read_bytes()
    assert main(["keys", "generate", "-o", str(path)]) == 2
    assert "--force" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert main(["keys", "generate", "-o", str(path), "--force"]) == 0
    assert path.read_bytes() != before


def test_keys_without_action_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    """``baton keys`` alone shows its actions and exits 2."""
    assert main(["keys"]) == 2
    assert "generate" in capsys.readouterr().out


@settings(max_examples=5, deadline=None)
@given(secret=st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40))
def test_hash_secret_from_stdin_verifies(secret: str) -> None:
    """The printed hash verifies against the secret read from stdin, and not against another."""
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stdin", io.StringIO(secret + "\n"))
        mp.setattr("sys.stdout", out)
        assert main(["hash-secret", "--secret-stdin"]) == 0
    encoded = out.getvalue().strip()
    assert verify_secret(secret, encoded)
    assert not verify_secret(secret + "x", encoded)


def test_hash_secret_prompts_twice(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Without flags the secret is read twice with getpass; matching entries are hashed."""
    answers = iter(["s3cret-value", "s3cret-value"])
    monkeypatch.setattr(cmd_keys.getpass, "getpass", lambda prompt="": next(answers))
    assert main(["hash-secret"]) == 0
    assert verify_secret("s3cret-value", capsys.readouterr().out.strip())


def test_hash_secret_mismatch_and_empty_fail(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Two different entries, or an empty secret, exit 2 and print no hash."""
    answers = iter(["one", "two"])
    monkeypatch.setattr(cmd_keys.getpass, "getpass", lambda prompt="": next(answers))
    assert main(["hash-secret"]) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["hash-secret", "--secret-stdin"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "differ" in captured.err and "empty" in captured.err


def test_hash_secret_generate(capsys: pytest.CaptureFixture[str]) -> None:
    """--generate prints a fresh random secret and a hash that verifies it."""
    assert main(["hash-secret", "--generate"]) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.strip().splitlines())
    assert len(lines["secret"]) >= 32
    assert verify_secret(lines["secret"], lines["secret_hash"])
