"""`shipway doctor` lines of the kubernetes orchestrator: the objects shipway.yaml names exist."""

from __future__ import annotations

from typing import Any


def test_named_secrets_and_configmaps_are_checked_in_the_namespace(k8s_factory: Any) -> None:
    orch = k8s_factory(image_pull_secret="regcred", env_from_secrets=["db"], env_from_configmaps=["flags"])
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "data": {}}
    orch.request("POST", "/api/v1/namespaces/default/secrets", body=secret)
    checks = {c.detail.split(" (")[0]: c for c in orch.doctor_checks()}
    assert sorted(checks) == ["ConfigMap default/flags", "Secret default/db", "Secret default/regcred"]
    assert checks["Secret default/db"].ok
    assert not checks["Secret default/regcred"].ok
    assert checks["Secret default/regcred"].detail.endswith("(orchestrator.image_pull_secret) not found")
    assert "create secret docker-registry regcred" in checks["Secret default/regcred"].fix
    assert not checks["ConfigMap default/flags"].ok
    assert "create configmap flags" in checks["ConfigMap default/flags"].fix

    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "flags"}, "data": {"A": "1"}}
    orch.request("POST", "/api/v1/namespaces/default/configmaps", body=config_map)
    assert [c.ok for c in orch.doctor_checks()] == [False, True, True]


def test_nothing_named_nothing_checked(k8s_factory: Any) -> None:
    assert k8s_factory().doctor_checks() == []
