"""The aks orchestrator: credentials from ARM (stand-in), then the orchestrator contract on the fake cluster."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from shipway.backends.base import BackendContext
from shipway.errors import AuthError, ConfigError
from shipway.testing.contracts import OrchestratorContract
from shipway_azure import AksOrchestrator, AksSettings
from shipway_azure.aks import AKS_AAD_SERVER
from shipway_azure.testing import AzureAuthServer
from shipway_kubernetes.testing import FakeApiServer


def aad_kubeconfig(server: FakeApiServer) -> str:
    """What listClusterUserCredential returns for an Azure AD-integrated cluster: a kubelogin exec user."""
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "ml-aks",
        "clusters": [{"name": "ml-aks", "cluster": {"server": server.url}}],
        "contexts": [{"name": "ml-aks", "context": {"cluster": "ml-aks", "user": "clusterUser"}}],
        "users": [{"name": "clusterUser", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "kubelogin",
            "args": ["get-token", "--server-id", AKS_AAD_SERVER]}}}],
    })  # fmt: skip


@pytest.fixture
def cluster(azure_auth: AzureAuthServer, shipway_fake_k8s: FakeApiServer) -> AzureAuthServer:
    shipway_fake_k8s.token = azure_auth.aad_token  # the API server accepts Azure AD tokens, as AKS does
    azure_auth.clusters["sub-1/ml/ml-aks"] = aad_kubeconfig(shipway_fake_k8s)
    return azure_auth


def aks(auth: AzureAuthServer, tmp_path: Path, cluster_name: str = "ml-aks") -> AksOrchestrator:
    settings = AksSettings(
        kind="aks",
        subscription_id="sub-1",
        resource_group="ml",
        cluster=cluster_name,
        arm_endpoint=auth.url,
        deadline=8,
    )
    return AksOrchestrator(settings, BackendContext(root=tmp_path, cache_dir=tmp_path / "cache"))


class TestAksOrchestrator(OrchestratorContract):
    @pytest.fixture
    def orchestrator(self, cluster: AzureAuthServer, tmp_path: Path) -> AksOrchestrator:
        return aks(cluster, tmp_path)


def test_tokens_requested_for_arm_and_the_aks_server_app(cluster: AzureAuthServer, tmp_path: Path) -> None:
    assert aks(cluster, tmp_path).status("nothing").state == "absent"
    assert cluster.scopes == [cluster.url, AKS_AAD_SERVER]


def test_unknown_cluster_is_a_config_error(cluster: AzureAuthServer, tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=re.escape("orchestrator.cluster: AKS cluster ml/other not found in subscription sub-1")
    ):
        aks(cluster, tmp_path, cluster_name="other").status("x")


def test_failing_identity_is_a_clear_auth_error(
    cluster: AzureAuthServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "wrong")
    with pytest.raises(AuthError, match="no usable Azure credential"):
        aks(cluster, tmp_path).status("x")


def test_aks_takes_no_kubeconfig() -> None:
    with pytest.raises(ValueError, match="aks gets its credentials from Azure"):
        AksSettings(kind="aks", subscription_id="s", resource_group="g", cluster="c", kubeconfig="~/.kube/config")
