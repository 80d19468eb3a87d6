"""The eks orchestrator: DescribeCluster from moto, EKS tokens checked by the API server, the contract."""

from __future__ import annotations

import base64
import time
import urllib.parse
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shipway.backends.base import BackendContext
from shipway.errors import AuthError, BackendError, ConfigError
from shipway.testing.contracts import OrchestratorContract
from shipway_aws import EksOrchestrator, EksSettings, eks
from shipway_aws.testing import (
    ACCOUNT,
    REGION,
    TEST_ACCESS_KEY,
    EksApiServer,
    MotoService,
    TokenRejected,
    verify_eks_token,
)


def make_eks(cluster: str, tmp_path: Path, **options: Any) -> EksOrchestrator:
    settings = EksSettings(kind="eks", cluster=cluster, region=REGION, deadline=8, **options)
    return EksOrchestrator(settings, BackendContext(root=tmp_path, cache_dir=tmp_path / "cache"))


class TestEksOrchestrator(OrchestratorContract):
    @pytest.fixture
    def orchestrator(self, shipway_aws_env: MotoService, eks_api: EksApiServer, tmp_path: Path) -> EksOrchestrator:
        return make_eks(eks_api.cluster, tmp_path)


def test_the_token_is_a_correctly_signed_presigned_sts_url(shipway_aws_env: MotoService) -> None:
    token = eks.make_token(shipway_aws_env.client("sts"), "ml-eks")
    assert token.startswith("k8s-aws-v1.")
    assert "=" not in token
    url = base64.urlsafe_b64decode(token.removeprefix("k8s-aws-v1.") + "==").decode()
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert query["Action"] == "GetCallerIdentity"
    assert query["X-Amz-SignedHeaders"] == "host;x-k8s-aws-id"
    assert query["X-Amz-Expires"] == "60"
    assert query["X-Amz-Credential"].startswith(f"{TEST_ACCESS_KEY}/")
    # The signature, recomputed with botocore's SigV4 signer from the secret, matches.
    assert verify_eks_token(token, "ml-eks", TEST_ACCESS_KEY, shipway_aws_env.secret_key, REGION) == url


def test_a_token_for_another_cluster_or_secret_does_not_verify(shipway_aws_env: MotoService) -> None:
    token = eks.make_token(shipway_aws_env.client("sts"), "ml-eks")
    with pytest.raises(TokenRejected, match="signature does not match"):
        verify_eks_token(token, "other-cluster", TEST_ACCESS_KEY, shipway_aws_env.secret_key, REGION)
    with pytest.raises(TokenRejected, match="signature does not match"):
        verify_eks_token(token, "ml-eks", TEST_ACCESS_KEY, "not-the-secret", REGION)
    url = base64.urlsafe_b64decode(token.removeprefix("k8s-aws-v1.") + "==").decode()
    tampered = url.replace("Action=GetCallerIdentity", "Action=GetCallerIdentity&Extra=1")
    forged = "k8s-aws-v1." + base64.urlsafe_b64encode(tampered.encode()).decode().rstrip("=")
    with pytest.raises(TokenRejected, match="signature does not match"):
        verify_eks_token(forged, "ml-eks", TEST_ACCESS_KEY, shipway_aws_env.secret_key, REGION)


def test_the_token_is_refreshed_before_it_expires(
    shipway_aws_env: MotoService, eks_api: EksApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    orchestrator = make_eks(eks_api.cluster, tmp_path)
    start = eks._now()
    assert orchestrator.status("nothing").state == "absent"
    monkeypatch.setattr(eks, "_now", lambda: start + timedelta(minutes=12))
    assert orchestrator.status("nothing").state == "absent"
    assert orchestrator.tokens_made == 1
    time.sleep(1.1)  # a new token is signed with a new X-Amz-Date (SigV4 has one-second resolution)
    monkeypatch.setattr(eks, "_now", lambda: start + timedelta(minutes=13, seconds=1))
    assert orchestrator.status("nothing").state == "absent"
    assert orchestrator.tokens_made == 2
    assert len(eks_api.tokens_seen) == 2  # the API server accepted both, each verified
    assert eks_api.rejected == []


def test_a_cluster_that_refuses_the_identity_names_access_entries(
    shipway_aws_env: MotoService, eks_api: EksApiServer, tmp_path: Path
) -> None:
    name = eks_api.cluster
    eks_api.cluster = "another-cluster"  # the server now takes only tokens signed for another cluster
    with pytest.raises(AuthError, match="needs an EKS access entry"):
        make_eks(name, tmp_path).status("x")
    assert "signature does not match" in eks_api.rejected[0]


def test_unknown_cluster_is_a_config_error(shipway_aws_env: MotoService, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"orchestrator.cluster: EKS cluster 'nope' not found in {REGION}"):
        make_eks("nope", tmp_path).status("x")


def test_a_cluster_that_is_not_active_is_a_backend_error(
    shipway_aws_env: MotoService, eks_api: EksApiServer, tmp_path: Path
) -> None:
    from moto.eks.models import eks_backends

    eks_backends[ACCOUNT][REGION].clusters[eks_api.cluster].status = "CREATING"
    with pytest.raises(BackendError, match="the cluster is CREATING, not ACTIVE"):
        make_eks(eks_api.cluster, tmp_path).status("x")


def test_no_aws_credentials_names_the_chain(
    shipway_aws_env: MotoService, eks_api: EksApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(AuthError, match="no AWS credentials found"):
        make_eks(eks_api.cluster, tmp_path).status("x")


def test_eks_takes_no_kubeconfig_and_no_keys() -> None:
    with pytest.raises(ValueError, match="eks gets its credentials from AWS"):
        EksSettings(kind="eks", cluster="c", kubeconfig="~/.kube/config")
    with pytest.raises(ValueError, match="AWS credentials never go in the file"):
        EksSettings(kind="eks", cluster="c", aws_access_key_id="AKIA")  # type: ignore[call-arg]
