from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shipway_aws.testing import EksApiServer, MotoService


@pytest.fixture
def eks_api(
    shipway_docker: None, shipway_aws_moto: MotoService, shipway_contract_registry: Any
) -> Iterator[EksApiServer]:
    """An EKS cluster in moto whose endpoint is a fake API server (real containers as pods) that
    accepts only EKS tokens signed for it; pods pull with the kit registry's credentials."""
    name = f"ml-eks-{uuid.uuid4().hex[:8]}"
    server = EksApiServer(name, shipway_aws_moto, pull_auth=shipway_contract_registry.credentials()).start()
    shipway_aws_moto.create_cluster(name, server.url)
    yield server
    server.stop()
