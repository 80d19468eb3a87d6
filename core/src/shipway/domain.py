"""The data that flows through shipway: model refs and versions, images, builds, releases."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_MAX_PATH = 1024


def utcnow() -> datetime:
    return datetime.now(UTC)


class Frozen(BaseModel):
    """Base of the value objects: immutable, unknown fields are errors."""

    # defer_build: compiled when first used, so reading a config does not pay for every model here
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Record(BaseModel):
    """Base of the results and records a command writes (compiled when first used, as :class:`Frozen`)."""

    model_config = ConfigDict(defer_build=True)


def valid_model_name(name: str) -> bool:
    """Model names: letters, digits, '.', '_' and '-', starting with a letter or digit."""
    return isinstance(name, str) and bool(_MODEL_NAME_RE.match(name))


def valid_version(version: str) -> bool:
    """Versions and aliases share one safe alphabet (they become paths and tags)."""
    return isinstance(version, str) and bool(_VERSION_RE.match(version)) and version != "latest"


def valid_digest(digest: str) -> bool:
    """A model version digest: ``sha256:`` and 64 lowercase hex digits."""
    return isinstance(digest, str) and bool(_DIGEST_RE.match(digest))


def check_relative_path(path: str) -> str:
    """Return ``path`` if it is a safe, normalised, relative POSIX path; raise ValueError otherwise.

    Model file paths come from manifests that anyone with write access to a store
    can edit, and they become paths on the runner and in the image: no absolute
    path, no ``..``/``.``/empty segment, no backslash, NUL or control character.
    """
    if not isinstance(path, str) or not path:
        raise ValueError("a file path must be a non-empty string")
    if len(path) > _MAX_PATH:
        raise ValueError(f"a file path is longer than {_MAX_PATH} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise ValueError(f"file path {path[:80]!r} holds a control character")
    if "\\" in path:
        raise ValueError(f"file path {path[:80]!r} holds a backslash")
    if path.startswith("/"):
        raise ValueError(f"file path {path[:80]!r} is absolute")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"file path {path[:80]!r} is not normalised (empty, '.' or '..' segment)")
    return path


class ModelRef(Frozen):
    """A model as selected in YAML: a name plus `latest`, a version, `@alias` or a pinned `sha256:` digest."""

    name: str
    select: str = "latest"

    @property
    def alias(self) -> str | None:
        return self.select[1:] if self.select.startswith("@") else None

    @property
    def digest(self) -> str | None:
        """The pinned version digest (``sha256:…``), when the selector is one."""
        return self.select if self.select.startswith("sha256:") else None

    @property
    def is_latest(self) -> bool:
        return self.select == "latest"

    def __str__(self) -> str:
        return f"{self.name}:{self.select}" if not self.digest else f"{self.name}@{self.select}"


class ModelFile(Frozen):
    """One file of a model version, relative to the version's root."""

    path: str
    size: int = Field(ge=0)
    sha256: str

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return check_relative_path(value)

    @field_validator("sha256")
    @classmethod
    def _sha256(cls, value: str) -> str:
        if not _SHA256_RE.match(value):
            raise ValueError(f"sha256 must be 64 lowercase hex digits (got {value[:80]!r})")
        return value


class ModelVersion(Frozen):
    """What a model store resolves a ref to. Immutable; `digest` covers the manifest.

    Validation refuses anything unsafe wherever a version comes from (a publish, a
    store's manifest, a remote index): names and versions in the safe alphabet,
    file paths relative and normalised, unique, and no file inside another one.
    """

    name: str
    version: str
    created: datetime
    files: tuple[ModelFile, ...] = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not valid_model_name(value):
            raise ValueError(f"invalid model name {value[:80]!r}: letters, digits, '.', '_' and '-'")
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not valid_version(value):
            raise ValueError(f"invalid version {value[:80]!r}: letters, digits, '.', '_' and '-'")
        return value

    @field_validator("files")
    @classmethod
    def _files(cls, files: tuple[ModelFile, ...]) -> tuple[ModelFile, ...]:
        paths = {f.path for f in files}
        if len(paths) != len(files):
            raise ValueError("two files have the same path")
        for path in paths:
            parts = path.split("/")
            for end in range(1, len(parts)):
                if "/".join(parts[:end]) in paths:
                    raise ValueError(f"file {path[:80]!r} lies inside file {'/'.join(parts[:end])[:80]!r}")
        return files

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
        """The JSON manifest stores write beside a version's files (``digest`` included)."""
        data = self.model_dump(mode="json")
        data["digest"] = self.digest
        return data

    @classmethod
    def from_manifest(cls, data: Any) -> ModelVersion:
        """Parse a stored manifest: every field validated, and its recorded ``digest`` checked.

        Raises ValueError (pydantic's ValidationError is one) for an unsafe or
        malformed manifest, and when the recorded digest differs from the
        content: files and their sha256 changed together in the store.
        """
        if not isinstance(data, dict):
            raise ValueError("a manifest must be a JSON object")
        body = {k: v for k, v in data.items() if k != "digest"}
        version = cls.model_validate(body)
        recorded = data.get("digest")
        if recorded is not None and recorded != version.digest:
            raise ValueError(
                f"recorded digest {str(recorded)[:80]} != {version.digest}: the manifest was changed after publishing"
            )
        return version


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
    committed: datetime | None = None
    """Commit time: the source date of reproducible builds (``SOURCE_DATE_EPOCH`` convention)."""


StageStatus = Literal["ok", "failed", "skipped"]


class StageResult(Record):
    """One stage of a run or release: its outcome, duration and a short detail."""

    name: str
    status: StageStatus
    seconds: float
    detail: str = ""


class CheckResult(Record):
    """The outcome of one verify check."""

    check: str
    ok: bool
    detail: str = ""
    response: str = ""
    """The start of the response body (for reports), whitespace collapsed."""


class BuildRecord(Record):
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
    action: Literal["built", "reused"] = "built"
    """``reused``: a verified build of the same inputs was already in the registry; nothing was built or pushed."""
    inputs: str | None = None
    """Digest of everything the image is made from (see :mod:`shipway.inputs`)."""
    model_layer: str | None = None
    uploaded_bytes: int | None = None
    """Bytes sent to the registry by this run (blobs and manifests)."""
    created: datetime = Field(default_factory=utcnow)
    stages: list[StageResult] = Field(default_factory=list)
    checks: list[CheckResult] = Field(default_factory=list)
    status: Literal["ok", "failed"] = "ok"
    error: str | None = None


class Release(Record):
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


class Deployment(Record):
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


class ReleaseRecord(Record):
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
