"""Test services for the AWS backends: moto's real server, an ECR-shaped registry, an EKS-shaped API server.

- :func:`start_moto` runs moto's server (``moto[server]``, the werkzeug app
  ``moto_server`` serves) in this process on a free loopback port: S3, ECR's
  API, EKS's API and STS answer there over real HTTP. In-process, so a test
  can point a cluster moto created at a local API server (:meth:`MotoService.set_cluster_endpoint`).
- moto has no image endpoint: :func:`start_ecr_registry` starts a real
  ``docker-registry`` whose only user is ECR's ``AWS`` user with the password
  moto's ``GetAuthorizationToken`` hands out, so a push works only with the token.
- :class:`EksApiServer` is the fake Kubernetes API server that authenticates
  like EKS: it accepts only ``k8s-aws-v1.`` tokens whose presigned STS URL is
  correctly signed for the cluster (:func:`verify_eks_token`, which recomputes
  the SigV4 signature with botocore: STS would check exactly that).
- :class:`S3ErrorServer` answers every request with one S3 error response
  (301 wrong region, 403 access denied): moto's server grants everything and
  ignores regions, so those answers come from here, parsed by the real botocore.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipway.localhttp import LocalServer, QuietHandler
from shipway.testing.services import RegistryService, ServiceError, free_port, start_registry, wait_for_http
from shipway_kubernetes.testing import FakeApiServer

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
TEST_ACCESS_KEY = "AKIASHIPWAYTESTS0001"


@dataclass
class MotoService:
    """moto's server on 127.0.0.1, with the environment that points boto3 at it."""

    port: int
    secret_key: str
    server: Any = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, region: str = REGION) -> dict[str, str]:
        """Environment for a boto3 process: this endpoint, test keys, no profile, no instance metadata."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/nonexistent/shipway-tests/aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/shipway-tests/aws-credentials",
        }

    def client(self, service: str, region: str = REGION) -> Any:
        """A boto3 client for ``service`` on this server."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=region,
            aws_access_key_id=TEST_ACCESS_KEY,
            aws_secret_access_key=self.secret_key,
        )

    def create_cluster(self, name: str, api_url: str, ca_pem: bytes = b"", region: str = REGION) -> dict[str, Any]:
        """Create an EKS cluster in moto whose endpoint (and CA) are those of a local API server."""
        from moto.eks.models import eks_backends

        self.client("eks", region).create_cluster(
            name=name, roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks-cluster", resourcesVpcConfig={}
        )
        cluster = eks_backends[ACCOUNT][region].clusters[name]
        cluster.endpoint = api_url
        cluster.certificateAuthority = {"data": base64.b64encode(ca_pem or _TEST_CA).decode()}
        return dict(self.client("eks", region).describe_cluster(name=name)["cluster"])

    def ecr_password(self, region: str = REGION) -> str:
        """The password part of the ``AWS:<password>`` token moto's GetAuthorizationToken hands out."""
        data = self.client("ecr", region).get_authorization_token()["authorizationData"][0]
        user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        assert user == "AWS"
        return password

    def stop(self) -> None:
        self.server.stop()


def start_moto() -> MotoService:
    """Start moto's server on a free 127.0.0.1 port (ServiceError when moto[server] is missing)."""
    import secrets

    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        raise ServiceError("moto's server is not installed: pip install 'moto[server]'") from None
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        wait_for_http(f"http://127.0.0.1:{port}/moto-api/", "moto's server", 30)
    except ServiceError:
        server.stop()
        raise
    return MotoService(port=port, secret_key=secrets.token_urlsafe(30), server=server)


def start_ecr_registry(root: Path, moto: MotoService) -> RegistryService:
    """A real registry standing in for ECR's endpoint: user ``AWS``, password = moto's authorization token."""
    return start_registry(root, username="AWS", password=moto.ecr_password())


# -- EKS authentication ---------------------------------------------------------------------------
class TokenRejected(Exception):
    """An EKS bearer token that an EKS API server would refuse."""


def decode_eks_token(token: str) -> str:
    """The presigned STS URL inside a ``k8s-aws-v1.`` token."""
    prefix = "k8s-aws-v1."
    if not token.startswith(prefix):
        raise TokenRejected("no k8s-aws-v1. prefix")
    body = token[len(prefix) :]
    if "=" in body:
        raise TokenRejected("the token must be unpadded base64url")
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except ValueError:
        raise TokenRejected("not base64url") from None


