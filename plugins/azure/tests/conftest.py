from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from shipway.testing.services import ServiceError

from shipway_azure.testing import AzuriteService, start_azurite


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
