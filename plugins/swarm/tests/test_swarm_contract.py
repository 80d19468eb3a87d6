"""The swarm orchestrator passes the orchestrator contract on the real single-node swarm."""

from __future__ import annotations

from typing import Any

import pytest

from shipway.testing.contracts import OrchestratorContract
from shipway_swarm import SwarmOrchestrator


class TestSwarmOrchestrator(OrchestratorContract):
    @pytest.fixture
    def orchestrator(self, swarm_factory: Any) -> SwarmOrchestrator:
        return swarm_factory(health_start_period=15)  # slow_image serves after a few seconds: not unhealthy yet


class TestSwarmHostPortsWithoutProxy(OrchestratorContract):
    """No proxy: host-mode ports chosen by Swarm per task (the endpoint is a running task's port)."""

    @pytest.fixture
    def orchestrator(self, swarm_factory: Any) -> SwarmOrchestrator:
        return swarm_factory(proxy={"enabled": False}, published_port=None, health_start_period=15)
