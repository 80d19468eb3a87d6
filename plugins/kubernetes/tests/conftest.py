from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shipway.backends.base import BackendContext
from shipway_kubernetes import KubernetesOrchestrator, KubernetesSettings


@pytest.fixture
def k8s_factory(shipway_kubeconfig: Path, tmp_path: Path) -> Any:
    """``k8s_factory(hook=None, **settings)``: a kubernetes orchestrator on the fake API server."""

    def make(hook: Any = None, **options: Any) -> KubernetesOrchestrator:
        settings = KubernetesSettings(
            kind="kubernetes", kubeconfig=str(shipway_kubeconfig), **{"deadline": 8, **options}
        )
        return KubernetesOrchestrator(settings, BackendContext(root=tmp_path, cache_dir=tmp_path / "cache", hook=hook))

    return make
