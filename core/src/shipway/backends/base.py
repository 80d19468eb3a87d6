"""The contracts every backend implements: model stores, registries, orchestrators.

A backend class names its ``kind`` (what users write in YAML) and a pydantic
``Settings`` model for its YAML section, and is registered through one of the
``shipway_register_*`` hooks. The engine, not the backends, owns ordering,
retries policy, timeouts, logging, the records and exit codes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

from shipway.domain import Deployment, ImageRef, ModelFile, ModelRef, ModelVersion, Release
from shipway.errors import IntegrityError
from shipway.progress import NULL_REPORTER, Reporter

CHUNK = 1 << 20


class BackendSettings(BaseModel):
    """Base of every backend's settings model: unknown keys are errors.

    An empty string for an optional field means "not set", so YAML can write
    ``username: ${REGISTRY_USER:-}`` and leave the variable unset.
    """

    model_config = ConfigDict(extra="forbid")
    kind: str

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


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def model_sources(path: Path) -> list[tuple[str, Path]]:
    """The files to publish from ``path`` (a file, or a folder walked in sorted order) as (relative path, path)."""
    from shipway.errors import ModelError

    if path.is_file():
        return [(path.name, path)]
    if not path.is_dir():
        raise ModelError(f"{path}: no such file or folder")
    found = sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    if not found:
        raise ModelError(f"{path}: the folder holds no files")
    return found


class ModelStore(Backend):
    """A store of versioned models: publish, list, resolve refs, fetch verified files.

    Subclasses implement storage; :meth:`fetch` (integrity checks and the
    content-addressed cache) is shared so every store verifies the same way.
    """

    read_only: ClassVar[bool] = False
    """Read-only stores raise :class:`shipway.errors.ReadOnlyStore` from publish and set_alias."""

    @abstractmethod
    def versions(self, name: str) -> list[ModelVersion]:
        """All complete versions of model ``name``, oldest first. Unknown name: empty list."""

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
        version raises :class:`shipway.errors.ModelError`.
        """

    @abstractmethod
    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``alias`` of model ``name`` at an existing ``version``."""

    @abstractmethod
    def _download(self, version: ModelVersion, file: ModelFile, dest: Path) -> None:
        """Write the stored bytes of ``file`` to ``dest``; :meth:`fetch` verifies them.

        ``dest`` may already hold the first bytes of the file from an interrupted
        fetch: a store may resume after them (append the rest), or truncate and
        write it whole.
        """

    def resolve(self, ref: ModelRef) -> ModelVersion:
        """Resolve ``latest``, a version or ``@alias`` to one immutable version."""
        from shipway.errors import ModelError

        versions = self.versions(ref.name)
        if not versions:
            raise ModelError(f"model {ref.name!r} has no versions in {self.describe()}")
        if ref.is_latest:
            return max(versions, key=lambda v: (v.created, _version_key(v.version)))
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

    def fetch(self, version: ModelVersion, dest: Path) -> Path:
        """Place the version's files under ``dest``, each one verified by size and sha256.

        Files already in the content-addressed cache are not downloaded again.
        Returns ``dest``. Raises :class:`shipway.errors.IntegrityError` on any mismatch.
        """
        blobs = self.context.cache_dir / "blobs" / "sha256"
        blobs.mkdir(parents=True, exist_ok=True)
        dest.mkdir(parents=True, exist_ok=True)
        missing = [f for f in version.files if not _cached(blobs / f.sha256, f)]
        total = sum(f.size for f in missing)
        label = f"fetch {version.name}:{version.version}"
        with self.context.reporter.bytes(label, total) as bar:
            for f in missing:
                partial = blobs / f"{f.sha256}.partial"
                with open(partial, "ab") as handle:
                    fcntl.flock(handle, fcntl.LOCK_EX)  # one writer per blob across processes
                    try:
                        if not _cached(blobs / f.sha256, f):  # another process may have finished it
                            self._download(version, f, partial)
                            try:
                                _verify(partial, f, version)
                            except IntegrityError:
                                partial.unlink(missing_ok=True)  # never resume from bad bytes
                                raise
                            os.chmod(partial, 0o644)  # readable by a non-root app user in the image
                            os.replace(partial, blobs / f.sha256)
                    finally:
                        fcntl.flock(handle, fcntl.LOCK_UN)
                bar.advance(f.size)
        for f in version.files:
            target = dest / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            _link_or_copy(blobs / f.sha256, target)
        return dest


def _version_key(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)


def _cached(path: Path, f: ModelFile) -> bool:
    try:
        return path.stat().st_size == f.size
    except FileNotFoundError:
        return False


def _verify(path: Path, f: ModelFile, version: ModelVersion) -> None:
    size = path.stat().st_size
    if size != f.size:
        raise IntegrityError(f"{version.name}:{version.version} file {f.path}: size {size} != manifest {f.size}")
    actual = sha256_file(path)
    if actual != f.sha256:
        raise IntegrityError(
            f"{version.name}:{version.version} file {f.path}: sha256 {actual[:12]}… != manifest {f.sha256[:12]}…"
        )


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


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
        """Digests whose release failed here and was rolled back → the reason.

        ``shipway release`` does not retry them unless asked to by ``--image``.
        The default keeps them in a file on this host; orchestrators that span
        hosts keep them where every runner sees them (Kubernetes: an annotation).
        """
        path = self._state_file(app, environment)
        return dict(json.loads(path.read_text())) if path.is_file() else {}

    def mark_failed(self, app: str, environment: str, digest: str, reason: str) -> None:
        """Remember that ``digest`` failed its release (the newest 20 are kept)."""
        found = self.failed_digests(app, environment)
        found.pop(digest, None)
        found[digest] = reason[:300]
        path = self._state_file(app, environment)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(list(found.items())[-20:]), indent=2))

    def _state_file(self, app: str, environment: str) -> Path:
        return self.context.cache_dir / "orchestrator-state" / self.kind / f"{app}-{environment}-failed.json"

    @contextmanager
    def lock(self, app: str, environment: str = "default") -> Iterator[None]:
        """Hold the one-release-at-a-time lock of an app and environment; LockedError if taken.

        The default is a lock file on this host; orchestrators that span hosts
        hold it where every CI runner sees it (the Kubernetes kinds use a Lease).
        """
        from shipway.errors import LockedError

        path = self.context.cache_dir / "locks" / f"{app}-{environment}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockedError(f"another release of {app} ({environment}) is in progress on this host") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
