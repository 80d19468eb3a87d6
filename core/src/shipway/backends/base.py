"""The contracts every backend implements: model stores, registries, orchestrators.

A backend class names its ``kind`` (what users write in YAML) and a pydantic
``Settings`` model for its YAML section, and is registered through one of the
``shipway_register_*`` hooks. The engine, not the backends, owns ordering,
retries policy, timeouts, logging, the records and exit codes.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shipway.backends.blobcache import CHUNK as CHUNK  # re-exported: helpers a store may use
from shipway.backends.blobcache import BlobCache, place_version
from shipway.backends.blobcache import sha256_file as sha256_file
from shipway.backends.hoststate import host_lock, read_failed, write_failed
from shipway.domain import (
    Deployment,
    ImageRef,
    ModelFile,
    ModelRef,
    ModelVersion,
    Release,
    valid_model_name,
    valid_version,
)
from shipway.errors import REPUBLISH, IntegrityError, ModelError, NotFound, TagExists
from shipway.manifest import Image
from shipway.progress import NULL_REPORTER, Reporter
from shipway.retry import RetrySettings


class BackendSettings(BaseModel):
    """Base of every backend's settings model: unknown keys are errors.

    An empty string for an optional field means "not set", so YAML can write
    ``username: ${REGISTRY_USER:-}`` and leave the variable unset.
    """

    # defer_build: a settings model is compiled when a config first uses it, not when its plugin loads
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, defer_build=True)  # .inf would never end
    kind: str
    retries: RetrySettings = Field(
        default_factory=RetrySettings,
        description="How this backend retries and times out network calls: attempts, max_seconds, backoff, "
        "max_backoff, connect_timeout, read_timeout (docs/reliability.md)",
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {
                k: v
                for k, v in data.items()
                if not (v == "" and k in cls.model_fields and cls.model_fields[k].default is None)
            }
        return data


@dataclass
class BackendContext:
    """What the engine hands every backend: where the project lives, a cache, a reporter."""

    root: Path = field(default_factory=Path.cwd)
    cache_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("SHIPWAY_CACHE_DIR", Path.home() / ".cache" / "shipway"))
    )
    reporter: Reporter = NULL_REPORTER
    hook: Any = None
    """The plugin host's hook relay, for backends that call hooks (e.g. shipway_render_manifests)."""


class Backend(ABC):
    """Common shape of a backend: a kind, a settings model, and a context."""

    kind: ClassVar[str]
    Settings: ClassVar[type[BackendSettings]]

    def __init__(self, settings: BackendSettings, context: BackendContext | None = None) -> None:
        self.settings = settings
        self.context = context or BackendContext()

    def describe(self) -> str:
        """One line naming where this backend points (never a secret)."""
        return self.kind


def model_sources(path: Path) -> list[tuple[str, Path]]:
    """The files to publish from ``path`` (a file, or a folder walked in sorted order) as (relative path, path).

    A symbolic link is refused rather than dropped or followed (it could point
    anywhere on the publisher's machine); so is a file whose relative path is
    not a safe model path.
    """
    if path.is_symlink():
        raise ModelError(f"{path}: is a symbolic link; publish the file or folder it points to")
    if path.is_file():
        return [(path.name, path)]
    if not path.is_dir():
        raise ModelError(f"{path}: no such file or folder")
    found = []
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).as_posix()
        if p.is_symlink():
            raise ModelError(f"{path}: {rel} is a symbolic link; replace it with the file it points to, or remove it")
        if p.is_file():
            found.append((rel, p))
    if not found:
        raise ModelError(f"{path}: the folder holds no files")
    for rel, _ in found:
        ModelFile.model_validate({"path": rel, "size": 0, "sha256": "0" * 64})  # same path rules as a manifest
    return found


def parse_manifest(data: Any, where: str) -> ModelVersion:
    """A stored manifest as a validated :class:`ModelVersion`; IntegrityError naming ``where`` if it is not one.

    Every store parses manifests through this, so a manifest edited in the store
    (unsafe paths, malformed digests, a recorded digest that no longer matches
    its content) is refused the same way everywhere.
    """
    try:
        return ModelVersion.from_manifest(data)
    except ValidationError as exc:
        errors = exc.errors()
        # A tuple whose only item is refused is also "too short": say only why the item was refused.
        errors = [
            err
            for err in errors
            if not (
                err["type"] == "too_short"
                and any(o["loc"][: len(err["loc"])] == err["loc"] != o["loc"] for o in errors)
            )
        ]
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'manifest'}: {err['msg'].removeprefix('Value error, ')}"
            for err in errors[:3]
        )
        raise IntegrityError(f"{where}: invalid manifest: {problems} ({REPUBLISH})") from None
    except ValueError as exc:
        raise IntegrityError(f"{where}: invalid manifest: {exc} ({REPUBLISH})") from None


