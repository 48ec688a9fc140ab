"""What a key file may hold: only asymmetric keys of an allowed alg load, are published, or are written.

A symmetric key's public half is its secret, so an ``oct`` entry in any state would put the secret in
``GET /jwks``; such a file must not load, and ``baton keys`` must not write one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jws
from joserfc.jwk import OctKey, RSAKey, import_key

from app.config import load_config
from app.key_lifecycle import KEY_STREAM
from app.keys import KeyError_, KeyRing, SIGNING_ALGS, generate_key, public_jwk, read_key_file, write_key_file
from eventstore import open_store
from ops.cli import main

_ES256 = generate_key("ES256")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


def _oct(alg: str, state: str) -> dict:
    key = dict(OctKey.generate_key(256).as_dict(private=True))
    return {**key, "kid": f"oct-{alg}", "alg": alg, "use": "sig", "baton_state": state}


@pytest.mark.parametrize("alg", ["HS256", "none", "ES256"])
@pytest.mark.parametrize("state", ["active", "next", "retired", "removed"])
def test_a_symmetric_key_in_any_state_is_refused(alg: str, state: str) -> None:
    """An oct key never loads, whatever alg it claims and whatever state it is in (it would be published)."""
    keys = [_ES256, _oct(alg, state)] if state != "active" else [_oct(alg, state)]
    with pytest.raises(KeyError_, match=f"signing key oct-{alg}: alg .* is not one of|oct-{alg} does not fit"):
        KeyRing(keys)


@pytest.mark.parametrize("entry", [{**_ES256, "alg": ["ES256"]}, {**_ES256, "alg": None}, ["not", "an", "object"], "k"])
def test_a_malformed_entry_is_refused_cleanly(entry: object) -> None:
    """An alg that is no string, or an entry that is no object, is a KeyError_, not a crash of the CLI or start-up."""
    with pytest.raises(KeyError_):
        KeyRing([_ES256, entry])  # type: ignore[list-item]


@pytest.mark.parametrize("alg", sorted({"HS256", "HS512", "none", "ES256K", "Ed448", "RS384", "", "es256"}))
def test_an_alg_outside_the_allow_list_is_refused(alg: str) -> None:
    """Only the algorithms Baton signs with load, even where the key type could do the other alg."""
    assert alg not in SIGNING_ALGS
    with pytest.raises(KeyError_, match="not one of"):
        KeyRing([{**_ES256, "alg": alg}])


@pytest.mark.parametrize("state", ["active", "retired"])
def test_an_encryption_key_is_refused_in_any_state(state: str) -> None:
    """A key marked ``use: enc`` is not published as a signature key, even retired."""
    keys = [_ES256, {**generate_key("ES256"), "use": "enc", "baton_state": state}]
    with pytest.raises(KeyError_, match='use .enc. is not "sig"'):
        KeyRing(keys)


def test_a_short_rsa_key_is_refused() -> None:
    """RSA below 2048 bits does not load (verifiers would refuse its tokens anyway)."""
    small = dict(RSAKey.generate_key(1024, private=True, auto_kid=True).as_dict(private=True))
    with pytest.raises(KeyError_, match="RSA size"):
        KeyRing([{**small, "alg": "RS256", "use": "sig"}])


def test_an_active_or_next_key_must_be_private() -> None:
    """A public-only key cannot sign, now or after promotion; a removed key's public tombstone still loads."""
    public_only = public_jwk(generate_key("ES256"))
    with pytest.raises(KeyError_, match="cannot sign"):
        KeyRing([{**public_only, "baton_state": "active"}])
    with pytest.raises(KeyError_, match="cannot sign"):
        KeyRing([_ES256, {**public_only, "baton_state": "next"}])
    ring = KeyRing([_ES256, {**public_only, "baton_state": "removed"}])
    assert ring.kid == _ES256["kid"]


def test_key_ops_must_allow_signing_and_are_not_published() -> None:
    """key_ops without "sign" is refused; with it the key signs, and the published half carries no key_ops."""
    with pytest.raises(KeyError_, match="cannot sign"):
        KeyRing([{**_ES256, "key_ops": ["verify"]}])
    ring = KeyRing([{**_ES256, "key_ops": ["sign"]}])
    [published] = ring.public_jwks["keys"]
    assert "key_ops" not in published and "d" not in published
    token = ring.sign({"sub": "u"})
    assert json.loads(jws.deserialize_compact(token, import_key(published), algorithms=["ES256"]).payload) == {"sub": "u"}


def test_a_legacy_eddsa_key_file_still_signs() -> None:
    """Files written before RFC 9864 hold alg "EdDSA": they load and sign tokens their published key verifies."""
    legacy = {**generate_key("Ed25519"), "alg": "EdDSA"}
    ring = KeyRing([legacy])
    token = ring.sign({"sub": "u"})
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "EdDSA"
    [published] = ring.public_jwks["keys"]
    verified = jws.deserialize_compact(token, import_key(published), algorithms=["EdDSA"])
    assert json.loads(verified.payload) == {"sub": "u"}


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=6), st.sampled_from(["at+jwt", "x", "baton-checkpoint+jwt"]))
def test_every_segment_is_unpadded_base64url(claims: dict, typ: str) -> None:
    """Compact JWS segments use the URL-safe alphabet without "=" padding (RFC 7515 §2), whatever the lengths."""
    segments = KeyRing([_ES256]).sign(claims, typ=typ).split(".")
    assert len(segments) == 3
    assert all(_SEGMENT.fullmatch(s) for s in segments)


def test_keys_commands_refuse_to_write_a_file_that_would_not_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A hand-added oct key makes promote fail: the file keeps its bytes and no key event is recorded."""
    keys_path = tmp_path / "keys.json"
    config_path = tmp_path / "baton.toml"
    config_path.write_text(
        f'issuer = "https://baton.test"\n[store]\nurl = "sqlite:///{tmp_path}/events.db"\n'
        f'[signing]\nkeys = "{keys_path}"\n'
    )
    write_key_file(keys_path, [_ES256, _oct("HS256", "next")])
    before = keys_path.read_bytes()
    assert main(["keys", "promote", "-c", str(config_path), "--force"]) == 2
    assert "would not load" in capsys.readouterr().err
    assert keys_path.read_bytes() == before

    async def recorded() -> list:
        store = open_store(load_config(config_path).store.url)
        await store.open()
        try:
            return list(await store.read_stream(KEY_STREAM))
        finally:
            await store.close()

    assert asyncio.run(recorded()) == []
    assert read_key_file(keys_path)[1]["baton_state"] == "next"
