"""pytest plugin (entry point ``pytest11``): AWS stand-ins for backend and end-to-end tests.

Fixtures
--------
``aws_moto``      moto's server on a free 127.0.0.1 port, one per session (fails, never skips)
``aws_env``       boto3 in this process pointed at ``aws_moto`` with test keys (no profile, no instance metadata)
``ecr_registry``  a real registry standing in for ECR's endpoint, accepting only moto's ECR token
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shipway.testing.services import RegistryService, ServiceError
from shipway_aws.testing import MotoService, start_ecr_registry, start_moto


@pytest.fixture(scope="session")
def aws_moto() -> Iterator[MotoService]:
    """moto's server (S3, ECR API, EKS API, STS) on 127.0.0.1."""
    try:
        service = start_moto()
    except ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield service
    service.stop()


@pytest.fixture
def aws_env(aws_moto: MotoService, monkeypatch: pytest.MonkeyPatch) -> MotoService:
    """Point boto3 in this process at ``aws_moto`` for one test."""
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    for key, value in aws_moto.env().items():
        monkeypatch.setenv(key, value)
    return aws_moto


@pytest.fixture(scope="session")
def ecr_registry(aws_moto: MotoService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryService]:
    """A registry whose only user is ``AWS`` with moto's authorization token as password."""
    try:
        reg = start_ecr_registry(tmp_path_factory.mktemp("ecr"), aws_moto)
    except ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield reg
    reg.stop()
