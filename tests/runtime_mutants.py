"""Deliberately broken registries and orchestrators: each breaks one promise of its contract.

``tests/test_contract_mutants_runtime.py`` runs the registry and orchestrator
contracts against each of them (one subprocess: tests/contract_runs.py) and asserts that the
contract tests for the broken promise fail. Each mutant is a subclass of a
backend that passes (the built-in ``oci`` registry, the ``docker``
orchestrator) with one fault.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from shipway import labels as L
from shipway.backends.base import BackendContext
from shipway.backends.docker_orchestrator import DockerOrchestrator, DockerOrchestratorSettings
from shipway.backends.oci_registry import OciRegistry, OciRegistrySettings
from shipway.domain import Deployment, ImageRef, Release
from shipway.errors import NotFound
from shipway.manifest import MANIFEST_V2, Image
from shipway.oci import OciClient
from shipway.testing.contracts import OrchestratorContract, RegistryContract, unique
from shipway.testing.services import RegistryService, free_port

# -- the two passing backends, as contract test classes ---------------------------------------------


class OciContract(RegistryContract):
    """The registry contract run against ``registry_class`` on the kit's registry (htpasswd auth)."""

    registry_class: type[OciRegistry] = OciRegistry

    def make(self, reg: RegistryService, cache: Path, password: str) -> OciRegistry:
        settings = OciRegistrySettings(
            kind="oci", address=reg.address, repository=unique("repo"), username=reg.username, password=password
        )
        return self.registry_class(settings, BackendContext(cache_dir=cache))

    @pytest.fixture
    def registry(self, shipway_registry: RegistryService, shipway_cache: Path) -> OciRegistry:
        return self.make(shipway_registry, shipway_cache, shipway_registry.password)

    @pytest.fixture
    def bad_registry(self, shipway_registry: RegistryService, shipway_cache: Path) -> OciRegistry:
        return self.make(shipway_registry, shipway_cache, "wrong-password")


class DockerContract(OrchestratorContract):
    """The orchestrator contract run against ``orchestrator_class`` on the local Docker engine."""

    orchestrator_class: type[DockerOrchestrator] = DockerOrchestrator

    @pytest.fixture
    def orchestrator(self, shipway_docker: None, tmp_path: Path) -> DockerOrchestrator:
        settings = DockerOrchestratorSettings(kind="docker", host_port=free_port(), deadline=20, stop_timeout=1)
        return self.orchestrator_class(settings, BackendContext(cache_dir=tmp_path))


# -- registry mutants ----------------------------------------------------------------------------------


class OciStreamSendsNothing(OciRegistry):
    """stream_blob reads the stream and returns its digest, but the registry never gets the bytes."""

    def stream_blob(self, chunks: Iterable[bytes], size: int) -> str:
        sha = hashlib.sha256()
        for chunk in chunks:
            sha.update(chunk)
        self.bytes_uploaded += size
        return "sha256:" + sha.hexdigest()


class OciStreamUncounted(OciRegistry):
    """stream_blob uploads, but bytes_uploaded does not count what it sent."""

    def stream_blob(self, chunks: Iterable[bytes], size: int) -> str:
        return self.api.stream_blob(self.settings.repository, chunks, size)


class OciTagsFirst(OciRegistry):
    """push_image reserves its tags first (a placeholder image), uploads the blobs, then moves the tags."""

    def push_image(self, image: Image, tags: Sequence[str]) -> ImageRef:
        repo = self.settings.repository
        config = b"{}"
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        if not self.api.has_blob(repo, config_digest):
            started = self.api.request("POST", f"/v2/{repo}/blobs/uploads/", scope=f"repository:{repo}:pull,push")
            location = self.api._location(started)
            sep = "&" if "?" in location else "?"
            self.api.request(
                "PUT",
                f"{location}{sep}digest={config_digest}",
                scope=f"repository:{repo}:pull,push",
                data=config,
                headers={"Content-Type": "application/octet-stream"},
            )
        placeholder = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_V2,
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "size": len(config),
                    "digest": config_digest,
                },
                "layers": [],
            }
        ).encode()
        for tag in tags:
            if self.api.head_manifest(repo, tag) is None:
                self.api.put_manifest(repo, tag, placeholder, MANIFEST_V2)
        self.upload_blobs(image)
        for tag in tags:
            self.api.put_manifest(repo, tag, image.manifest(), MANIFEST_V2)
        return ImageRef(repository=self.repository(), tag=tags[0], digest=image.digest)


class OciTrustsUnfinishedBlobs(OciRegistry):
    """upload_blobs notes a blob as sent before its upload ends, and skips noted blobs without asking."""

    def _noted(self) -> Path:
        return self.context.cache_dir / "sent-blobs.json"

    def upload_blobs(self, image: Image) -> int:
        repo = self.settings.repository
        noted: list[str] = json.loads(self._noted().read_text()) if self._noted().is_file() else []
        sent = 0
        for blob in (*image.layers, image.config_blob):
            if blob.digest in noted:
                continue
            noted.append(blob.digest)
            self._noted().parent.mkdir(parents=True, exist_ok=True)
            self._noted().write_text(json.dumps(noted))
            if self.api.has_blob(repo, blob.digest):
                continue
            assert blob.opener is not None
            self.api.upload_blob(repo, blob.digest, blob.size, blob.opener)
            sent += blob.size
        self.bytes_uploaded += sent
        return sent


