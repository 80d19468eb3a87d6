"""Fixtures shared by the engine and backend tests (the kit's own fixtures load via pytest11)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from shipway.backends.base import BackendContext
from shipway.backends.oci_registry import OciRegistry, OciRegistrySettings
from shipway.testing.contracts import unique
from shipway.testing.services import RegistryService


def make_registry(
    reg: RegistryService, cache: Path, password: str | None = None, repository: str | None = None
) -> OciRegistry:
    settings = OciRegistrySettings(
        kind="oci",
        address=reg.address,
        repository=repository or unique("repo"),
        username=reg.username,
        password=password or reg.password,
    )
    return OciRegistry(settings, BackendContext(cache_dir=cache))


@pytest.fixture
def registry_factory(shipway_registry: RegistryService, shipway_cache: Path) -> Callable[..., OciRegistry]:
    """``registry_factory(password=None, repository=None)``: an oci backend on the test registry."""

    def factory(password: str | None = None, repository: str | None = None) -> OciRegistry:
        return make_registry(shipway_registry, shipway_cache, password=password, repository=repository)

    return factory


@pytest.fixture
def oci_registry(registry_factory: Callable[..., OciRegistry]) -> OciRegistry:
    return registry_factory()