def check_publish(name: str, version: str | None, aliases: tuple[str, ...]) -> None:
    """The checks every writable store makes before publishing: ModelError for a bad name, version or alias."""
    if not valid_model_name(name):
        raise ModelError(f"invalid model name {name[:80]!r}: letters, digits, '.', '_' and '-'")
    if version is not None and not valid_version(version):
        raise ModelError(f"invalid version {version[:80]!r}: letters, digits, '.', '_' and '-'")
    for alias in aliases:
        check_alias(alias)


def check_alias(alias: str) -> None:
    """ModelError unless ``alias`` is a valid alias name."""
    if not valid_version(alias):
        raise ModelError(f"invalid alias {alias[:80]!r}: letters, digits, '.', '_' and '-'")


def next_version(versions: list[ModelVersion]) -> str:
    """The number a publish without an explicit version gets: one more than the highest integer version."""
    numbers = [int(v.version) for v in versions if v.version.isdigit()]
    return str(max(numbers, default=0) + 1)


class ModelStore(Backend):
    """A store of versioned models: publish, list, resolve refs, fetch verified files.

    Subclasses implement storage; :meth:`fetch` (integrity checks and the
    content-addressed cache) is shared so every store verifies the same way.
    Stores parse what they read with :func:`parse_manifest` and check what they
    are asked to write with :func:`check_publish`.
    """

    read_only: ClassVar[bool] = False
    """Read-only stores raise :class:`shipway.errors.ReadOnlyStore` from publish and set_alias."""

    @abstractmethod
    def versions(self, name: str) -> list[ModelVersion]:
        """All complete versions of model ``name``, oldest first. Unknown name: empty list.

        A stored manifest that is not valid raises :class:`shipway.errors.IntegrityError`.
        """

    @abstractmethod
    def aliases(self, name: str) -> dict[str, str]:
        """Alias → version for model ``name``."""

    @abstractmethod
    def publish(
        self,
        path: Path,
        name: str,
        version: str | None = None,
        aliases: tuple[str, ...] = (),
        metadata: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Upload a file or folder as a new immutable version (next integer when None).

        A version becomes visible only when complete; publishing an existing
        version raises :class:`shipway.errors.ModelError` and changes nothing.
        """

    @abstractmethod
    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``alias`` of model ``name`` at an existing ``version`` (ModelError, and no change, otherwise)."""

    @abstractmethod
    def _download(self, version: ModelVersion, file: ModelFile, dest: Path) -> None:
        """Write the stored bytes of ``file`` to ``dest``; :meth:`fetch` verifies them.

        ``dest`` may already hold the first bytes of the file from an interrupted
        fetch: a store may resume after them (append the rest), or truncate and
        write it whole — never append the whole file after them.
        """

    def resolve(self, ref: ModelRef) -> ModelVersion:
        """Resolve ``latest``, a version, ``@alias`` or a pinned ``sha256:`` digest to one immutable version."""
        versions = self.versions(ref.name)
        if not versions:
            raise ModelError(
                f"model {ref.name!r} has no versions in {self.describe()} "
                f"(check model.name, or publish one: shipway model publish PATH --name {ref.name})"
            )
        if ref.is_latest:
            return max(versions, key=version_order)
        if ref.digest is not None:
            for v in versions:
                if v.digest == ref.digest:
                    return v
            raise ModelError(
                f"model {ref.name!r} has no version with digest {ref.digest} in {self.describe()} "
                "(the pinned bytes were removed or changed)"
            )
        wanted = ref.select
        if ref.alias is not None:
            table = self.aliases(ref.name)
            if ref.alias not in table:
                known = ", ".join(sorted(table)) or "none"
                raise ModelError(f"model {ref.name!r} has no alias {ref.alias!r} (aliases: {known})")
            wanted = table[ref.alias]
        for v in versions:
            if v.version == wanted:
                return v
        known = ", ".join(v.version for v in versions[-10:])
        raise ModelError(f"model {ref.name!r} has no version {wanted!r} (latest versions: {known})")

    def verified_blobs(self, version: ModelVersion) -> dict[str, Path]:
        """Make sure every file of ``version`` is in the local cache, verified; return path → cached file.

        The cached files are read-only and shared: read them, never change them
        (take a copy with :meth:`fetch`).
        """
        version = ModelVersion.model_validate(version.model_dump())  # also for versions built without validation
        cache = BlobCache(self.context.cache_dir)
        missing = cache.missing(version)
        label = f"fetch {version.name}:{version.version}"
        with self.context.reporter.bytes(label, sum(f.size for f in missing)) as bar:
            return cache.ensure(
                version, lambda f, partial: self._download(version, f, partial), missing=missing, advance=bar.advance
            )

    def cached(self, version: ModelVersion) -> bool:
        """Whether every file of ``version`` is in the local cache, verified (a fetch would move no byte)."""
        return not BlobCache(self.context.cache_dir).missing(version)

    def fetch(self, version: ModelVersion, dest: Path) -> Path:
        """Place the version's files under ``dest``, each one verified by size and sha256.

        Files already in the content-addressed cache are not downloaded again.
        ``dest`` is assembled fresh and renamed into place, so it holds exactly
        the version's files (copies: editing them never edits the cache).
        Returns ``dest``. Raises :class:`shipway.errors.IntegrityError` on any mismatch.
        """
        return place_version(version, self.verified_blobs(version), dest)


def version_order(version: ModelVersion) -> tuple[Any, ...]:
    """How versions sort, oldest first: by creation time, then integers before other names.

    ``latest`` is the last in this order; ``versions()`` lists in this order.
    """
    key = (0, int(version.version), "") if version.version.isdigit() else (1, 0, version.version)
    return (version.created, *key)


class Registry(Backend):
    """An image registry: push local images, resolve tags, read labels, list builds."""

    @abstractmethod
    def repository(self) -> str:
        """The full repository name images are pushed to, host included."""

    @abstractmethod
    def credentials(self) -> dict[str, str] | None:
        """Docker ``auth_config`` (username, password, serveraddress), or None for anonymous."""

    @abstractmethod
    def login(self) -> None:
        """Check the credentials against the registry; raise AuthError naming the credential tried."""

    @abstractmethod
    def push(self, local_image: str, tag: str) -> ImageRef:
        """Push a local image under ``tag`` and return its reference with the registry digest."""

    @abstractmethod
    def resolve(self, tag: str) -> ImageRef:
        """The digest a tag points at; NotFound if the tag does not exist."""

    @abstractmethod
    def exists(self, ref: ImageRef) -> bool:
        """Whether the registry holds the image (by digest when the ref has one)."""

    @abstractmethod
    def labels(self, ref: ImageRef) -> dict[str, str]:
        """The image config's labels."""

    @abstractmethod
    def builds(self, app: str) -> list[tuple[ImageRef, dict[str, str]]]:
        """Verified shipway builds of ``app`` in the repository, newest first, with labels."""

    bytes_uploaded: int = 0
    """Bytes this backend sent to the registry so far (blobs and manifests); kept by push_image."""

    def find(self, tag: str) -> ImageRef | None:
        """The image ``tag`` names, or None: one manifest request (how ``run`` finds a build of the same inputs)."""
        try:
            return self.resolve(tag)
        except NotFound:
            return None

    def upload_blobs(self, image: Image) -> int:
        """Upload the blobs of ``image`` the registry lacks, before its manifest; returns the bytes sent.

        Called while the image is being verified, so a model-only change overlaps
        its upload with the verify run; blobs without a manifest name no image.
        The default does nothing (:meth:`push_image` pushes everything).
        """
        return 0

    def has_model_layer(self, tag: str) -> bool:
        """Whether a push will find the model layer that the model tag ``tag`` names
        (:func:`shipway.inputs.model_tag`) without uploading it. The default: the tag is in this repository."""
        return self.find(tag) is not None

    streams_blobs: ClassVar[bool] = False
    """Whether :meth:`stream_blob` works: the ``oci`` kinds say yes, a registry that only pushes through
    the engine no."""

    def stream_blob(self, chunks: Iterable[bytes], size: int) -> str:
        """Upload ``size`` bytes as they come, their digest known only at the end; returns that digest.

        How the model layer reaches the registry while the store still
        downloads the model. The registry checks the digest when the upload
        ends; the blob names no image until a manifest names it. Counted in
        :attr:`bytes_uploaded`. The default raises NotImplementedError
        (:attr:`streams_blobs` is False).
        """
        raise NotImplementedError(f"{self.kind} registries cannot stream a blob")

    def push_image(self, image: Image, tags: Sequence[str]) -> ImageRef:
        """Push an assembled image (loaded in the engine as ``image.local_id``) under every tag in ``tags``.

        A tag that already exists is never moved: one naming this very image is
        left as it is, one naming another image raises :class:`TagExists`. The
        default pushes through the Docker engine with :meth:`push`, for registries
        that implement only that; the ``oci`` kind uploads through the
        distribution API only the blobs the registry lacks.
        """
        ref: ImageRef | None = None
        for tag in tags:
            if self.find(tag) is not None:
                raise TagExists(f"{self.repository()}:{tag} already exists: shipway never moves a tag")
            ref = self.push(image.local_id, tag)
        if ref is None:
            raise ValueError("push_image needs at least one tag")
        return ref


class Orchestrator(Backend):
    """Runs releases: rolling deploy by digest, status, rollback, endpoint."""

    @abstractmethod
    def deploy(self, release: Release, auth: dict[str, str] | None = None) -> Deployment:
        """Roll ``release`` out and wait until healthy or the deadline.

        Raises :class:`shipway.errors.BackendError` (or a subclass) if the new
        revision does not become healthy; the engine then calls :meth:`rollback`.
        ``auth`` is the registry's docker auth_config for pulling.
        """

    @abstractmethod
    def status(self, app: str, environment: str = "default") -> Deployment:
        """What is live: image digest, readiness, revision, previous image."""

    @abstractmethod
    def rollback(self, app: str, environment: str = "default") -> Deployment:
        """Restore the previous revision and wait until it is healthy."""

    @abstractmethod
    def endpoint(self, app: str, environment: str = "default") -> str:
        """Base URL of the live service (for verify checks)."""

    @abstractmethod
    def remove(self, app: str, environment: str = "default") -> None:
        """Remove every trace of the app (containers, services). Used by tests and `shipway down`."""

    def failed_digests(self, app: str, environment: str = "default") -> dict[str, str]:
        """Digests whose release failed here and was rolled back → the reason, oldest first.

        ``shipway release`` does not retry them unless asked to by ``--image``.
        The default keeps them in a file on this host; orchestrators that span
        hosts keep them where every runner sees them (Kubernetes: an annotation).
        """
        return read_failed(self._state_file(app, environment))

    def mark_failed(self, app: str, environment: str, digest: str, reason: str) -> None:
        """Remember that ``digest`` failed its release: :func:`remember_failed` says what is kept."""
        path = self._state_file(app, environment)
        write_failed(path, remember_failed(read_failed(path), digest, reason))

    def _state_file(self, app: str, environment: str) -> Path:
        return self.context.cache_dir / "orchestrator-state" / self.kind / f"{app}-{environment}-failed.json"

    @contextmanager
    def lock(self, app: str, environment: str = "default") -> Iterator[None]:
        """Hold the one-release-at-a-time lock of an app and environment; LockedError if taken.

        The default is a lock file on this host; orchestrators that span hosts
        hold it where every CI runner sees it (the Kubernetes kinds use a Lease).
        """
        path = self.context.cache_dir / "locks" / f"{app}-{environment}.lock"
        with host_lock(path, f"another release of {app} ({environment}) is in progress on this host"):
            yield


MAX_FAILED = 20
"""How many failed digests an orchestrator remembers per app and environment (the newest)."""


def remember_failed(found: dict[str, str], digest: str, reason: str) -> dict[str, str]:
    """``found`` (digest → reason, oldest first) with ``digest`` added as the newest: reason cut to 300 characters,
    only the newest :data:`MAX_FAILED` kept. Every orchestrator stores what this returns, wherever it stores it.
    """
    kept = {d: r for d, r in found.items() if d != digest}
    kept[digest] = reason[:300]
    return dict(list(kept.items())[-MAX_FAILED:])
