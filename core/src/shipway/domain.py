"""The data that flows through shipway: model refs and versions, images, builds, releases."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelRef(Frozen):
    """A model as selected in YAML: a name plus `latest`, a version, or `@alias`."""

    name: str
    select: str = "latest"

    @property
    def alias(self) -> str | None:
        return self.select[1:] if self.select.startswith("@") else None

    @property
    def is_latest(self) -> bool:
        return self.select == "latest"

    def __str__(self) -> str:
        return f"{self.name}:{self.select}"


def valid_model_name(name: str) -> bool:
    """Model names: letters, digits, '.', '_' and '-', starting with a letter or digit."""
    return bool(_MODEL_NAME_RE.match(name))


def valid_version(version: str) -> bool:
    """Versions and aliases share one safe alphabet (they become paths and tags)."""
    return bool(_VERSION_RE.match(version)) and version != "latest"


class ModelFile(Frozen):
    """One file of a model version, relative to the version's root."""

    path: str
    size: int
    sha256: str


class ModelVersion(Frozen):
    """What a model store resolves a ref to. Immutable; `digest` covers the manifest."""

    name: str
    version: str
    created: datetime
    files: tuple[ModelFile, ...]
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def digest(self) -> str:
        """sha256 over the canonical manifest (name, version, files, metadata)."""
        body = {
            "name": self.name,
            "version": self.version,
            "files": [f.model_dump() for f in sorted(self.files, key=lambda f: f.path)],
            "metadata": self.metadata,
        }
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(canonical).hexdigest()

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def manifest(self) -> dict[str, Any]:
        """The JSON manifest stores write beside a version's files."""
        data = self.model_dump(mode="json")
        data["digest"] = self.digest
        return data

    @classmethod
    def from_manifest(cls, data: dict[str, Any]) -> ModelVersion:
        body = {k: v for k, v in data.items() if k != "digest"}
        return cls.model_validate(body)


class ImageRef(Frozen):
    """An image in a registry: `repository` (with host), an optional tag, and its digest."""

    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def pinned(self) -> str:
        """The reference to deploy: by digest, never by mutable tag."""
        if not self.digest:
            raise ValueError(f"image {self} has no digest")
        return f"{self.repository}@{self.digest}"

    def __str__(self) -> str:
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag or 'latest'}"

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Parse `host/repo:tag`, `host/repo@sha256:…` or `host/repo:tag@sha256:…`."""
        digest = None
        if "@" in text:
            text, digest = text.split("@", 1)
        tag = None
        slash = text.rfind("/")
        colon = text.rfind(":")
        if colon > slash:
            text, tag = text[:colon], text[colon + 1 :]
        return cls(repository=text, tag=tag, digest=digest)


class SourceInfo(Frozen):
    """Where the code of a build came from."""

    commit: str
    dirty: bool
    branch: str | None = None
    url: str | None = None


StageStatus = Literal["ok", "failed", "skipped"]


class StageResult(BaseModel):
    """One stage of a run or release: its outcome, duration and a short detail."""

    name: str
    status: StageStatus
    seconds: float
    detail: str = ""


class CheckResult(BaseModel):
    """The outcome of one verify check."""

    check: str
    ok: bool
    detail: str = ""


class BuildRecord(BaseModel):
    """Traces one image to its commit and model version. Written as JSON after a run."""

    kind: Literal["build"] = "build"
    app: str
    source: SourceInfo
    model: ModelVersion | None = None
    model_digest: str | None = None
    image: ImageRef | None = None
    local_image_id: str | None = None
    layers: list[str] = Field(default_factory=list)
    base_image: str | None = None
    created: datetime = Field(default_factory=utcnow)
    stages: list[StageResult] = Field(default_factory=list)
    checks: list[CheckResult] = Field(default_factory=list)
    status: Literal["ok", "failed"] = "ok"
    error: str | None = None


class Release(BaseModel):
    """What to run where: one image, by digest, for one app and environment."""

    app: str
    environment: str = "default"
    image: ImageRef
    port: int
    health: str
    replicas: int = 1
    env: dict[str, str] = Field(default_factory=dict)
    secrets: dict[str, SecretStr] = Field(default_factory=dict, exclude=True)
    """Secret name → value, delivered as a read-only file ``/run/secrets/<name>`` (never as an env value,
    a label, a build arg or an image layer). Orchestrators use their native secret object where they have
    one (a Docker secret on Swarm, a Kubernetes Secret volume) and a private bind-mounted file otherwise."""
    labels: dict[str, str] = Field(default_factory=dict)


RolloutState = Literal["absent", "progressing", "healthy", "failed", "rolled_back", "stopped"]


class Deployment(BaseModel):
    """What an orchestrator reports for an app: the image live, readiness and revisions."""

    app: str
    environment: str = "default"
    image: ImageRef | None = None
    state: RolloutState = "absent"
    replicas_desired: int = 0
    replicas_ready: int = 0
    running_digests: list[str] = Field(default_factory=list)
    """Digests the ready replicas actually run (differs from ``image`` mid-rollout or after a failed one)."""
    revision: int = 0
    previous_image: ImageRef | None = None
    endpoint: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    message: str = ""

    @property
    def digest(self) -> str | None:
        return self.image.digest if self.image else None


class ReleaseRecord(BaseModel):
    """The outcome of `shipway release`. Written as JSON."""

    kind: Literal["release"] = "release"
    app: str
    environment: str
    image: ImageRef | None
    previous: ImageRef | None = None
    action: Literal["deployed", "noop", "skipped", "rolled_back", "failed"]
    message: str = ""
    created: datetime = Field(default_factory=utcnow)
    stages: list[StageResult] = Field(default_factory=list)
    checks: list[CheckResult] = Field(default_factory=list)
    error: str | None = None
