"""The ``eks`` orchestrator: the generic Kubernetes orchestrator, with credentials from AWS.

The cluster's endpoint and CA come from ``eks:DescribeCluster``; the bearer
token is made the way ``aws eks get-token`` makes it: a presigned STS
``GetCallerIdentity`` URL whose signature covers the ``x-k8s-aws-id: <cluster>``
header, base64url-encoded without padding, prefixed ``k8s-aws-v1.``. EKS
accepts such a token for 15 minutes; the client asks for a new one before
each request once it is 13 minutes old, so long rollouts never send an
expired token. No kubeconfig and no ``aws`` binary are needed.
"""

from __future__ import annotations

import base64
import binascii
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field, model_validator

from shipway.backends.base import BackendSettings
from shipway.errors import AuthError, BackendError, ConfigError
from shipway_aws.session import NoLiteralCredentials, botocore_config, error_code, session, translate
from shipway_kubernetes import KubernetesOrchestrator, KubernetesSettings
from shipway_kubernetes.orchestrator import Refused

TOKEN_PREFIX = "k8s-aws-v1."
CLUSTER_HEADER = "x-k8s-aws-id"
TOKEN_EXPIRY = timedelta(minutes=14)  # what `aws eks get-token` reports; EKS accepts 15
REFRESH_MARGIN = timedelta(minutes=1)
PRESIGN_SECONDS = 60


def _now() -> datetime:
    return datetime.now(UTC)


def make_token(sts: Any, cluster: str) -> str:
    """An EKS bearer token for ``cluster`` from an STS client (its credentials sign the URL)."""

    def add_cluster_header(request: Any, **_: Any) -> None:
        request.headers[CLUSTER_HEADER] = cluster

    sts.meta.events.register("before-sign.sts.GetCallerIdentity", add_cluster_header, unique_id=f"eks-{cluster}")
    url = sts.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=PRESIGN_SECONDS, HttpMethod="GET")
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


class EksSettings(NoLiteralCredentials, KubernetesSettings):
    """``orchestrator: {kind: eks, cluster: ml-eks, region: eu-west-1}``."""

    kind: str = "eks"
    cluster: str = Field(min_length=1, max_length=100, pattern=r"^[0-9A-Za-z][A-Za-z0-9\-_]*$")
    region: str | None = Field(None, description="Cluster region; default: the boto3 chain (AWS_REGION)")
    profile: str | None = Field(None, description="Named profile from the AWS config files (may assume a role)")

    @model_validator(mode="after")
    def _no_kubeconfig(self) -> EksSettings:
        if self.kubeconfig or self.context:
            raise ValueError("eks gets its credentials from AWS: remove kubeconfig/context (or use kind: kubernetes)")
        return self


class EksOrchestrator(KubernetesOrchestrator):
    """Kubernetes releases on EKS, credentials from the AWS chain."""

    kind = "eks"
    Settings = EksSettings
    settings: EksSettings

    def __init__(self, settings: BackendSettings, context: Any = None) -> None:
        super().__init__(settings, context)
        self._sts: Any = None
        self._token: tuple[str, datetime] | None = None
        self._token_lock = threading.Lock()
        self.tokens_made = 0

    def describe(self) -> str:
        s = self.settings
        where = f" in {s.region}" if s.region else ""
        return f"eks orchestrator {s.cluster}{where} (namespace {s.namespace})"

    # -- credentials ------------------------------------------------------------------------
    def token(self) -> str:
        """The current bearer token, made anew when it is within a minute of its expiry."""
        with self._token_lock:
            now = _now()
            if self._token is None or now >= self._token[1] + TOKEN_EXPIRY - REFRESH_MARGIN:
                try:
                    value = make_token(self._sts, self.settings.cluster)
                except Exception as exc:  # noqa: BLE001 - botocore's errors, translated below
                    raise self._aws_error(exc, "sign an STS GetCallerIdentity URL") from None
                self._token = (value, now)
                self.tokens_made += 1
            return self._token[0]

    def _refresh(self, configuration: Any) -> None:
        """The client's refresh hook, called before every request."""
        configuration.api_key["BearerToken"] = self.token()

    def _aws_error(self, exc: BaseException, what: str) -> BackendError:
        hint = "eks:DescribeCluster" if "Describe" in what else "sts:GetCallerIdentity (allowed to every principal)"
        found = translate(exc, f"{self.describe()}: {what}", hint)
        if found is not None:
            return found
        return BackendError(f"{self.describe()}: {what}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")

    def _api_client(self) -> Any:
        import botocore.exceptions as bx
        from kubernetes import client

        s = self.settings
        sess = session(s.region, s.profile)
        config = botocore_config(s.retries)
        try:
            eks = sess.client("eks", config=config)
            self._sts = sess.client("sts", config=config)
            info = eks.describe_cluster(name=s.cluster)["cluster"]
        except bx.ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise ConfigError(
                    f"orchestrator.cluster: EKS cluster {s.cluster!r} not found in {sess.region_name}"
                ) from None
            raise self._aws_error(exc, "DescribeCluster") from None
        except bx.BotoCoreError as exc:
            raise self._aws_error(exc, "DescribeCluster") from None
        status = info.get("status", "")
        if status != "ACTIVE":
            raise BackendError(f"{self.describe()}: the cluster is {status or 'not ready'}, not ACTIVE")
        endpoint = str(info.get("endpoint") or "").rstrip("/")
        if not endpoint:
            raise BackendError(f"{self.describe()}: DescribeCluster returned no endpoint (is the cluster ready?)")
        cfg = client.Configuration()
        cfg.host = endpoint
        cfg.ssl_ca_cert = self._write_ca(info, sess.region_name)
        cfg.verify_ssl = True
        cfg.api_key = {"BearerToken": self.token()}
        cfg.api_key_prefix = {"BearerToken": "Bearer"}
        cfg.refresh_api_key_hook = self._refresh
        return client.ApiClient(cfg)

    def _write_ca(self, info: dict[str, Any], region: str) -> str:
        data = (info.get("certificateAuthority") or {}).get("data") or ""
        try:
            pem = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            pem = b""
        if b"-----BEGIN CERTIFICATE-----" not in pem:
            raise BackendError(f"{self.describe()}: DescribeCluster returned no readable certificate authority")
        path = self.context.cache_dir / "eks" / f"{region}-{self.settings.cluster}-ca.crt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pem)
        return str(path)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str | None = None,
        query: dict[str, Any] | None = None,
        within: float | None = None,
    ) -> Any:
        try:
            return super().request(method, path, body=body, content_type=content_type, query=query, within=within)
        except Refused as exc:
            raise AuthError(
                f"{self.describe()}: {exc}. The IAM principal needs an EKS access entry for the cluster "
                "(e.g. AmazonEKSEditPolicy scoped to the namespace) or a mapping in aws-auth"
            ) from None
