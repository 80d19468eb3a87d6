"""Rendered manifests: schema-valid for the target version, changeable by hook, extra files and patches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from shipway.backends.base import BackendContext
from shipway.domain import ImageRef, Release
from shipway.errors import ConfigError
from shipway.hookspecs import hookimpl
from shipway_kubernetes import KubernetesOrchestrator, KubernetesSettings

DIGEST = "sha256:" + "ab" * 32
RELEASE = Release(
    app="digits-api",
    environment="staging",
    image=ImageRef(repository="contoso.azurecr.io/digits-api", digest=DIGEST),
    port=8000,
    health="/healthz",
    replicas=3,
    env={"LOG_LEVEL": "info"},
    labels={"org.opencontainers.image.revision": "c0ffee", "io.shipway.model.version": "7"},
)


def orchestrator(tmp_path: Path, hook: Any = None, **options: Any) -> KubernetesOrchestrator:
    settings = KubernetesSettings(kind="kubernetes", namespace="ml", **options)
    return KubernetesOrchestrator(settings, BackendContext(root=tmp_path, cache_dir=tmp_path, hook=hook))


@pytest.mark.parametrize("version", ["1.30", kubernetes_validate.latest_version().rsplit(".", 1)[0]])
def test_rendered_manifests_validate_strictly(tmp_path: Path, version: str) -> None:
    manifests = orchestrator(tmp_path, kubernetes_version=version).manifests(RELEASE)
    assert [m["kind"] for m in manifests] == ["Deployment", "Service"]
    for m in manifests:
        kubernetes_validate.validate(m, version, strict=True)  # raises on any error
    dep = manifests[0]
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert dep["metadata"]["name"] == "digits-api-staging"
    assert dep["metadata"]["namespace"] == "ml"
    assert container["image"] == f"contoso.azurecr.io/digits-api@{DIGEST}"  # by digest, never a tag
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    annotations = dep["metadata"]["annotations"]
    assert annotations["shipway.io/commit"] == "c0ffee"
    assert annotations["shipway.io/model-version"] == "7"


def test_autoscaling_resources_and_env_sources(tmp_path: Path) -> None:
    manifests = orchestrator(
        tmp_path,
        autoscale={"min_replicas": 2, "max_replicas": 6, "cpu_percent": 60},
        resources={"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        env_from_secrets=["digits-secrets"],
        env_from_configmaps=["digits-config"],
        image_pull_secret="acr-pull",
        service_type="LoadBalancer",
    ).manifests(RELEASE)
    kinds = [m["kind"] for m in manifests]
    assert kinds == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    dep = manifests[0]
    assert "replicas" not in dep["spec"]  # the HPA owns it
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [
        {"secretRef": {"name": "digits-secrets"}},
        {"configMapRef": {"name": "digits-config"}},
    ]
    assert manifests[2]["spec"]["minReplicas"] == 2


class TeamLabels:
    @hookimpl
    def shipway_render_manifests(self, release, manifests):
        for m in manifests:
            m["metadata"].setdefault("labels", {})["team"] = "vision"
        manifests.append(
            {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": release.app},
             "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": release.app}}}}
        )  # fmt: skip


def test_render_hook_extra_manifests_and_patches(tmp_path: Path, shipway_register_plugin: Any) -> None:
    host = shipway_register_plugin(TeamLabels(), name="team-labels")
    (tmp_path / "extra.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: digits-config}\ndata: {THRESHOLD: '0.9'}\n"
    )
    (tmp_path / "patch.yaml").write_text(
        "kind: Deployment\nmetadata: {name: digits-api-staging}\n"
        "spec:\n  template:\n    spec:\n      terminationGracePeriodSeconds: 45\n"
    )
    orch = orchestrator(tmp_path, hook=host.hook, manifests=["extra.yaml"], patches=["patch.yaml"])
    manifests = orch.manifests(RELEASE)
    assert [m["kind"] for m in manifests] == ["Deployment", "Service", "PodDisruptionBudget", "ConfigMap"]
    assert all(m["metadata"]["labels"]["team"] == "vision" for m in manifests[:2])
    assert manifests[0]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 45
    assert all(m["metadata"]["namespace"] == "ml" for m in manifests)


def test_an_invalid_manifest_is_refused_naming_the_field(tmp_path: Path) -> None:
    (tmp_path / "patch.yaml").write_text(
        "kind: Deployment\nmetadata: {name: digits-api-staging}\nspec: {replicas: three}\n"
    )
    with pytest.raises(
        ConfigError, match=r"Deployment/digits-api-staging is invalid for Kubernetes 1.30: spec.replicas: 'three'"
    ):
        orchestrator(tmp_path, patches=["patch.yaml"]).manifests(RELEASE)


def test_an_unknown_field_is_refused(tmp_path: Path) -> None:
    (tmp_path / "patch.yaml").write_text(
        "kind: Service\nmetadata: {name: digits-api-staging}\nspec: {sessionAffinityy: ClientIP}\n"
    )
    with pytest.raises(ConfigError, match="Service/digits-api-staging is invalid"):
        orchestrator(tmp_path, patches=["patch.yaml"]).manifests(RELEASE)


def test_a_patch_that_matches_nothing_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "patch.yaml").write_text("kind: Deployment\nmetadata: {name: nope}\nspec: {replicas: 1}\n")
    with pytest.raises(ConfigError, match="patch for Deployment/nope matches no manifest"):
        orchestrator(tmp_path, patches=["patch.yaml"]).manifests(RELEASE)
