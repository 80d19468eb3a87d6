"""pytest plugin (entry point ``pytest11``): a fake Kubernetes cluster for orchestrator tests.

Fixtures
--------
``shipway_fake_k8s``    a :class:`FakeApiServer` whose nodes hold no registry credentials
``kubeconfig``  a kubeconfig file pointing at ``shipway_fake_k8s`` (namespace ``default``)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shipway_kubernetes.testing.fake_apiserver import FakeApiServer


@pytest.fixture
def shipway_fake_k8s(shipway_docker: None) -> Iterator[FakeApiServer]:
    """A fake API server (real containers as pods) whose nodes hold no registry credentials.

    An image the engine does not hold is pulled only with the credentials of the
    pod's imagePullSecrets, as on a cluster whose nodes have no registry identity.
    """
    server = FakeApiServer().start()
    yield server
    server.stop()


@pytest.fixture
def shipway_kubeconfig(shipway_fake_k8s: FakeApiServer, tmp_path: Path) -> Path:
    """A kubeconfig for ``shipway_fake_k8s``."""
    return shipway_fake_k8s.write_kubeconfig(tmp_path / "kubeconfig", namespace="default")