def builds_where(
    registry: OciRegistry, app: str, keep: Callable[[dict[str, str], str], bool]
) -> list[tuple[ImageRef, dict[str, str]]]:
    """builds() without oci's tag cache, keeping the images ``keep(labels, app)`` accepts."""
    repo = registry.settings.repository
    seen: dict[str, tuple[ImageRef, dict[str, str]]] = {}
    for tag in registry.api.tags(repo):
        digest, manifest = registry.api.manifest(repo, tag)
        found = registry._config_labels(repo, manifest)
        if keep(found, app):
            seen.setdefault(digest, (ImageRef(repository=registry.repository(), tag=tag, digest=digest), found))
    return sorted(seen.values(), key=lambda item: (item[1].get(L.CREATED, ""), item[0].digest or ""), reverse=True)


class OciBuildsRewritten(OciRegistry):
    """Not a mutant: builds() through ``builds_where`` with the right test (shows the mutants below fail for it)."""

    def builds(self, app: str) -> list[tuple[ImageRef, dict[str, str]]]:
        return builds_where(self, app, lambda found, a: found.get(L.APP) == a and found.get(L.VERIFIED) == "true")


class OciBuildsIgnoreVerified(OciRegistry):
    """builds() lists every image of the app, verified or not."""

    def builds(self, app: str) -> list[tuple[ImageRef, dict[str, str]]]:
        return builds_where(self, app, lambda found, a: found.get(L.APP) == a)


class OciBuildsAnyVerifiedValue(OciRegistry):
    """builds() takes the verified label's presence for "verified" (``"false"`` counts too)."""

    def builds(self, app: str) -> list[tuple[ImageRef, dict[str, str]]]:
        return builds_where(self, app, lambda found, a: found.get(L.APP) == a and L.VERIFIED in found)


class OciBuildsAppPrefix(OciRegistry):
    """builds() matches the app label by prefix (``api`` also lists ``api-worker``)."""

    def builds(self, app: str) -> list[tuple[ImageRef, dict[str, str]]]:
        return builds_where(
            self, app, lambda found, a: found.get(L.APP, "-").startswith(a) and found.get(L.VERIFIED) == "true"
        )


class OciCredentialsNone(OciRegistry):
    """credentials() says anonymous (None) although the registry needs auth; its own requests still log in."""

    _own = 0

    @contextmanager
    def _inside(self) -> Iterator[None]:
        self._own += 1
        try:
            yield
        finally:
            self._own -= 1

    def credentials(self) -> dict[str, str] | None:
        found = super().credentials()
        return found if self._own else None

    @property
    def api(self) -> OciClient:
        with self._inside():
            client: OciClient = OciRegistry.api.fget(self)  # type: ignore[attr-defined]
            return client

    def push(self, local_image: str, tag: str) -> ImageRef:
        with self._inside():
            return super().push(local_image, tag)


class OciLoginChecksNothing(OciRegistry):
    """login() returns without asking the registry."""

    def login(self) -> None:
        return None


# -- orchestrator mutants ------------------------------------------------------------------------------


class DockerRollbackToOldest(DockerOrchestrator):
    """rollback starts the oldest kept revision instead of the one before the current one."""

    def rollback(self, app: str, environment: str = "default") -> Deployment:
        revisions = self._revisions(app, environment)
        live = next((r for r in reversed(revisions) if r.running), None)
        current = live or (revisions[-1] if revisions else None)
        if current is None:
            raise NotFound(f"{app} ({environment}) has never been deployed")
        previous = next((r for r in revisions if r.revision < current.revision), None)
        if previous is None:
            raise NotFound(f"{app} ({environment}) has no previous revision to roll back to")
        for rev in revisions:
            if rev.running:
                rev.container.stop(timeout=self.settings.stop_timeout)
        previous.container.start()
        current.container.remove(force=True)
        return self.status(app, environment)


class DockerRollbackRestartsNewest(DockerOrchestrator):
    """rollback starts the newest stopped revision: after a failed deploy, the one that failed."""

    def rollback(self, app: str, environment: str = "default") -> Deployment:
        revisions = self._revisions(app, environment)
        stopped = [r for r in revisions if not r.running]
        if len(revisions) < 2 or not stopped:
            raise NotFound(f"{app} ({environment}) has no previous revision to roll back to")
        for rev in revisions:
            if rev.running:
                rev.container.stop(timeout=self.settings.stop_timeout)
        stopped[-1].container.start()
        return self.status(app, environment)


class DockerStatusTrustsRunning(DockerOrchestrator):
    """status calls a running container healthy and serving without asking its health path."""

    def status(self, app: str, environment: str = "default") -> Deployment:
        found = super().status(app, environment)
        if found.state == "failed" and found.digest:
            return found.model_copy(update={"state": "healthy", "running_digests": [found.digest]})
        return found


class DockerStatusReportsDesired(DockerOrchestrator):
    """status reports the image the last deploy asked for (kept in a file), not the one live."""

    def _desired(self, app: str, environment: str) -> Path:
        return self.context.cache_dir / f"{app}-{environment}-desired"

    def deploy(self, release: Release, auth: dict[str, str] | None = None) -> Deployment:
        self._desired(release.app, release.environment).write_text(release.image.pinned)
        return super().deploy(release, auth)

    def status(self, app: str, environment: str = "default") -> Deployment:
        found = super().status(app, environment)
        desired = self._desired(app, environment)
        if found.state != "absent" and desired.is_file():
            return found.model_copy(update={"image": ImageRef.parse(desired.read_text())})
        return found


class DockerRollbackForgetsFailures(DockerOrchestrator):
    """rollback starts afresh: it forgets which digests failed their release."""

    def rollback(self, app: str, environment: str = "default") -> Deployment:
        restored = super().rollback(app, environment)
        self._state_file(app, environment).unlink(missing_ok=True)
        return restored


class DockerIgnoresPullCredentials(DockerOrchestrator):
    """deploy pulls a missing image anonymously, whatever ``auth`` it is given."""

    def _ensure_image(self, ref: ImageRef, auth: dict[str, str] | None) -> str:
        return super()._ensure_image(ref, None)
