"""ops/deploy: the Kubernetes manifests pass the Kubernetes schemas; the configs they carry load."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from app.config import load_config
from app.server import create_app
from ops.serving import hypercorn_config

kubernetes_validate = pytest.importorskip("kubernetes_validate")
yaml = pytest.importorskip("yaml")

DEPLOY = Path(__file__).resolve().parents[2] / "ops" / "deploy"
VERSION = kubernetes_validate.utils.latest_version()


def _documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()) if d]


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    return next(d for d in _documents() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))


@pytest.mark.parametrize("doc", _documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_passes_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    """Each manifest validates (strict: no unknown fields) against the newest schemas kubernetes-validate ships."""
    kubernetes_validate.validate(doc, VERSION, strict=True)


def test_the_schema_check_catches_a_mistake() -> None:
    """A misspelled probe field fails the same check (the test above can fail)."""
    broken = copy.deepcopy(_one("Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/readyz"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSION, strict=True)


def test_the_example_has_every_required_piece() -> None:
    """Deployment with readiness/liveness probes on Baton's routes, ConfigMap, Secrets, Service, PodDisruptionBudget."""
    kinds = sorted(d["kind"] for d in _documents())
    assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Secret", "Secret", "Service"]
    container = _one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    paths = {r.path for r in create_app(load_config(_configmap_toml(), environ={})).routes}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" in paths
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz" in paths
    pdb = _one("PodDisruptionBudget")
    assert pdb["spec"]["selector"] == _one("Deployment")["spec"]["selector"]
    assert pdb["spec"]["minAvailable"] < _one("Deployment")["spec"]["replicas"]


def _configmap_toml() -> bytes:
    return _one("ConfigMap")["data"]["baton.toml"].encode()


def test_configmap_and_secret_make_a_valid_configuration() -> None:
    """baton.toml from the ConfigMap plus the Secret's environment loads; the grace period fits the pod's."""
    environ = _one("Secret", "baton-env")["stringData"]
    config = load_config(_configmap_toml(), environ=environ)
    assert config.store.url.startswith("postgresql://baton:")
    assert [c.client_id for c in config.clients] == ["frontend"]
    grace = _one("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert config.server.drain_seconds + config.server.graceful_timeout < grace


def test_production_example_loads_on_postgresql_and_redis() -> None:
    """ops/deploy/baton.production.toml is a valid configuration for PostgreSQL + Redis."""
    config = load_config(DEPLOY / "baton.production.toml", environ={})
    assert config.store.url.startswith("postgresql://")
    assert config.cache.url.startswith("redis://")
    assert config.logging.format == "json"
    assert config.signing.jwks_max_age() < config.signing.promote_after


def test_hypercorn_settings_match_the_measured_choices() -> None:
    """ops/deploy/hypercorn.toml sets read and graceful timeouts and uvloop, as baton serve does."""
    from hypercorn.config import Config as HypercornConfig

    hc = HypercornConfig.from_toml(DEPLOY / "hypercorn.toml")
    served = hypercorn_config(load_config(DEPLOY / "baton.production.toml", environ={}).server)
    assert hc.read_timeout and hc.graceful_timeout == served.graceful_timeout
    assert hc.worker_class == served.worker_class == "uvloop"
    assert hc.include_server_header is False


def test_systemd_unit_runs_baton_serve_with_a_stop_timeout_beyond_the_grace_period() -> None:
    """The unit starts ``baton serve`` and waits longer on stop than drain + graceful timeout."""
    unit = dict(
        line.split("=", 1) for line in (DEPLOY / "baton.service").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert " serve --config " in unit["ExecStart"]
    config = load_config(DEPLOY / "baton.production.toml", environ={})
    assert int(unit["TimeoutStopSec"]) > config.server.drain_seconds + config.server.graceful_timeout
