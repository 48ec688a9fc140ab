"""12-factor configuration: every key from the environment as ``BATON__SECTION__KEY``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.config import ConfigError, load_config

BASE = b'issuer = "https://sts.example.com"\n[tokens]\nttl = 300\n'


def test_typed_values_from_the_environment() -> None:
    """Numbers, booleans, literals and JSON lists are converted to each key's type; the file's value is replaced."""
    config = load_config(BASE, environ={
        "BATON__TOKENS__TTL": "600",
        "BATON__SERVER__TRUST_FORWARDED_FOR": "true",
        "BATON__SIGNING__ROTATE_DAYS": "1.5",
        "BATON__LOGGING__FORMAT": "json",
        "BATON__STORE__URL": "postgresql://db/baton",
        "BATON__TRUSTED_ISSUERS": '[{"issuer": "https://idp.example.com", "audiences": ["sts"]}]',
    })
    assert config.tokens.ttl == 600
    assert config.server.trust_forwarded_for is True
    assert config.signing.rotate_days == 1.5
    assert config.logging.format == "json"
    assert config.store.url == "postgresql://db/baton"
    assert config.trusted_issuers[0].audiences == ["sts"]


def test_named_overrides_still_work() -> None:
    """The original variables (BATON_STORE_URL …) keep working beside the generic ones."""
    config = load_config(BASE, environ={"BATON_STORE_URL": "postgresql://a/b", "BATON__CACHE__URL": "redis://c:6379/0"})
    assert (config.store.url, config.cache.url) == ("postgresql://a/b", "redis://c:6379/0")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("BATON__TOKENS__TTL", "long", "BATON__TOKENS__TTL: Expected `int`"),
        ("BATON__TOKENS__TTL", "0", "BATON__TOKENS__TTL: Expected `int` >= 1"),
        ("BATON__TOKENS__TTLX", "1", "BATON__TOKENS__TTLX: no configuration key tokens.ttlx"),
        ("BATON__ISSUER__HOST", "x", "BATON__ISSUER__HOST: issuer is not a table"),
        ("BATON__CLIENTS", "[{", "BATON__CLIENTS:"),
    ],
)
def test_a_bad_variable_is_named(name: str, value: str, message: str) -> None:
    """Unknown keys and bad values stop loading with the variable's name in the message."""
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(BASE, environ={name: value})


@settings(max_examples=40, deadline=None)
@given(ttl=st.integers(min_value=1, max_value=10**9), workers=st.integers(min_value=1, max_value=64))
def test_any_valid_integer_round_trips(ttl: int, workers: int) -> None:
    """Whatever integer a deployment sets, the loaded config holds exactly that value."""
    config = load_config(BASE, environ={"BATON__TOKENS__TTL": str(ttl), "baton__server__workers".upper(): str(workers)})
    assert (config.tokens.ttl, config.server.workers) == (ttl, workers)
