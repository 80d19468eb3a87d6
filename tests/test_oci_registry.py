"""The oci registry against a real docker-registry with htpasswd auth."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from shipway import dockerutil
from shipway.backends.base import BackendContext
from shipway.backends.oci_registry import OciRegistry, OciRegistrySettings
from shipway.errors import BackendError
from shipway.testing.contracts import RegistryContract, pull_through_engine, unique
from shipway.testing.services import RegistryService, free_port, stop_process


class TestOciRegistry(RegistryContract):
    @pytest.fixture
    def registry(self, oci_registry: OciRegistry) -> OciRegistry:
        return oci_registry

    @pytest.fixture
    def bad_registry(self, registry_factory) -> OciRegistry:
        return registry_factory(password="wrong-password")


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A DOCKER_CONFIG folder of this test's own.

    The engine client is made once per process and keeps the credentials it read
    at that moment; it is made afresh before and after, so credentials written
    here never reach another test's pulls (which must fail without credentials).
    """
    folder = tmp_path / "docker-config"
    folder.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    dockerutil.client.cache_clear()
    yield folder
    dockerutil.client.cache_clear()


def test_credentials_from_docker_config(
    shipway_registry: RegistryService, tmp_path: Path, docker_config: Path, shipway_tiny_image
) -> None:
    auth = base64.b64encode(f"{shipway_registry.username}:{shipway_registry.password}".encode()).decode()
    (docker_config / "config.json").write_text(json.dumps({"auths": {shipway_registry.address: {"auth": auth}}}))
    settings = OciRegistrySettings(kind="oci", address=shipway_registry.address, repository=unique("repo"))
    registry = OciRegistry(settings, BackendContext(cache_dir=tmp_path / "cache"))
    registry.login()
    assert registry.push(shipway_tiny_image(), "t1").digest


def test_no_credentials_is_rejected_with_a_hint(
    shipway_registry: RegistryService, tmp_path: Path, docker_config: Path
) -> None:
    settings = OciRegistrySettings(kind="oci", address=shipway_registry.address, repository="x")
    with pytest.raises(BackendError, match="rejected anonymous access"):
        OciRegistry(settings, BackendContext(cache_dir=tmp_path)).login()


def test_unreachable_registry_names_the_address(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    settings = OciRegistrySettings(kind="oci", address=address, repository="x", username="u", password="p")
    with pytest.raises(BackendError, match=f"cannot reach registry {address}"):
        OciRegistry(settings, BackendContext(cache_dir=tmp_path)).login()


def test_password_never_appears_in_settings_repr(shipway_registry: RegistryService, registry_factory) -> None:
    registry = registry_factory()
    assert shipway_registry.password not in repr(registry.settings)
    assert shipway_registry.password not in registry.settings.model_dump_json()


@pytest.fixture(scope="module")
def anonymous_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``docker-registry`` without auth on a free 127.0.0.1 port: its address."""
    root = tmp_path_factory.mktemp("anonymous-registry")
    address = f"127.0.0.1:{free_port()}"
    (root / "config.yml").write_text(
        f"version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}\n"
        f"http: {{addr: {address}}}\n"
    )
    binary = shutil.which("docker-registry") or shutil.which("registry")
    assert binary, "docker-registry is not installed (apt-get install docker-registry)"
    process = subprocess.Popen([binary, "serve", str(root / "config.yml")], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while True:
        try:
            if requests.get(f"http://{address}/v2/", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"docker-registry did not answer on {address}"
        time.sleep(0.05)
    yield address
    stop_process(process)


def test_a_registry_without_auth_has_no_credentials_and_pulls_anonymously(
    anonymous_registry: str, tmp_path: Path, docker_config: Path, shipway_tiny_image
) -> None:
    """No credentials anywhere: not in shipway.yaml, not in the (empty) docker config."""
    settings = OciRegistrySettings(kind="oci", address=anonymous_registry, repository=unique("repo"))
    registry = OciRegistry(settings, BackendContext(cache_dir=tmp_path / "cache"))
    registry.login()
    assert registry.credentials() is None
    pushed = registry.push(shipway_tiny_image(labels={"org.example.k": "anonymous"}), "t1")
    assert pull_through_engine(pushed, registry.credentials()).labels["org.example.k"] == "anonymous"
