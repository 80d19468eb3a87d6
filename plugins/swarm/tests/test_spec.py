"""Settings and service specs, without an engine: what deploy would send."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr, ValidationError

from shipway.domain import ImageRef, Release
from shipway_swarm import spec
from shipway_swarm.settings import SwarmSettings, memory_bytes

DIGEST = "sha256:" + "a" * 64


def settings(**values: object) -> SwarmSettings:
    return SwarmSettings(**{"kind": "swarm", **values})  # type: ignore[arg-type]


def release(**values: object) -> Release:
    base: dict[str, object] = {
        "app": "scorer",
        "environment": "prod",
        "image": ImageRef(repository="reg.example:5000/scorer", digest=DIGEST),
        "port": 9123,
        "health": "/ready",
        "replicas": 3,
        "env": {"LOG_LEVEL": "info"},
        "labels": {"io.shipway.model.version": "4", "org.opencontainers.image.revision": "abc"},
    }
    base.update(values)
    return Release(**base)  # type: ignore[arg-type]


def test_the_proxy_needs_a_stable_port() -> None:
    with pytest.raises(ValidationError, match=r"proxy\.enabled needs published_port"):
        settings(proxy={"enabled": True})


def test_dnsrr_cannot_publish_through_the_routing_mesh() -> None:
    with pytest.raises(ValidationError, match="dnsrr cannot publish through the ingress routing mesh"):
        settings(endpoint_mode="dnsrr", publish_mode="ingress")
    assert settings(endpoint_mode="dnsrr", publish_mode="host", published_port=8080).publish_mode == "host"


def test_the_deadline_outlasts_the_old_tasks_stop() -> None:
    """A release waits for the old tasks to stop: a deadline within stop_grace_period could never be met."""
    with pytest.raises(ValidationError, match=r"deadline \(10s\) must be longer than stop_grace_period \(10s\)"):
        settings(deadline=10, stop_grace_period=10)
    assert settings(deadline=11, stop_grace_period=10).deadline == 11


def test_unknown_keys_and_bad_memory_are_refused() -> None:
    with pytest.raises(ValidationError, match="replica"):
        settings(replica=2)
    with pytest.raises(ValidationError, match="not a memory size"):
        settings(resources={"limits": {"memory": "lots"}})


def test_memory_sizes() -> None:
    assert memory_bytes("256M") == 256_000_000
    assert memory_bytes("1Gi") == 2**30
    assert memory_bytes("512MiB") == 512 * 2**20
    assert memory_bytes(1024) == 1024


def test_service_names_fit_swarm_limits() -> None:
    assert spec.service_name("Scorer_API", "prod") == "scorer-api-prod"
    long = spec.service_name("a" * 60, "production")
    assert len(long) <= 50
    assert long != spec.service_name("a" * 60, "staging")


def test_health_check_comes_from_the_release() -> None:
    test = spec.health_test(9123, "/ready", settings())
    assert test[0] == "CMD-SHELL"
    assert "http://127.0.0.1:9123/ready" in test[1]
    assert "python3" in test[1]  # an image with neither wget nor curl
    assert spec.health_test(9123, "/ready", settings(health_command=["/bin/check", "--quick"])) == [
        "CMD",
        "/bin/check",
        "--quick",
    ]


def test_task_template_pins_the_digest_and_carries_the_release() -> None:
    cfg = settings(constraints=["node.role==worker"], resources={"limits": {"cpus": 0.5, "memory": "256M"}})
    template = spec.task_template(release(), cfg, "shipway-scorer-prod", [])
    container = template["ContainerSpec"]
    assert container["Image"] == f"reg.example:5000/scorer@{DIGEST}"
    assert container["Env"] == ["LOG_LEVEL=info"]
    assert container["Labels"]["io.shipway.model.version"] == "4"
    assert container["Healthcheck"]["Interval"] == 2 * spec.NS
    assert template["Placement"]["Constraints"] == ["node.role==worker"]
    assert template["Resources"]["Limits"] == {"NanoCPUs": 500_000_000, "MemoryBytes": 256_000_000}
    assert [n["Target"] for n in template["Networks"]] == ["shipway-scorer-prod"]


def test_secret_values_never_enter_the_spec() -> None:
    rel = release(secrets={"api_token": SecretStr("s3cr3t-value")})
    template = spec.task_template(rel, settings(), "net", [])
    body = spec.service_body("scorer-prod", template, spec.app_labels(rel, "app", 1), 3, spec.endpoint_spec(
        "vip", 9123, "ingress", None, publish=False), settings())  # fmt: skip
    assert "s3cr3t-value" not in json.dumps(body)


def test_policy_is_start_first_with_swarm_rollback_and_compared_key_by_key() -> None:
    cfg = settings(monitor=7, max_failure_ratio=0.2)
    update = spec.update_config(cfg)
    assert update["Order"] == "start-first"
    assert update["FailureAction"] == "rollback"
    assert update["Monitor"] == 7 * spec.NS
    assert spec.rollback_config(cfg)["Order"] == "start-first"
    live = {"UpdateConfig": dict(update), "RollbackConfig": dict(spec.rollback_config(cfg))}
    assert spec.policy_differs(live, cfg) is False
    assert spec.policy_differs(live, settings(monitor=8, max_failure_ratio=0.2)) is True
    live["UpdateConfig"]["Order"] = "stop-first"
    assert spec.policy_differs(live, cfg) is True


def test_endpoint_spec_publishes_in_the_configured_mode() -> None:
    host = spec.endpoint_spec("dnsrr", 9123, "host", 8080)
    assert host["Mode"] == "dnsrr"
    assert host["Ports"] == [{"PublishedPort": 8080, "TargetPort": 9123, "Protocol": "tcp", "PublishMode": "host"}]
    assert "Ports" not in spec.endpoint_spec("vip", 9123, "ingress", 8080, publish=False)
    per_task = spec.endpoint_spec("dnsrr", 9123, "host", None)  # Swarm picks a port for each task
    assert per_task["Ports"] == [{"TargetPort": 9123, "Protocol": "tcp", "PublishMode": "host"}]