def verify_eks_token(
    token: str, cluster: str, access_key: str, secret_key: str, region: str, now: dt.datetime | None = None
) -> str:
    """Check a token as an EKS API server's authenticator does; return its presigned URL.

    The URL must be an STS ``GetCallerIdentity`` GET, signed with SigV4 for
    ``sts`` in ``region`` by ``access_key``, with ``host`` and ``x-k8s-aws-id``
    (= ``cluster``) among the signed headers, issued within the last 15
    minutes; the signature is recomputed here with botocore's signer.
    """
    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = decode_eks_token(token)
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    one = {k: v[0] for k, v in query.items() if len(v) == 1}
    if one.get("Action") != "GetCallerIdentity" or one.get("Version") != "2011-06-15":
        raise TokenRejected(f"not a GetCallerIdentity request: {one.get('Action')}")
    if one.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
        raise TokenRejected("not signed with AWS4-HMAC-SHA256")
    signed = one.get("X-Amz-SignedHeaders", "").split(";")
    if "host" not in signed or "x-k8s-aws-id" not in signed:
        raise TokenRejected(f"signed headers {signed} must include host and x-k8s-aws-id")
    key_id, _date, scope_region, service, terminator = (one.get("X-Amz-Credential", "").split("/") + [""] * 5)[:5]
    if (key_id, scope_region, service, terminator) != (access_key, region, "sts", "aws4_request"):
        raise TokenRejected(f"credential scope {one.get('X-Amz-Credential')!r} is not {access_key}/…/{region}/sts")
    stamp = one.get("X-Amz-Date", "")
    issued = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    age = ((now or dt.datetime.now(dt.UTC)) - issued).total_seconds()
    if not -60 <= age <= 15 * 60:
        raise TokenRejected(f"token issued {age:.0f}s ago (tokens live 15 minutes)")
    # Recompute the signature over the same request with botocore's own SigV4 code.
    unsigned = urllib.parse.urlencode([(k, v) for k, values in query.items() for v in values if k != "X-Amz-Signature"])
    request = AWSRequest(
        method="GET",
        url=urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, unsigned, "")),
        headers={"x-k8s-aws-id": cluster},
    )
    request.context["timestamp"] = stamp
    signer = SigV4QueryAuth(Credentials(access_key, secret_key), "sts", region, expires=int(one["X-Amz-Expires"]))
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if expected != one.get("X-Amz-Signature"):
        raise TokenRejected("signature does not match (wrong secret, cluster name or tampered URL)")
    return url


class EksApiServer(FakeApiServer):
    """The fake API server behind an EKS endpoint: bearer tokens must be valid EKS tokens.

    Like EKS's authenticator, it verifies the presigned URL's signature (the
    check STS makes when the authenticator calls the URL; moto's server routes
    such a query-signed GET to S3, so it is recomputed here). ``tokens_seen``
    lists every distinct token accepted, so tests can watch tokens being refreshed.
    """

    def __init__(self, cluster: str, moto: MotoService, region: str = REGION, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cluster = cluster
        self.moto = moto
        self.region = region
        self.tokens_seen: list[str] = []
        self.rejected: list[str] = []

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        auth = headers.get("authorization", "")
        bearer = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        if bearer and bearer not in self.tokens_seen:
            try:
                verify_eks_token(bearer, self.cluster, TEST_ACCESS_KEY, self.moto.secret_key, self.region)
                self.tokens_seen.append(bearer)
            except TokenRejected as exc:
                self.rejected.append(str(exc))
                bearer = ""
        headers = {**headers, "authorization": f"Bearer {self.token}" if bearer else "refused"}
        return super().handle(method, raw_path, headers, body)


class S3ErrorServer:
    """An endpoint answering every S3 request with one error, as S3 does (status, XML body, headers)."""

    def __init__(self, status: int, code: str, headers: dict[str, str] | None = None) -> None:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{code}</Message><RequestId>0</RequestId></Error>"
        ).encode()
        extra = headers or {}

        class Handler(QuietHandler):
            def _answer(self) -> None:
                self.read_body()
                self.answer(status, body, {"Content-Type": "application/xml", **extra})

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _answer

        self._server = LocalServer(Handler)

    @property
    def url(self) -> str:
        return self._server.url

    def stop(self) -> None:
        self._server.stop()


# A syntactically valid PEM block for clusters whose endpoint is plain HTTP (the CA is then unused).
_TEST_CA = (
    b"-----BEGIN CERTIFICATE-----\n"
    + base64.encodebytes(b"shipway test cluster CA: the fake API server speaks plain HTTP")
    + b"-----END CERTIFICATE-----\n"
)
