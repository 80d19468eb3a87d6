"""The acr registry: the registry contract over basic auth, and the Azure AD token exchange path."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipway.backends.base import BackendContext
from shipway.errors import AuthError, BackendError
from shipway.testing.contracts import RegistryContract
from shipway.testing.services import RegistryService, free_port, start_registry
from shipway_azure import AcrRegistry, AcrSettings
from shipway_azure.acr import NULL_GUID
from shipway_azure.testing import AzureAuthServer


def acr(address: str, cache: Path, **options) -> AcrRegistry:
    settings = AcrSettings(kind="acr", login_server=address, repository=f"r-{uuid.uuid4().hex[:8]}", **options)
    return AcrRegistry(settings, BackendContext(cache_dir=cache))


class TestAcrBasicAuth(RegistryContract):
    @pytest.fixture
    def registry(self, shipway_registry: RegistryService, shipway_cache: Path) -> AcrRegistry:
        return acr(
            shipway_registry.address,
            shipway_cache,
            username=shipway_registry.username,
            password=shipway_registry.password,
        )

    @pytest.fixture
    def bad_registry(self, shipway_registry: RegistryService, shipway_cache: Path) -> AcrRegistry:
        return acr(shipway_registry.address, shipway_cache, username=shipway_registry.username, password="wrong")


@pytest.fixture(scope="module")
def aad_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryService]:
    """A registry whose only user is ACR's null-GUID user with the refresh token as password."""
    reg = start_registry(tmp_path_factory.mktemp("acr"), username=NULL_GUID, password=secrets.token_urlsafe(24))
    yield reg
    reg.stop()


@pytest.fixture
def auth_server(aad_registry: RegistryService, azure_auth: AzureAuthServer) -> AzureAuthServer:
    azure_auth.refresh_token = aad_registry.password
    return azure_auth


def test_aad_token_is_exchanged_and_used_for_a_real_push(
    aad_registry: RegistryService, auth_server: AzureAuthServer, shipway_tiny_image, tmp_path: Path
) -> None:
    registry = acr(aad_registry.address, tmp_path, exchange_url=f"{auth_server.url}/oauth2/exchange", tenant_id="t-1")
    registry.login()
    pushed = registry.push(shipway_tiny_image(), "aad")
    assert pushed.digest
    assert registry.resolve("aad") == pushed
    assert auth_server.exchanges == [
        {
            "grant_type": "access_token",
            "service": aad_registry.address,
            "access_token": auth_server.aad_token,
            "tenant": "t-1",
        }
    ]
    creds = registry.credentials()
    assert creds == {"username": NULL_GUID, "password": aad_registry.password, "serveraddress": aad_registry.address}


def test_a_refused_aad_token_names_the_role_needed(
    aad_registry: RegistryService, auth_server: AzureAuthServer, tmp_path: Path
) -> None:
    auth_server.accept = "some-other-token"
    registry = acr(aad_registry.address, tmp_path, exchange_url=f"{auth_server.url}/oauth2/exchange")
    with pytest.raises(AuthError, match=r"refused the Azure AD token .* AcrPush"):
        registry.login()


def test_a_failing_identity_is_a_clear_auth_error(
    aad_registry: RegistryService, auth_server: AzureAuthServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-header")  # the identity endpoint answers 401
    registry = acr(aad_registry.address, tmp_path, exchange_url=f"{auth_server.url}/oauth2/exchange")
    with pytest.raises(AuthError) as err:
        registry.login()
    assert "no registry.username/password and no Azure AD credential" in str(err.value)
    assert auth_server.exchanges == []


def test_unreachable_exchange_names_the_registry(
    aad_registry: RegistryService, auth_server: AzureAuthServer, tmp_path: Path
) -> None:
    registry = acr(aad_registry.address, tmp_path, exchange_url=f"http://127.0.0.1:{free_port()}/oauth2/exchange")
    with pytest.raises(BackendError, match=f"cannot reach registry {aad_registry.address} token exchange"):
        registry.login()


def test_name_means_azurecr_io() -> None:
    assert AcrSettings(kind="acr", name="contoso", repository="digits-api").address == "contoso.azurecr.io"
    with pytest.raises(ValueError, match="exactly one of name"):
        AcrSettings(kind="acr", name="contoso", login_server="contoso.azurecr.io", repository="x")
    with pytest.raises(ValueError, match="exactly one of name"):
        AcrSettings(kind="acr", repository="x")
