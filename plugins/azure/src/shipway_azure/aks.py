"""The ``aks`` orchestrator: the generic Kubernetes orchestrator, with credentials from Azure.

Credentials come from ``managedClusters/listClusterUserCredential`` through
``azure-mgmt-containerservice`` with ``DefaultAzureCredential``, as
``az aks get-credentials`` does. For Azure AD-integrated clusters, whose
kubeconfig names the ``kubelogin`` exec plugin, the user entry is replaced
by an Azure AD token for the AKS server application (what ``kubelogin``
would fetch), so no extra binary is needed.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import Field, model_validator

from shipway.errors import AuthError, BackendError, ConfigError
from shipway.localhttp import is_loopback
from shipway_kubernetes import KubernetesOrchestrator, KubernetesSettings

ARM = "https://management.azure.com"
# The well-known application ID of the AKS Azure AD server (what kubelogin requests a token for).
AKS_AAD_SERVER = "6dae42f8-4368-4678-94ff-3960e28e3630"


class AksSettings(KubernetesSettings):
    """``orchestrator: {kind: aks, subscription_id: ..., resource_group: ml, cluster: ml-aks}``."""

    kind: str = "aks"
    subscription_id: str = Field(min_length=1, description="${AZURE_SUBSCRIPTION_ID}")
    resource_group: str = Field(min_length=1)
    cluster: str = Field(min_length=1)
    arm_endpoint: str = Field(ARM, description="Azure Resource Manager (sovereign clouds differ)")
    aad_server_app: str = Field(AKS_AAD_SERVER, description="Token audience for Azure AD-integrated clusters")

    @model_validator(mode="after")
    def _no_kubeconfig(self) -> AksSettings:
        if self.kubeconfig:
            raise ValueError("aks gets its credentials from Azure: remove kubeconfig (or use kind: kubernetes)")
        self.arm_endpoint = self.arm_endpoint.rstrip("/")
        return self


class AksOrchestrator(KubernetesOrchestrator):
    """Kubernetes releases on AKS, credentials from Azure AD."""

    kind = "aks"
    Settings = AksSettings
    settings: AksSettings

    def describe(self) -> str:
        s = self.settings
        return f"aks orchestrator {s.resource_group}/{s.cluster} (namespace {s.namespace})"

    def _api_client(self) -> Any:
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
        from azure.identity import CredentialUnavailableError, DefaultAzureCredential
        from azure.mgmt.containerservice import ContainerServiceClient
        from kubernetes import config

        s = self.settings
        credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
        arm = ContainerServiceClient(
            credential, s.subscription_id, base_url=s.arm_endpoint, credential_scopes=[f"{s.arm_endpoint}/.default"]
        )
        host = s.arm_endpoint.split("://", 1)[-1]
        try:
            result = arm.managed_clusters.list_cluster_user_credentials(
                s.resource_group, s.cluster, enforce_https=not is_loopback(host)
            )
            raw = result.kubeconfigs[0].value if result.kubeconfigs else None
            if not raw:
                raise BackendError(f"AKS cluster {s.resource_group}/{s.cluster} returned no kubeconfig")
            kubeconfig = yaml.safe_load(raw)
            for user in kubeconfig.get("users", []):
                if "exec" in (user.get("user") or {}):
                    token = credential.get_token(f"{s.aad_server_app}/.default").token
                    user["user"] = {"token": token}
        except ResourceNotFoundError:
            raise ConfigError(
                f"orchestrator.cluster: AKS cluster {s.resource_group}/{s.cluster} "
                f"not found in subscription {s.subscription_id}"
            ) from None
        except (CredentialUnavailableError, ClientAuthenticationError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise AuthError(
                f"{self.describe()}: no usable Azure credential ({first}); use a managed or workload identity, "
                "AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, or `az login`"
            ) from None
        except HttpResponseError as exc:
            if exc.status_code == 403:
                raise AuthError(
                    f"{self.describe()}: Azure denied listClusterUserCredential: the identity needs the "
                    "'Azure Kubernetes Service Cluster User Role' on the cluster (and an RBAC role inside it)"
                ) from None
            raise BackendError(f"{self.describe()}: {exc.status_code} {exc.reason}") from None
        except yaml.YAMLError as exc:
            raise BackendError(
                f"AKS cluster {s.resource_group}/{s.cluster} returned an unreadable kubeconfig: {exc}"
            ) from None
        try:
            return config.new_client_from_config_dict(kubeconfig, context=s.context)
        except config.ConfigException as exc:
            raise ConfigError(f"orchestrator.context: {exc}") from None
