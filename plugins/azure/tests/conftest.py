from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shipway.testing.services import ServiceError
from shipway_azure.testing import AzureAuthServer, AzuriteService, start_azurite


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteService]:
    """A real Azurite blob service (fails, never skips, when it cannot start)."""
    try:
        service = start_azurite(tmp_path_factory.mktemp("azurite"))
    except ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield service
    service.stop()


@pytest.fixture
def azure_cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def azure_auth(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[AzureAuthServer]:
    """Azure AD (managed identity), ACR exchange and ARM stand-ins; DefaultAzureCredential is pointed at them."""
    server = AzureAuthServer(refresh_token="set-by-the-test").start()
    for key, value in server.identity_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path / "no-az-cli"))
    yield server
    server.stop()
