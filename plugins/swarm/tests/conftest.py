"""Fixtures for the swarm tests: a real single-node swarm, orchestrators on it, the kit's bounded load generator."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shipway import dockerutil
from shipway.backends.base import BackendContext
from shipway.testing.load import Load
from shipway.testing.services import free_port
from shipway_swarm import SwarmOrchestrator, SwarmSettings

BASE_IMAGE = os.environ.get("SHIPWAY_BASE_IMAGE", "shipway-base:bookworm")


@pytest.fixture(scope="session")
def swarm(shipway_docker: None) -> None:
    """Fail (never skip) unless the local engine is an active swarm manager with the base image."""
    info = dockerutil.client().info().get("Swarm") or {}
    if info.get("LocalNodeState") != "active" or not info.get("ControlAvailable"):
        pytest.fail("the Docker engine is not a swarm manager: run scripts/services.sh", pytrace=False)
    try:
        dockerutil.client().images.get(BASE_IMAGE)
    except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound
        pytest.fail(f"base image {BASE_IMAGE} is missing: run scripts/services.sh", pytrace=False)


@pytest.fixture
def swarm_factory(swarm: None, tmp_path: Path) -> Any:
    """``swarm_factory(**settings)``: a swarm orchestrator with the front proxy on a free port."""

    def make(**options: Any) -> SwarmOrchestrator:
        values: dict[str, Any] = {
            "kind": "swarm",
            "published_port": free_port(),
            "publish_mode": "host",
            "endpoint_mode": "dnsrr",
            "proxy": {"enabled": True, "base_image": BASE_IMAGE},
            "deadline": 90,
            "monitor": 2,
            "health_interval": 1,
            "health_retries": 2,
            "stop_grace_period": 2,
        }
        values.update(options)
        return SwarmOrchestrator(SwarmSettings(**values), BackendContext(root=tmp_path, cache_dir=tmp_path / "cache"))

    return make


@pytest.fixture
def load() -> Callable[..., Load]:
    """``load(port)``: the kit's bounded load on ``http://127.0.0.1:PORT/version``."""
    return Load.on_port
