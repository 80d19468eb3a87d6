"""Test services for the Kubernetes orchestrator: a stateful fake API server whose pods are real containers."""

from shipway_kubernetes.testing.fake_apiserver import FakeApiServer

__all__ = ["FakeApiServer"]
