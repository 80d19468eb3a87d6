"""The ``ecr`` registry: Amazon Elastic Container Registry.

Auth is ECR's own: ``ecr:GetAuthorizationToken`` (credentials from the boto3
chain) returns ``AWS:<password>``, valid until ``expiresAt`` (12 hours); it is
cached until then and fetched again once when the registry answers 401. The
repository is created on first push when missing (immutable tags, scan on
push, AES256 or KMS encryption). Everything else — push by digest, tags,
labels, newest verified build — is the generic OCI registry's.

In an immutable repository ECR refuses any push to an existing tag, even of
the same image; a re-run of the same commit then finds the tag already holding
that image (same config digest as the local image) and pushes nothing.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import Field, model_validator

from shipway.backends.base import BackendContext, BackendSettings
from shipway.backends.oci_registry import OciRegistry, OciRegistrySettings
from shipway.domain import ImageRef
from shipway.errors import AuthError, BackendError, NotFound
from shipway.manifest import Image
from shipway_aws.session import (
    NoLiteralCredentials,
    botocore_config,
    credential_source,
    error_code,
    session,
    translate,
)

ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
TOKEN_LIFETIME = timedelta(hours=12)  # what ECR documents for authorization tokens
REFRESH_MARGIN = timedelta(minutes=5)
PUSH_ACTIONS = (
    "ecr:GetAuthorizationToken, ecr:DescribeRepositories, ecr:CreateRepository (first push), "
    "ecr:BatchCheckLayerAvailability, ecr:InitiateLayerUpload, ecr:UploadLayerPart, ecr:CompleteLayerUpload, "
    "ecr:PutImage, ecr:BatchGetImage, ecr:ListImages"
)


def _now() -> datetime:
    return datetime.now(UTC)


class EcrSettings(NoLiteralCredentials, OciRegistrySettings):
    """``registry: {kind: ecr, account: "123456789012", region: eu-west-1, repository: digits-api}``."""

    kind: str = "ecr"
    address: str = Field("", description="Derived from account and region, or from registry")
    account: str | None = Field(None, pattern=r"^\d{12}$", description="AWS account ID of the registry")
    region: str | None = Field(None, description="Registry region; default: the boto3 chain (AWS_REGION)")
    registry: str | None = Field(
        None, description="Registry host instead of account+region (e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com)"
    )
    profile: str | None = Field(None, description="Named profile from the AWS config files")
    create_repository: bool = Field(True, description="Create the repository on first push when missing")
    immutable_tags: bool = Field(True, description="imageTagMutability of a repository shipway creates")
    scan_on_push: bool = Field(True, description="Basic scanning of every pushed image (created repositories)")
    encryption: Literal["AES256", "KMS"] = Field("AES256", description="Encryption of created repositories")
    kms_key: str | None = Field(None, description="KMS key ARN or alias for encryption: KMS (default: AWS managed)")

    @model_validator(mode="after")
    def _where(self) -> EcrSettings:
        if self.username or self.password:
            raise ValueError("ecr signs in with an ECR authorization token: remove username and password")
        if self.registry:
            found = ECR_HOST.match(self.registry)
            if found:
                self.account = self.account or found["account"]
                self.region = self.region or found["region"]
            self.address = self.registry
        elif self.account and self.region:
            self.address = f"{self.account}.dkr.ecr.{self.region}.amazonaws.com"
        else:
            raise ValueError("give account and region (or registry: <account>.dkr.ecr.<region>.amazonaws.com)")
        if self.kms_key and self.encryption != "KMS":
            raise ValueError("kms_key needs encryption: KMS")
        return self


class EcrRegistry(OciRegistry):
    """Amazon ECR: an authorization token from the boto3 chain, then plain OCI."""

    kind = "ecr"
    Settings = EcrSettings
    settings: EcrSettings

    def __init__(self, settings: BackendSettings, context: BackendContext | None = None) -> None:
        super().__init__(settings, context)
        self._ecr: Any = None
        self._session: Any = None
        self._expires: datetime | None = None
        self._mutability: str | None = None

    # -- ECR's API -------------------------------------------------------------------
    @property
    def ecr(self) -> Any:
        """The boto3 ECR client, built on first use."""
        if self._ecr is None:
            self._session = session(self.settings.region, self.settings.profile)
            self._ecr = self._session.client("ecr", config=botocore_config(self.settings.retries))
        return self._ecr

    def _registry_id(self) -> dict[str, Any]:
        return {"registryId": self.settings.account} if self.settings.account else {}

    def _aws(self, what: str, func: Any, **kwargs: Any) -> Any:
        """One ECR API call; AWS errors become one clear line."""
        import botocore.exceptions as bx

        try:
            return func(**kwargs)
        except (bx.BotoCoreError, bx.ClientError) as exc:
            found = translate(exc, f"ECR registry {self.address}: {what}", PUSH_ACTIONS)
            if found is not None:
                raise found from None
            if isinstance(exc, bx.ClientError):
                raise
            raise BackendError(f"ECR registry {self.address}: {what}: {type(exc).__name__}") from None

    # -- credentials -------------------------------------------------------------------
    def _credentials(self) -> tuple[dict[str, str] | None, str]:
        answer = self._aws("GetAuthorizationToken", self.ecr.get_authorization_token, **self._ids())
        data = (answer.get("authorizationData") or [{}])[0]
        try:
            user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        except (KeyError, ValueError):
            raise BackendError(f"ECR registry {self.address}: GetAuthorizationToken returned no usable token") from None
        expires = data.get("expiresAt")
        now = _now()
        # A token that is already past its expiry on arrival (clock skew, a stand-in) is trusted for
        # ECR's documented lifetime; a 401 still fetches a new one.
        self._expires = expires if isinstance(expires, datetime) and expires > now else now + TOKEN_LIFETIME
        auth = {"username": user, "password": password, "serveraddress": self.address}
        return auth, f"ECR authorization token, {credential_source(self._session)}"

    def _ids(self) -> dict[str, Any]:
        return {"registryIds": [self.settings.account]} if self.settings.account else {}

    def _forget_token(self) -> None:
        self._creds = None
        self._client = None
        self._expires = None

    def credentials(self) -> dict[str, str] | None:
        """Docker auth for ECR, fetched again shortly before the token expires."""
        if self._expires is not None and _now() >= self._expires - REFRESH_MARGIN:
            self._forget_token()
        return super().credentials()

    @property
    def api(self) -> Any:
        self.credentials()  # drops an expiring token (and the client holding it) first
        return super().api

    def login(self) -> None:
        """Check the token against the registry, and that the repository exists (created when missing).

        This is ``shipway run``'s preflight: a missing permission shows before the tests and the build.
        """
        try:
            super().login()
        except AuthError:
            self._forget_token()  # refreshed once: the cached token may have been revoked
            super().login()
        self.ensure_repository()

    # -- repository --------------------------------------------------------------------
    def ensure_repository(self) -> str:
        """The repository's tag mutability (``IMMUTABLE``/``MUTABLE``), creating the repository when missing."""
        if self._mutability is not None:
            return self._mutability
        import botocore.exceptions as bx

        name = self.settings.repository
        try:
            found = self._aws(
                "DescribeRepositories",
                self.ecr.describe_repositories,
                repositoryNames=[name],
                **self._registry_id(),
            )["repositories"][0]
        except bx.ClientError as exc:
            if error_code(exc) != "RepositoryNotFoundException":
                raise BackendError(f"ECR registry {self.address}: DescribeRepositories: {error_code(exc)}") from None
            if not self.settings.create_repository:
                raise NotFound(
                    f"ECR repository {name!r} does not exist in {self.address} (create it, or set "
                    "registry.create_repository: true)"
                ) from None
            found = self._create(name)
        self._mutability = str(found.get("imageTagMutability", "MUTABLE"))
        return self._mutability

    def _create(self, name: str) -> dict[str, Any]:
        import botocore.exceptions as bx

        s = self.settings
        encryption: dict[str, str] = {"encryptionType": s.encryption}
        if s.kms_key:
            encryption["kmsKey"] = s.kms_key
        try:
            created = self._aws(
                "CreateRepository",
                self.ecr.create_repository,
                repositoryName=name,
                imageTagMutability="IMMUTABLE" if s.immutable_tags else "MUTABLE",
                imageScanningConfiguration={"scanOnPush": s.scan_on_push},
                encryptionConfiguration=encryption,
                **self._registry_id(),
            )
            self.context.reporter.info(f"  created ECR repository {name} ({created['repository']['repositoryUri']})")
            return dict(created["repository"])
        except bx.ClientError as exc:
            if error_code(exc) != "RepositoryAlreadyExistsException":  # a concurrent first push created it
                raise BackendError(f"ECR registry {self.address}: CreateRepository: {error_code(exc)}") from None
            return dict(
                self._aws(
                    "DescribeRepositories",
                    self.ecr.describe_repositories,
                    repositoryNames=[name],
                    **self._registry_id(),
                )["repositories"][0]
            )

    # -- push --------------------------------------------------------------------------
    def upload_blobs(self, image: Image) -> int:
        self.ensure_repository()
        try:
            return super().upload_blobs(image)
        except AuthError:
            self._forget_token()  # refreshed once when the registry answers 401
            return super().upload_blobs(image)

    def push_image(self, image: Image, tags: Sequence[str]) -> ImageRef:
        """Push an assembled image through the distribution API (the repository created first when missing).

        An existing tag already naming this image is fine (a re-run of the same commit); another
        image under it is refused, which an immutable repository would refuse anyway.
        """
        self.ensure_repository()
        try:
            return super().push_image(image, tags)
        except AuthError:
            self._forget_token()  # refreshed once when the registry answers 401
            return super().push_image(image, tags)

    def push(self, local_image: str, tag: str) -> ImageRef:
        self.ensure_repository()
        try:
            return self._push_once(local_image, tag)
        except AuthError:
            self._forget_token()  # refreshed once when the registry answers 401
            return self._push_once(local_image, tag)

    def _push_once(self, local_image: str, tag: str) -> ImageRef:
        existing = self._same_image_under(tag, local_image)
        if existing is not None:
            return existing
        try:
            return super().push(local_image, tag)
        except AuthError:
            raise
        except BackendError:
            existing = self._same_image_under(tag, local_image)  # another runner pushed it meanwhile
            if existing is not None:
                return existing
            raise

    def _same_image_under(self, tag: str, local_image: str) -> ImageRef | None:
        """The tag's reference when it already holds ``local_image`` (same config digest); None when absent.

        BackendError when the tag holds another image in an immutable repository.
        """
        from shipway import dockerutil

        repo = self.settings.repository
        try:
            digest, manifest = self.api.manifest(repo, tag)
        except NotFound:
            return None
        image_id = dockerutil.client().images.get(local_image).id
        if (manifest.get("config") or {}).get("digest") == image_id:
            self.context.reporter.info(f"  {self.repository()}:{tag} already holds this image: nothing to push")
            return ImageRef(repository=self.repository(), tag=tag, digest=digest)
        if self.ensure_repository() == "IMMUTABLE":
            raise BackendError(
                f"{self.repository()}:{tag} already holds another image and the repository's tags are immutable"
            )
        return None
