"""pytest plugin (entry point ``pytest11``): fixtures for testing shipway backends and plugins.

Fixtures
--------
``shipway_docker``      the Docker engine is reachable (fails the test otherwise)
``shipway_registry``    a real OCI registry with htpasswd auth, one per session
``shipway_tiny_image``          factory: build a tiny HTTP image, returns its image ID
``shipway_plugin_host``         an isolated plugin host: built-in backends only, no autoload
``shipway_load_plugins``        factory: a plugin host with the built-ins and the named installed plugins
``shipway_register_plugin``     register a plugin object on ``shipway_plugin_host`` for one test
``shipway_contract_registry``   an ``oci`` registry backend on ``shipway_registry``
``shipway_contract_images``     good / good2 / bad images for the orchestrator contract, pushed by digest
``shipway_fault_proxy``         factory: a fault-injecting proxy to ``host:port`` (:mod:`shipway.testing.faults`)
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shipway import plugins
from shipway.plugins import PluginHost, PluginInfo
from shipway.testing import services
from shipway.testing.faults import FaultProxy


@pytest.fixture(scope="session")
def shipway_docker() -> None:
    """Fail (never skip) when no Docker engine answers."""
    try:
        services.require_docker()
    except services.ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def shipway_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.RegistryService]:
    """A real ``docker-registry`` with basic auth on a free 127.0.0.1 port."""
    try:
        reg = services.start_registry(tmp_path_factory.mktemp("registry"))
    except services.ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield reg
    reg.stop()


@pytest.fixture
def shipway_tiny_image(shipway_docker: None) -> Callable[..., str]:
    """Factory: ``shipway_tiny_image(labels=..., files=..., command=...)`` builds a distinct tiny image."""

    def make(
        labels: dict[str, str] | None = None,
        files: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> str:
        nonce = uuid.uuid4().hex[:12]
        content = {"healthz": "ok", "nonce": nonce, **(files or {})}
        return services.build_tiny_image(f"shipway-test/tiny:{nonce}", labels=labels, files=content, command=command)

    return make


@pytest.fixture
def shipway_plugin_host() -> PluginHost:
    """A plugin host with the built-in backends only (third-party autoload off)."""
    return plugins.load(environ={plugins.ENV_VAR: ""})


@pytest.fixture
def shipway_load_plugins() -> Callable[..., PluginHost]:
    """``shipway_load_plugins("my_plugin")``: a plugin host with the built-ins and the named installed plugins.

    Names are entry-point names in group ``shipway`` (or distribution names), as
    in ``SHIPWAY_PLUGINS``: a plugin tests that its own entry point registers
    its kinds, exactly as shipway will load it, without other plugins around.
    """

    def load(*names: str) -> PluginHost:
        if not names:
            raise ValueError("name the plugins to load (entry-point or distribution names)")
        return plugins.load(environ={plugins.ENV_VAR: ",".join(names)})

    return load


@pytest.fixture
def shipway_register_plugin(shipway_plugin_host: PluginHost) -> Callable[..., PluginHost]:
    """``shipway_register_plugin(obj, name="x")`` adds a plugin object to ``shipway_plugin_host`` for this test."""

    def register(plugin: object, name: str | None = None) -> PluginHost:
        label = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        shipway_plugin_host.add(
            plugin, PluginInfo(name=label, dist=None, version=None, module=str(label), builtin=False)
        )
        return shipway_plugin_host

    return register


@pytest.fixture
def shipway_cache(tmp_path: Path) -> Path:
    """An empty cache folder for one test (model blobs, wheelhouses, labels)."""
    path = tmp_path / "shipway-cache"
    path.mkdir()
    return path


@pytest.fixture
def shipway_contract_registry(shipway_registry: services.RegistryService, shipway_cache: Path) -> Any:
    """An ``oci`` registry backend on the kit's registry, in a fresh repository."""
    from shipway.backends.base import BackendContext
    from shipway.backends.oci_registry import OciRegistry, OciRegistrySettings

    settings = OciRegistrySettings(
        kind="oci",
        address=shipway_registry.address,
        repository=f"contract-{uuid.uuid4().hex[:8]}",
        username=shipway_registry.username,
        password=shipway_registry.password,
    )
    return OciRegistry(settings, BackendContext(cache_dir=shipway_cache))


@pytest.fixture
def shipway_contract_images(shipway_contract_registry: Any, shipway_tiny_image: Callable[..., str]) -> dict[str, Any]:
    """The images the orchestrator contract deploys, pushed by digest.

    ``good`` serves /healthz and /version "v1", ``good2`` the same with "v2",
    ``bad`` exits at once. Pull them with ``shipway_contract_registry.credentials()``.
    """
    return {
        "good": shipway_contract_registry.push(shipway_tiny_image(files={"version": "v1"}), "good"),
        "good2": shipway_contract_registry.push(shipway_tiny_image(files={"version": "v2"}), "good2"),
        "bad": shipway_contract_registry.push(
            shipway_tiny_image(command=["sh", "-c", "echo model file missing >&2; exit 3"]), "bad"
        ),
    }


@pytest.fixture
def shipway_fault_proxy() -> Iterator[Callable[..., FaultProxy]]:
    """Factory: ``shipway_fault_proxy("127.0.0.1:5000")`` starts a :class:`~shipway.testing.faults.FaultProxy`.

    Point the backend at ``proxy.url`` (or ``proxy.address``), set its plan
    (``proxy.fail(503, times=3)``, ``proxy.reset(after_bytes=...)``,
    ``proxy.stall()``), and count what it did with ``proxy.count(...)``. Every
    proxy the test started is closed at its end. ``mode="tcp"`` for non-HTTP services.
    """
    started: list[FaultProxy] = []

    def start(target: str, mode: str = "http", stall_seconds: float = 120) -> FaultProxy:
        if "://" in target:
            target = target.split("://", 1)[1].split("/", 1)[0]
        if mode not in ("http", "tcp"):
            raise ValueError("mode is 'http' or 'tcp'")
        proxy = FaultProxy(target, mode="http" if mode == "http" else "tcp", stall_seconds=stall_seconds)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.close()
