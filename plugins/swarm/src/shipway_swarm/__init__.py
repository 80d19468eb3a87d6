"""shipway-swarm: the Docker Swarm orchestrator (zero-downtime, verified, self-rolling-back releases)."""

from shipway.hookspecs import hookimpl
from shipway_swarm.orchestrator import SwarmOrchestrator
from shipway_swarm.settings import SwarmSettings

# The shipway.testing contract version this orchestrator passes.
SHIPWAY_CONTRACT_VERSION = 2

__all__ = ["SwarmOrchestrator", "SwarmSettings"]


@hookimpl
def shipway_register_orchestrators(register):  # type: ignore[no-untyped-def]
    register(SwarmOrchestrator)
