"""The orchestrator contract against a real cluster: ``pytest -m live_k8s`` with KUBECONFIG set.

Images the cluster can pull, by digest, come from the environment:

    SHIPWAY_LIVE_GOOD   an image serving /healthz (and /version "v1") on port 8000
    SHIPWAY_LIVE_GOOD2  the same serving /version "v2"
    SHIPWAY_LIVE_BAD    an image that exits at start
    SHIPWAY_LIVE_NAMESPACE  (default: shipway-live)

docs/kubernetes.md shows how to make them with kind, minikube or AKS.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from shipway.backends.base import BackendContext
from shipway.domain import ImageRef
from shipway.testing.contracts import OrchestratorContract
from shipway_kubernetes import KubernetesOrchestrator, KubernetesSettings

pytestmark = pytest.mark.live_k8s


def _require(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"the live suite needs {name} (see this module's docstring)", pytrace=False)
    return value


class TestLiveCluster(OrchestratorContract):
    @pytest.fixture
    def orchestrator(self, tmp_path: Path) -> KubernetesOrchestrator:
        kubeconfig = _require("KUBECONFIG")
        settings = KubernetesSettings(
            kind="kubernetes",
            kubeconfig=kubeconfig,
            namespace=os.environ.get("SHIPWAY_LIVE_NAMESPACE", "shipway-live"),
            deadline=90,
            read_only_root=False,  # the live images are the tiny busybox ones
        )
        return KubernetesOrchestrator(settings, BackendContext(root=tmp_path, cache_dir=tmp_path))

    @pytest.fixture
    def images(self) -> dict[str, ImageRef]:
        return {key: ImageRef.parse(_require(f"SHIPWAY_LIVE_{key.upper()}")) for key in ("good", "good2", "bad")}

    @pytest.fixture
    def pull_auth(self) -> Any:
        return None  # the cluster pulls with its own credentials (imagePullSecrets or node identity)

    def evict_image(self, image: ImageRef) -> None:
        """The cluster's nodes are not the local engine: nothing to evict here (they may hold the image)."""
