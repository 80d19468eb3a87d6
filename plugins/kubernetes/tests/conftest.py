from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from shipway.backends.base import BackendContext

from shipway_kubernetes import KubernetesOrchestrator, KubernetesSettings
from shipway_kubernetes.testing import FakeApiServer


@pytest.fixture
def fake_k8s(shipway_docker: None, contract_registry: Any) -> Iterator[FakeApiServer]:
    """A fake API server whose pods pull from the kit's registry with its credentials."""
    server = FakeApiServer(pull_auth=contract_registry.credentials()).start()
    yield server
    server.stop()


@pytest.fixture
def kubeconfig(fake_k8s: FakeApiServer, tmp_path: Path) -> Path:
    return fake_k8s.write_kubeconfig(tmp_path / "kubeconfig", namespace="default")


@pytest.fixture
def k8s_factory(kubeconfig: Path, tmp_path: Path) -> Any:
    """``k8s_factory(hook=None, **settings)``: a kubernetes orchestrator on the fake API server."""

    def make(hook: Any = None, **options: Any) -> KubernetesOrchestrator:
        settings = KubernetesSettings(kind="kubernetes", kubeconfig=str(kubeconfig), **{"deadline": 8, **options})
        return KubernetesOrchestrator(settings, BackendContext(root=tmp_path, cache_dir=tmp_path / "cache", hook=hook))

    return make
