"""The ``docker`` orchestrator: one app revision at a time on the local Docker engine.

Each release is a container labelled with app, environment and revision,
published on one stable host port. A deploy stops the live container (kept,
for rollback), starts the new one on the same port and waits until its health
path answers. This gives a short gap at cut-over: the ``docker`` kind is a
single-host target for development, CI and small installations; Swarm and
Kubernetes do rolling, zero-downtime updates.

The release's secrets are files bind-mounted read-only at ``/run/secrets``
from a private folder per revision (see :mod:`shipway.secretfiles`), removed
with the revision's container.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import Field

from shipway import dockerutil, labels, secretfiles
from shipway.backends.base import BackendSettings, Orchestrator
from shipway.domain import Deployment, ImageRef, Release
from shipway.errors import BackendError, NotFound
from shipway.hookspecs import hookimpl
from shipway.verify import wait_ready

if TYPE_CHECKING:
    from docker.models.containers import Container

L_APP = labels.APP  # the same app label as on the image, from its one definition
L_ENV = "io.shipway.environment"
L_REV = "io.shipway.revision"
L_IMAGE = "io.shipway.image"
L_PORT = "io.shipway.port"
L_HEALTH = "io.shipway.health"
L_SECRETS = "io.shipway.secrets-dir"


class DockerOrchestratorSettings(BackendSettings):
    """``orchestrator: {kind: docker, host_port: 8080, ...}``."""

    kind: str = "docker"
    host_port: int | None = Field(None, ge=1, le=65535, description="Stable host port; default: the app port")
    bind: str = Field("127.0.0.1", description="Host address the port is published on")
    keep: int = Field(2, ge=1, le=20, description="Stopped revisions kept for rollback")
    deadline: float = Field(60, gt=0, description="Seconds a new container may take to become healthy")
    stop_timeout: int = Field(10, ge=0, description="Seconds given to a container to stop")


class RolloutFailed(BackendError):
    """The new revision did not become healthy."""


@dataclass
class _Revision:
    container: Container
    revision: int

    @property
    def running(self) -> bool:
        return bool(self.container.status == "running")

    @property
    def image(self) -> ImageRef:
        return ImageRef.parse(self.container.labels[L_IMAGE])


class DockerOrchestrator(Orchestrator):
    """Single-host releases on the local Docker engine, with rollback to the previous container."""

    kind = "docker"
    Settings = DockerOrchestratorSettings
    settings: DockerOrchestratorSettings

    def describe(self) -> str:
        return f"docker orchestrator on {self.settings.bind}"

    def _revisions(self, app: str, environment: str) -> list[_Revision]:
        client = dockerutil.client()
        found = client.containers.list(all=True, filters={"label": [f"{L_APP}={app}", f"{L_ENV}={environment}"]})
        return sorted((_Revision(c, int(c.labels.get(L_REV, "0"))) for c in found), key=lambda r: r.revision)

    def _host_port(self, release_port: int) -> int:
        return self.settings.host_port or release_port

    def _url(self, rev: _Revision) -> str:
        return f"http://{_connect_host(self.settings.bind)}:{self._host_port(int(rev.container.labels[L_PORT]))}"

    # -- contract --------------------------------------------------------------
    def status(self, app: str, environment: str = "default") -> Deployment:
        revisions = self._revisions(app, environment)
        live = next((r for r in reversed(revisions) if r.running), None)
        if live is None:
            last = revisions[-1] if revisions else None
            message = "no container is running" if last else "never deployed"
            if last is not None and last.container.status == "created":
                message += f" (revision {last.revision} was created but never started: a release did not finish)"
            return Deployment(
                app=app,
                environment=environment,
                state="stopped" if last else "absent",
                image=last.image if last else None,
                revision=last.revision if last else 0,
                message=message,
            )
        previous = _before(revisions, live)
        healthy = wait_ready(self._url(live), live.container.labels[L_HEALTH], deadline=2) is None
        return Deployment(
            app=app,
            environment=environment,
            image=live.image,
            state="healthy" if healthy else "failed",
            replicas_desired=1,
            replicas_ready=1 if healthy else 0,
            running_digests=[d for d in [live.image.digest] if d and healthy],
            revision=live.revision,
            previous_image=previous.image if previous else None,
            endpoint=self._url(live),
            labels={k: v for k, v in live.container.labels.items() if k in labels.TRACE},
        )

    def endpoint(self, app: str, environment: str = "default") -> str:
        live = next((r for r in reversed(self._revisions(app, environment)) if r.running), None)
        if live is None:
            raise NotFound(f"{app} ({environment}) is not running")
        return self._url(live)

    def deploy(self, release: Release, auth: dict[str, str] | None = None) -> Deployment:
        import docker.errors  # the SDK loads on first use, not with the plugin (validate, --help)

        client = dockerutil.client()
        image = self._ensure_image(release.image, auth)
        revisions = self._revisions(release.app, release.environment)
        revision = (revisions[-1].revision if revisions else 0) + 1
        port = self._host_port(release.port)
        secrets_dir = secretfiles.write(release.secrets, self.context.cache_dir / "secrets")
        container_labels = dict(release.labels)
        container_labels.update(
            {
                L_APP: release.app,
                L_ENV: release.environment,
                L_REV: str(revision),
                L_IMAGE: release.image.pinned,
                L_PORT: str(release.port),
                L_HEALTH: release.health,
                **({L_SECRETS: str(secrets_dir)} if secrets_dir else {}),
            }
        )
        # Everything that can be done with the old revision still serving is done first (pull,
        # secrets, create): the gap is only its stop, the new container's start and its boot.
        try:
            container = client.containers.create(
                image,
                name=f"shipway-{release.app}-{release.environment}-r{revision}",
                environment=release.env,
                labels=container_labels,
                ports={f"{release.port}/tcp": (self.settings.bind, port)},
                volumes=secretfiles.volumes(secrets_dir),
                restart_policy={"Name": "unless-stopped"},
            )
        except docker.errors.APIError as exc:
            secretfiles.remove(secrets_dir)
            raise RolloutFailed(
                f"cannot create a container of {release.image.pinned}: {exc.explanation or exc}"
            ) from None
        for rev in revisions:
            if rev.running:
                rev.container.stop(timeout=self.settings.stop_timeout)
        try:
            container.start()
        except docker.errors.APIError as exc:
            raise RolloutFailed(f"cannot start {release.image.pinned}: {exc.explanation or exc}") from None
        new = _Revision(container, revision)
        why = wait_ready(self._url(new), release.health, self.settings.deadline, problem=lambda: _exited(container))
        if why:
            logs = container.logs(tail=15).decode(errors="replace").strip()
            container.stop(timeout=self.settings.stop_timeout)
            raise RolloutFailed(f"revision {revision} did not become healthy: {why}" + (f"\n{logs}" if logs else ""))
        self._prune(release.app, release.environment)
        return self.status(release.app, release.environment)

    def rollback(self, app: str, environment: str = "default") -> Deployment:
        revisions = self._revisions(app, environment)
        live = next((r for r in reversed(revisions) if r.running), None)
        # The newest revision is the one to undo, whether or not it is still running.
        current = live or (revisions[-1] if revisions else None)
        if current is None:
            raise NotFound(f"{app} ({environment}) has never been deployed")
        previous = _before(revisions, current)
        if previous is None:
            raise NotFound(f"{app} ({environment}) has no previous revision to roll back to")
        for rev in revisions:
            if rev.running:
                rev.container.stop(timeout=self.settings.stop_timeout)
        previous.container.start()
        previous.container.reload()
        why = wait_ready(
            self._url(previous),
            previous.container.labels[L_HEALTH],
            self.settings.deadline,
            problem=lambda: _exited(previous.container),
        )
        if why:
            raise BackendError(f"rollback to revision {previous.revision} did not become healthy: {why}")
        # The undone revision is removed, so "previous" means the one before that.
        _remove(current)
        return self.status(app, environment)

    def remove(self, app: str, environment: str = "default") -> None:
        for rev in self._revisions(app, environment):
            _remove(rev)
        self._state_file(app, environment).unlink(missing_ok=True)  # forget failed digests too

    # -- helpers -----------------------------------------------------------------
    def _ensure_image(self, ref: ImageRef, auth: dict[str, str] | None) -> str:
        import docker.errors

        client = dockerutil.client()
        pinned = ref.pinned
        try:
            client.images.get(pinned)
            return pinned
        except docker.errors.ImageNotFound:
            pass
        try:
            stream = client.api.pull(ref.repository, tag=ref.digest, auth_config=auth, stream=True, decode=True)
            dockerutil.follow(stream, f"pull of {pinned}")
        except docker.errors.APIError as exc:
            raise BackendError(f"pull of {pinned} failed: {exc.explanation or exc}") from None
        return pinned

    def _prune(self, app: str, environment: str) -> None:
        stopped = [r for r in self._revisions(app, environment) if not r.running]
        for rev in stopped[: max(0, len(stopped) - self.settings.keep)]:
            _remove(rev)


def _before(revisions: list[_Revision], current: _Revision) -> _Revision | None:
    """The newest revision older than ``current`` with another image: what a rollback restores.

    A release redone with the same image (after an interrupted one, say) adds a revision
    of that image; rolling back to it would restore what is being undone.
    """
    return next(
        (r for r in reversed(revisions) if r.revision < current.revision and r.image.digest != current.image.digest),
        None,
    )


def _remove(rev: _Revision) -> None:
    """Remove a revision's container and its secret files."""
    rev.container.remove(force=True)
    secretfiles.remove(rev.container.labels.get(L_SECRETS))


def _exited(container: Container) -> str | None:
    import docker.errors

    try:
        container.reload()
    except docker.errors.NotFound:
        return "the container was removed"
    if container.status == "restarting":
        return "the container keeps restarting"
    if container.status in ("exited", "dead"):
        code = container.attrs.get("State", {}).get("ExitCode")
        return f"the container exited with code {code}"
    return None


def _connect_host(bind: str) -> str:
    return "127.0.0.1" if bind in ("0.0.0.0", "", "::") else bind


# The shipway.testing contract version this backend passes (shown by `shipway plugins`).
SHIPWAY_CONTRACT_VERSION = 2


@hookimpl
def shipway_register_orchestrators(register):  # type: ignore[no-untyped-def]
    register(DockerOrchestrator)
