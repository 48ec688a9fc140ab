"""Security properties that are not single refusals: the catalogue's shape, lifetimes, claim mapping, key fetches."""

from __future__ import annotations

import re

import pytest

from app.config import ConfigError, config_from_dict
from tests.support.fake_issuer import FakeIssuer
from tests.support.harness import base_config, decode_claims, make_harness

from .catalogue import CASES, CATEGORIES, TOKEN_ATTACKS


def test_catalogue_is_complete() -> None:
    """At least 150 cases, unique ids, every category present, every token attack tried in both roles."""
    ids = [c.id for c in CASES]
    assert len(ids) >= 150
    assert len(set(ids)) == len(ids)
    assert {c.category for c in CASES} == set(CATEGORIES)
    for attack in TOKEN_ATTACKS:
        assert {f"{attack.id}.subject", f"{attack.id}.actor"} <= set(ids)
    assert all(c.cve is None or re.fullmatch(r"CVE-\d{4}-\d{4,}", c.cve) for c in CASES)


async def test_a_chain_never_extends_the_lifetime(tmp_path) -> None:
    """Each hop's token expires no later than the token it was exchanged from, however long the audience ttl."""
    async with make_harness(tmp_path, tokens={"ttl": 3000, "max_depth": 3}) as baton:
        subject = baton.user_token()
        t1 = (await baton.exchange(subject, audience="orders")).json()["access_token"]
        t2 = (await baton.exchange(t1, client="orders", audience="ledger")).json()["access_token"]
        assert decode_claims(t1)["exp"] <= decode_claims(subject)["exp"]
        assert decode_claims(t2)["exp"] <= decode_claims(t1)["exp"]


async def test_subject_claims_cannot_overwrite_what_baton_sets(tmp_path) -> None:
    """A subject token carrying client_id, cnf, aud lists or nbf of its own gets Baton's values in the issued token."""
    async with make_harness(tmp_path) as baton:
        subject = baton.user_token(client_id="admin-console", cnf={"jkt": "attacker"}, email="a@example.com",
                                   department={"iss": "https://evil.test"})
        body = (await baton.exchange(subject, audience="billing")).json()
        claims = decode_claims(body["access_token"])
        assert claims["client_id"] == "frontend" and claims["aud"] == "billing" and claims["iss"] == "https://baton.test"
        assert "cnf" not in claims
        assert claims["dept"] == {"iss": "https://evil.test"}  # renamed as data, never promoted to a claim Baton owns


@pytest.mark.parametrize("mapping", [{"copy": ["act"]}, {"rename": {"department": "sub"}}, {"set": {"scope": "all"}},
                                     {"set": {"exp": 9_999_999_999}}, {"copy": ["may_act"]}])
def test_claim_mapping_may_not_write_reserved_claims(tmp_path, mapping) -> None:
    """A configuration whose claim mapping writes a reserved claim (act, sub, scope, exp …) does not load."""
    raw = base_config(tmp_path, FakeIssuer())
    raw["audiences"][0]["claims"] = mapping
    with pytest.raises(ConfigError, match="reserved"):
        config_from_dict(raw)


async def test_unknown_kid_storm_fetches_at_most_once_per_interval(tmp_path) -> None:
    """Fifty tokens with fifty unknown kids cause one key-set refresh, not fifty."""
    async with make_harness(tmp_path) as baton:
        assert (await baton.exchange(baton.user_token(), audience="orders")).status_code == 200
        before = baton.idp.jwks_fetches
        for i in range(50):
            token = baton.idp.mint(baton.idp.claims(scope="orders:read"), header_overrides={"kid": f"storm-{i}"})
            response = await baton.exchange(token, audience="orders")
            assert response.status_code == 400
        assert baton.idp.jwks_fetches - before <= 1
        assert len(await baton.events("TokenExchanged")) == 1
