"""pytest plugin (entry point ``pytest11``): AWS stand-ins for backend and end-to-end tests.

Fixtures
--------
``shipway_aws_moto``      moto's server on a free 127.0.0.1 port, one per session (fails, never skips)
``shipway_aws_env``       boto3 in this process pointed at ``shipway_aws_moto`` with test keys
                          (no profile, no instance metadata)
``shipway_ecr_registry``  a real registry standing in for ECR's endpoint, accepting only moto's ECR token
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shipway.testing.services import RegistryService, ServiceError
from shipway_aws.testing import MotoService, start_ecr_registry, start_moto


@pytest.fixture(scope="session")
def shipway_aws_moto() -> Iterator[MotoService]:
    """moto's server (S3, ECR API, EKS API, STS) on 127.0.0.1."""
    try:
        service = start_moto()
    except ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield service
    service.stop()


@pytest.fixture
def shipway_aws_env(shipway_aws_moto: MotoService, monkeypatch: pytest.MonkeyPatch) -> MotoService:
    """Point boto3 in this process at ``shipway_aws_moto`` for one test."""
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    for key, value in shipway_aws_moto.env().items():
        monkeypatch.setenv(key, value)
    return shipway_aws_moto


@pytest.fixture(scope="session")
def shipway_ecr_registry(
    shipway_aws_moto: MotoService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryService]:
    """A registry whose only user is ``AWS`` with moto's authorization token as password."""
    try:
        reg = start_ecr_registry(tmp_path_factory.mktemp("ecr"), shipway_aws_moto)
    except ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield reg
    reg.stop()
