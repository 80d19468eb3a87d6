"""shipway-kubernetes: the generic Kubernetes orchestrator."""

from shipway.hookspecs import hookimpl
from shipway_kubernetes.orchestrator import KubernetesOrchestrator, KubernetesSettings

# The shipway.testing contract version this orchestrator passes.
SHIPWAY_CONTRACT_VERSION = 2

__all__ = ["KubernetesOrchestrator", "KubernetesSettings"]


@hookimpl
def shipway_register_orchestrators(register):  # type: ignore[no-untyped-def]
    register(KubernetesOrchestrator)
