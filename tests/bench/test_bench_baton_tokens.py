"""The tokens Baton issued for the chain3 and introspection scenarios are issued anew for each of them.

They live ``tokens.ttl`` (300 s): issued once per backend, a full run reached its
later scenarios with them expired and measured nothing but 400s. They are issued
again before any measurement they would not outlive, and a bench whose
measurements last longer than 300 s gives its Baton a longer ``tokens.ttl``.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import ops.bench as bench
from ops.bench import Options, Tokens
from ops.bench_load import Workload


def test_scenarios_presenting_baton_tokens_get_tokens_issued_after_the_scenario_before(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each chain3 or introspection run presents tokens issued after every run of the scenarios before it."""
    events: list[tuple[str, Any]] = []  # in order: ("issued", generation) and ("measured", (scenario, generation))
    generation = 0

    def issue(url: str, setup: Any, tokens: Tokens, chains: int) -> None:
        nonlocal generation
        generation += 1
        tokens.depth2 = [f"depth2-gen{generation}"]
        tokens.issued = [f"issued-gen{generation}"]
        tokens.baton_tokens_expire = time.time() + 300
        events.append(("issued", generation))

    def measure(name: str, scenario: str, url: str, work: Workload, connections: int, *rest: Any) -> Any:
        presented = work.bodies[0]
        generation_presented = int(presented.rsplit("gen", 1)[1].split("&")[0]) if "gen" in presented else None
        events.append(("measured", (scenario, generation_presented)))
        return SimpleNamespace(exchanges_per_s=1.0, p99_ms=1.0, errors=0)

    monkeypatch.setattr(bench, "issue_baton_tokens", issue)
    monkeypatch.setattr(bench, "measure", measure)
    monkeypatch.setattr(bench, "run_load", lambda *a, **k: None)
    setup = bench.BenchSetup.create(tmp_path)
    tokens = Tokens(users=["user-token"], actors=["actor-token"], bad=["bad-token"])
    scenarios = ["chain3", "impersonation", "introspection", "chain3"]
    options = Options(concurrencies=[8, 32], scenarios=scenarios, log=lambda _: None)

    bench._run_scenarios("embedded", "http://unused", setup, tokens, options, None, None, lambda rows: None)

    measured = [value for kind, value in events if kind == "measured"]
    assert [s for s, _ in measured] == [s for s in scenarios for _ in (8, 32)]
    for index, (kind, value) in enumerate(events):
        if kind == "measured" and value[0] in bench.USES_BATON_TOKENS:
            latest = max(v for k, v in events[:index] if k == "issued")
            previous_runs = [i for i, (k, v) in enumerate(events[:index]) if k == "measured" and v[0] != value[0]]
            issued_at = max(i for i, (k, v) in enumerate(events[:index]) if k == "issued")
            assert value[1] == latest, "a scenario presents the tokens issued last"
            assert not previous_runs or issued_at > max(previous_runs), "issued after the scenario before it ran"
    assert sum(1 for kind, _ in events if kind == "issued") == 3  # once per such scenario, never for impersonation


@pytest.mark.parametrize(
    "lives,issues,warned",
    [(3600.0, 1, False), (10.0, 4, True)],
    ids=["outlive-every-measurement", "expire-within-one"],
)
def test_tokens_that_would_expire_during_a_measurement_are_issued_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, lives: float, issues: int, warned: bool
) -> None:
    """Tokens that outlive a measurement are kept; tokens that do not are issued again before it, with a warning."""
    issued: list[float] = []

    def issue(url: str, setup: Any, tokens: Tokens, chains: int) -> None:
        tokens.depth2, tokens.issued = ["depth2"], ["issued"]
        tokens.baton_tokens_expire = time.time() + lives
        issued.append(tokens.baton_tokens_expire)

    monkeypatch.setattr(bench, "issue_baton_tokens", issue)
    monkeypatch.setattr(bench, "measure", lambda *a: SimpleNamespace(exchanges_per_s=1.0, p99_ms=1.0, errors=0))
    monkeypatch.setattr(bench, "run_load", lambda *a, **k: None)
    lines: list[str] = []
    options = Options(concurrencies=[8, 32, 64], scenarios=["introspection"], log=lines.append)
    tokens = Tokens(users=["u"], actors=["a"], bad=["b"])

    bench._run_scenarios("embedded", "http://unused", bench.BenchSetup.create(tmp_path), tokens, options, None, None,
                         lambda rows: None)

    # once before the scenario (and its warm-up), then before each of the 3 measurements that would outlive them
    assert len(issued) == issues
    assert sum("expire within" in line for line in lines) == (1 if warned else 0)  # said once, not per run


@pytest.mark.parametrize("duration,warned", [(5.0, False), (400.0, True)])
def test_a_run_longer_than_client_assertions_live_is_warned_of(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, duration: float, warned: bool
) -> None:
    """Baton refuses assertions living over 300 s, so a private_key_jwt run longer than theirs says so."""
    monkeypatch.setattr(bench, "workload", lambda *a: Workload("/token", {}, ["body"], single_use=True))
    monkeypatch.setattr(bench, "measure", lambda *a: SimpleNamespace(exchanges_per_s=1.0, p99_ms=1.0, errors=0))
    lines: list[str] = []
    options = Options(concurrencies=[8], duration=duration, scenarios=["private_key_jwt"], log=lines.append)
    tokens = Tokens(users=["u"], actors=["a"], bad=["b"])
    bench._run_scenarios("embedded", "http://unused", bench.BenchSetup.create(tmp_path), tokens, options, None, None,
                         lambda rows: None)
    assert any("client assertions live 280 s" in line for line in lines) is warned


@pytest.mark.parametrize("duration,ttl", [(5.0, 300), (2.0, 300), (600.0, 721)])
def test_the_bench_servers_token_ttl_outlives_a_measurement(tmp_path: Path, duration: float, ttl: int) -> None:
    """Baton under test keeps the production ttl unless a measurement (warm-up, duration, probes) lasts longer."""
    options = Options(duration=duration)
    backend = bench.Backend(name="embedded", store_url="sqlite:///unused", cache_url="memory://")
    config = bench._server_config(bench.BenchSetup.create(tmp_path), options, backend, port=1)
    assert config["tokens"]["ttl"] == ttl
    assert config["tokens"]["ttl"] > bench.measurement_span(options)


def test_subject_tokens_outlive_a_run_within_baton_s_subject_lifetime_limit(tmp_path: Path) -> None:
    """The pre-minted tokens live 12 h, which Baton's default max_subject_lifetime (a day) accepts."""
    from app.config import TokensConfig

    setup = bench.BenchSetup.create(tmp_path)
    tokens = bench.mint_tokens(setup, users=2)
    lives = bench._expiry(tokens.users[0]) - time.time()
    assert 12 * 3600 - 60 < lives <= 12 * 3600
    assert bench.SUBJECT_TOKEN_LIFETIME <= TokensConfig().max_subject_lifetime
