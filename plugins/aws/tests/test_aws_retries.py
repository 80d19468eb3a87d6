"""ECR's and EKS's AWS API clients take the backend's ``retries`` block, as s3 does."""

from __future__ import annotations

from pathlib import Path

from shipway.backends.base import BackendContext
from shipway_aws import EcrRegistry, EcrSettings, EksOrchestrator, EksSettings
from shipway_aws.testing import ACCOUNT, REGION, EksApiServer, MotoService

POLICY = {"attempts": 2, "connect_timeout": 3, "read_timeout": 7}


def _matches(config: object) -> None:
    assert config.retries["total_max_attempts"] == 2  # type: ignore[attr-defined]
    assert config.connect_timeout == 3  # type: ignore[attr-defined]
    assert config.read_timeout == 7  # type: ignore[attr-defined]


def test_ecr_api_client_uses_the_registry_retries(shipway_aws_env: MotoService, tmp_path: Path) -> None:
    settings = EcrSettings(kind="ecr", account=ACCOUNT, region=REGION, repository="r", retries=POLICY)
    _matches(EcrRegistry(settings, BackendContext(cache_dir=tmp_path)).ecr.meta.config)


def test_eks_api_clients_use_the_orchestrator_retries(
    shipway_aws_env: MotoService, eks_api: EksApiServer, tmp_path: Path
) -> None:
    settings = EksSettings(kind="eks", cluster=eks_api.cluster, region=REGION, retries=POLICY)
    orch = EksOrchestrator(settings, BackendContext(root=tmp_path, cache_dir=tmp_path / "cache"))
    assert orch.status("nothing-here").state == "absent"
    _matches(orch._sts.meta.config)
