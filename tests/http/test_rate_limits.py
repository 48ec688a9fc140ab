"""Per-client and per-client+subject rate limits on /token: 429, Retry-After, recorded."""

from __future__ import annotations

import pytest

from app.config import config_from_dict
from tests.support.fake_issuer import FakeIssuer
from tests.support.harness import Harness, base_config


@pytest.fixture(params=["memory", "redis"])
def cache_settings(request, key_prefix):
    """The in-process cache, or Redis (fails under CI when Redis is unreachable)."""
    if request.param == "memory":
        return {"url": "memory://"}
    return {"url": request.getfixturevalue("redis_url"), "prefix": key_prefix}


def limited(tmp_path, cache_settings, **limits) -> Harness:
    idp = FakeIssuer("https://idp.test")
    raw = base_config(tmp_path, idp, cache=cache_settings)
    raw["clients"][0].update(limits)
    return Harness(config_from_dict(raw), idp)


async def test_client_rate_limit(tmp_path, cache_settings):
    """With burst 2 and a slow rate, the third exchange in a row is 429 with Retry-After."""
    async with limited(tmp_path, cache_settings, rate=0.01, burst=2) as baton:
        statuses = [(await baton.exchange(baton.user_token(), audience="orders")).status_code for _ in range(2)]
        assert statuses == [200, 200]
        refused = await baton.exchange(baton.user_token(), audience="orders")
        assert refused.status_code == 429
        assert refused.json()["error"] == "slow_down"
        assert int(refused.headers["retry-after"]) >= 1
        denial = (await baton.events("ExchangeDenied"))[-1]
        assert denial.reason == "rate_limited" and denial.client_id == "frontend"
        assert len(await baton.events("TokenExchanged")) == 2
        other = await baton.exchange(baton.user_token(), client="poster", audience="orders")
        assert other.status_code == 200, "another client's budget is untouched"


async def test_client_and_subject_rate_limit(tmp_path, cache_settings):
    """A per-subject limit stops one user's exchanges while another user's still pass."""
    async with limited(tmp_path, cache_settings, rate=100, burst=100, subject_rate=0.01, subject_burst=1) as baton:
        assert (await baton.exchange(baton.user_token("alice"), audience="orders")).status_code == 200
        refused = await baton.exchange(baton.user_token("alice"), audience="orders")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert (await baton.exchange(baton.user_token("bob"), audience="orders")).status_code == 200


async def test_two_instances_share_one_limit_through_redis(tmp_path, redis_url, key_prefix):
    """Two Baton instances on one Redis: together they allow the client's burst once, not once each."""
    idp = FakeIssuer("https://idp.test")
    cache = {"url": redis_url, "prefix": key_prefix}
    raw_a = base_config(tmp_path / "a", idp, cache=cache)
    raw_b = base_config(tmp_path / "b", idp, cache=cache)
    for raw in (raw_a, raw_b):
        raw["clients"][0].update(rate=0.01, burst=4)
    async with Harness(config_from_dict(raw_a), idp) as first, Harness(config_from_dict(raw_b), idp) as second:
        statuses = []
        for i in range(10):
            instance = first if i % 2 == 0 else second
            statuses.append((await instance.exchange(instance.user_token(), audience="orders")).status_code)
        assert statuses.count(200) == 4
        assert statuses.count(429) == 6
