"""The ``acr`` registry: Azure Container Registry.

Auth, first found wins:

1. ``username`` + ``password`` (admin user, service principal, or a
   repository-scoped token), from the environment;
2. Azure AD: a token from ``DefaultAzureCredential`` is exchanged at the
   registry's ``/oauth2/exchange`` endpoint for an ACR refresh token, which is
   then the password of the null-GUID user (what ``az acr login`` does).

Everything else — push by digest, tags, labels, newest verified build — is
the generic OCI registry's.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, model_validator

from shipway.backends.oci_registry import OciRegistry, OciRegistrySettings
from shipway.errors import AuthError, BackendError

NULL_GUID = "00000000-0000-0000-0000-000000000000"
ARM_SCOPE = "https://management.azure.com/.default"


class AcrSettings(OciRegistrySettings):
    """``registry: {kind: acr, name: contoso, repository: digits-api}``."""

    kind: str = "acr"
    address: str = Field("", description="Derived from name; or give login_server")
    name: str | None = Field(None, pattern=r"^[a-zA-Z0-9]{5,50}$", description="contoso means contoso.azurecr.io")
    login_server: str | None = Field(None, description="e.g. contoso.azurecr.io (sovereign clouds, private endpoints)")
    username: str | None = Field(None, description="Admin user, service principal ID or token name")
    password: SecretStr | None = Field(None, description="From the environment: ${ACR_PASSWORD}")
    tenant_id: str | None = Field(None, description="Azure AD tenant for the token exchange")
    aad_scope: str = Field(ARM_SCOPE, description="Scope of the Azure AD token exchanged for an ACR token")
    exchange_url: str | None = Field(None, description="Default https://<login_server>/oauth2/exchange")

    @model_validator(mode="after")
    def _server(self) -> AcrSettings:
        if bool(self.name) == bool(self.login_server):
            raise ValueError("give exactly one of name (contoso) or login_server (contoso.azurecr.io)")
        self.address = self.login_server or f"{self.name.lower()}.azurecr.io"  # type: ignore[union-attr]
        return self


class AcrRegistry(OciRegistry):
    """Azure Container Registry: basic auth or Azure AD token exchange, then plain OCI."""

    kind = "acr"
    Settings = AcrSettings
    settings: AcrSettings

    def _credentials(self) -> tuple[dict[str, str] | None, str]:
        s = self.settings
        if s.username or s.password:
            return super()._credentials()
        token = self._aad_token()
        refresh = self._exchange(token)
        auth = {"username": NULL_GUID, "password": refresh, "serveraddress": self.address}
        return auth, "Azure AD token exchanged at /oauth2/exchange"

    def _aad_token(self) -> str:
        from azure.core.exceptions import ClientAuthenticationError
        from azure.identity import CredentialUnavailableError, DefaultAzureCredential

        try:
            credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
            return str(credential.get_token(self.settings.aad_scope).token)
        except (CredentialUnavailableError, ClientAuthenticationError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AuthError(
                f"registry {self.address}: no registry.username/password and no Azure AD credential "
                f"({first}). Use a managed or workload identity, AZURE_CLIENT_ID/AZURE_TENANT_ID/"
                "AZURE_CLIENT_SECRET, `az login`, or set registry.username and registry.password"
            ) from None

    def _exchange(self, aad_token: str) -> str:
        url = self.settings.exchange_url or f"https://{self.address}/oauth2/exchange"
        form: dict[str, Any] = {"grant_type": "access_token", "service": self.address, "access_token": aad_token}
        if self.settings.tenant_id:
            form["tenant"] = self.settings.tenant_id
        import requests  # loaded by the first token exchange, not with the plugin

        try:
            resp = requests.post(url, data=form, timeout=30)
        except requests.RequestException as exc:
            raise BackendError(
                f"cannot reach registry {self.address} token exchange ({url}): {type(exc).__name__}"
            ) from None
        if resp.status_code in (400, 401, 403):
            raise AuthError(
                f"registry {self.address} refused the Azure AD token at /oauth2/exchange ({resp.status_code}): "
                "the identity needs the AcrPush role (AcrPull to deploy only) on the registry"
            )
        if resp.status_code != 200:
            raise BackendError(f"registry {self.address} token exchange answered {resp.status_code}")
        refresh = resp.json().get("refresh_token")
        if not refresh:
            raise BackendError(f"registry {self.address} token exchange returned no refresh_token")
        return str(refresh)
