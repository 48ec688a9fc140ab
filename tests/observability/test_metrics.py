"""/metrics after a representative run: the names and labels operators alert on."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.harness import make_harness


def _samples(text: str) -> dict[str, list[dict[str, str]]]:
    found: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(dict(sample.labels))
    return found


async def test_metrics_names_and_labels(tmp_path: Path) -> None:
    """Exchanges by outcome/reason, latency per endpoint, batches, key cache per issuer, store/Redis errors, keys."""
    async with make_harness(tmp_path) as h:
        assert (await h.exchange(h.user_token(), audience="billing", scope="billing:read")).status_code == 200
        assert (await h.exchange(h.user_token(), audience="orders", scope="orders:read")).status_code == 200
        assert (await h.exchange(h.user_token(), audience="ledger")).status_code == 400
        await h.http.get("/jwks")
        response = await h.http.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    exchanges = samples["baton_exchanges_total"]
    assert {"outcome": "issued", "reason": ""} in exchanges
    assert any(s["outcome"] == "denied" and s["reason"] for s in exchanges)
    endpoints = {s["endpoint"] for s in samples["baton_request_duration_seconds_bucket"]}
    assert {"/token", "/jwks"} <= endpoints
    assert "baton_store_batch_seconds_bucket" in samples and "baton_store_batch_size_bucket" in samples
    cache = samples["baton_key_cache_total"]
    assert {"kind": "issuer", "owner": "https://idp.test", "result": "refresh"} in cache
    assert {"kind": "issuer", "owner": "https://idp.test", "result": "hit"} in cache
    families = {f.name: f.type for f in text_string_to_metric_families(response.text)}
    for name in ("baton_rate_limited", "baton_redis_errors", "baton_postgres_errors", "baton_store_errors",
                 "baton_signing_key_reloads"):
        assert families.get(name) == "counter", name
    assert {"state": "active"} in samples["baton_signing_keys"]
