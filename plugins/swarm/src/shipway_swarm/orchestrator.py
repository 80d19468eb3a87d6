"""The ``swarm`` orchestrator: a Docker Swarm service per app and environment.

deploy: (once) the app's overlay network, its secrets and the proxy →
the update/rollback policy in an update of its own when it changed → the new
spec with the image pinned by digest, start-first → wait for convergence from
``UpdateStatus`` and the tasks. A rollback done by Swarm is a failed deploy.
rollback: Swarm's ``rollback=previous``. The lock and the failed digests are
config objects in the swarm (``state.py``), seen by every runner.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, ClassVar

from shipway import labels as L
from shipway.backends.base import BackendSettings, Orchestrator
from shipway.domain import Deployment, ImageRef, Release
from shipway.errors import BackendError, NotFound
from shipway.verify import wait_ready
from shipway_swarm import proxy, spec
from shipway_swarm.engineapi import SwarmApi
from shipway_swarm.settings import SwarmSettings
from shipway_swarm.state import SwarmState

if TYPE_CHECKING:  # the SDK loads when a release runs, not with the plugin
    from docker import types

L_SECRET = "io.shipway.swarm.secret"
L_SALT = "io.shipway.swarm.secret-salt"
L_FINGERPRINT = "io.shipway.swarm.secret-fingerprint"
STOP_MARGIN = 10.0
"""Seconds past ``stop_grace_period`` a release waits for a stopping old task to report its exit."""
_ROLLED_BACK = ("rollback_started", "rollback_paused", "rollback_completed")


class RolloutFailed(BackendError):
    """The update did not converge, or Swarm rolled it back."""


def _revision(service_spec: dict[str, Any] | None) -> int:
    return int(((service_spec or {}).get("Labels") or {}).get(spec.L_REVISION, "0"))


def _image(service_spec: dict[str, Any] | None) -> str:
    return str(((service_spec or {}).get("TaskTemplate") or {}).get("ContainerSpec", {}).get("Image", ""))


def _task_image(task: dict[str, Any]) -> str:
    return str(task.get("Spec", {}).get("ContainerSpec", {}).get("Image", ""))


def _tid(task: dict[str, Any]) -> str:
    return spec.template_id(task.get("Spec"))


def _digest(image: str) -> str:
    return image.rsplit("@", 1)[1] if "@" in image else ""


def _fingerprint(value: bytes, salt: bytes) -> str:
    """A slow salted hash of a secret's value: tells whether it changed without storing anything reversible."""
    return hashlib.scrypt(value, salt=salt, n=2**14, r=8, p=1, dklen=32).hex()


class SwarmOrchestrator(Orchestrator):
    """Zero-downtime, verified, self-rolling-back releases on Docker Swarm."""

    kind = "swarm"
    Settings: ClassVar[type[BackendSettings]] = SwarmSettings
    settings: SwarmSettings

    def __init__(self, settings: BackendSettings, context: Any = None) -> None:
        super().__init__(settings, context)
        self._api: SwarmApi | None = None

    @property
    def api(self) -> SwarmApi:
        if self._api is None:
            self._api = SwarmApi()
        return self._api

    def describe(self) -> str:
        where = f"port {self.settings.published_port}" if self.settings.published_port else "no fixed port"
        return f"swarm orchestrator ({where}, {self.settings.publish_mode} mode, {self.settings.endpoint_mode})"

    def _state(self, app: str, environment: str) -> SwarmState:
        return SwarmState(self.api.client, spec.service_name(app, environment), app, environment)

    def _say(self, message: str) -> None:
        self.context.reporter.info(f"  {message}")

    # -- deploy ------------------------------------------------------------------------------
    def deploy(self, release: Release, auth: dict[str, str] | None = None) -> Deployment:
        node = self.api.node_id()  # a clear error when this engine is no swarm manager
        name = spec.service_name(release.app, release.environment)
        network = self._ensure_network(name, release)
        if self.settings.proxy.enabled:
            self._ensure_proxy(release, name, network, node)
        template = spec.task_template(release, self.settings, network, self._secrets(release, name))
        endpoint = spec.endpoint_spec(  # with the proxy, the proxy publishes and the app only joins the network
            self.settings.endpoint_mode,
            release.port,
            self.settings.publish_mode,
            self.settings.published_port,
            publish=not self.settings.proxy.enabled,
        )
        current = self.api.service(name)
        image = release.image.pinned
        if current is None:
            body = spec.service_body(
                name, template, spec.app_labels(release, "app", 1), release.replicas, endpoint, self.settings
            )
            self._say(f"creating service {name} ({image}, {release.replicas} replicas)")
            try:
                self.api.create_service(body, auth)
            except BackendError as exc:
                raise RolloutFailed(f"cannot create service {name}: {exc}") from None
            self._converge(name, template, release.replicas, None, "create")
        else:
            if spec.policy_differs(current["Spec"], self.settings):
                # Never with the image: Swarm's rollback would restore the old policy with the old image.
                self._say(f"updating the update/rollback policy of {name} first (image unchanged)")
                policy = dict(current["Spec"])
                policy["UpdateConfig"] = spec.update_config(self.settings)
                policy["RollbackConfig"] = spec.rollback_config(self.settings)
                self.api.update_service(current, policy, None)
                current = self.api.service(name)
                assert current is not None
            revision = max(_revision(current["Spec"]), _revision(current.get("PreviousSpec"))) + 1
            body = spec.service_body(
                name, template, spec.app_labels(release, "app", revision), release.replicas, endpoint, self.settings
            )
            before = (current.get("UpdateStatus") or {}).get("StartedAt")
            self._say(f"updating service {name} to {image} (revision {revision}, start-first)")
            self.api.update_service(current, body, auth)
            self._converge(name, template, release.replicas, before, "update")
        self._prune_secrets(name, release)
        url = self.endpoint(release.app, release.environment)
        why = wait_ready(url, release.health, min(60.0, self.settings.deadline))
        if why:
            raise RolloutFailed(f"service {name} converged but {url} does not serve: {why}")
        return self.status(release.app, release.environment)

    def _converge(self, name: str, target: dict[str, Any], replicas: int, before: str | None, action: str) -> None:
        """Wait until ``replicas`` tasks of task template ``target`` run and no other task does, and Swarm's
        update is complete (tasks are told apart by ``spec.stamp``, so an env-only change is awaited too).

        An old task Swarm is stopping still runs, and may still be sent requests, until its container
        exits: Swarm can call an update complete before that (its monitor period is shorter than the
        stop), and checks made then could pass against the old revision. So its exit is awaited too, for
        ``stop_grace_period`` plus :data:`STOP_MARGIN` at most: a task on a node that is down reports
        nothing more, and would otherwise hold the release until its deadline.

        ``action`` is create, update or rollback. A rollback Swarm started by
        itself ends an update as RolloutFailed, with the tasks' errors.
        """
        end = time.monotonic() + self.settings.deadline
        last = ""
        stopping_since: float | None = None
        image, tid = str(target["ContainerSpec"]["Image"]), spec.template_id(target)
        while True:
            service = self.api.service(name)
            if service is None:
                raise RolloutFailed(f"service {name} was removed while it was being released")
            status = service.get("UpdateStatus") or {}
            state = status.get("State", "") if status.get("StartedAt") != before else ""
            tasks = self.api.tasks(name)
            running = [t for t in tasks if t.get("DesiredState") == "running" and t["Status"]["State"] == "running"]
            on_image = [t for t in running if _tid(t) == tid]
            old = [t for t in tasks if t["Status"]["State"] == "running" and _tid(t) != tid]  # stopping or not
            message = f"{state or action}: {len(on_image)}/{replicas} tasks running the new revision"
            if old:
                message += f", {len(old)} old"
            if message != last:
                self._say(message)
                last = message
            converged = len(on_image) == replicas and len(running) == replicas
            if action != "rollback" and state in _ROLLED_BACK:
                if state != "rollback_started":
                    raise RolloutFailed(self._failure(name, image, tid, status, tasks, "Swarm rolled back the update"))
            elif state in ("paused", "rollback_paused"):
                raise RolloutFailed(self._failure(name, image, tid, status, tasks, f"the {action} paused"))
            elif converged and state in ("", "completed", "rollback_completed"):
                if not old:
                    return
                stopping_since = stopping_since or time.monotonic()
                if time.monotonic() - stopping_since > self.settings.stop_grace_period + STOP_MARGIN:
                    self._say(
                        f"{len(old)} old task(s) still reported running {STOP_MARGIN:.0f}s past stop_grace_period "
                        "(their node may be down): going on"
                    )
                    return
            elif action == "create":
                failed = [t for t in tasks if _tid(t) == tid and t["Status"]["State"] in ("failed", "rejected")]
                if len(failed) >= 3:
                    why = f"{len(failed)} tasks failed"
                    raise RolloutFailed(self._failure(name, image, tid, status, tasks, why))
            if time.monotonic() > end:
                why = f"not converged after {self.settings.deadline:.0f}s ({message})"
                raise RolloutFailed(self._failure(name, image, tid, status, tasks, why))
            time.sleep(0.5)

    @staticmethod
    def _failure(name: str, image: str, tid: str, status: dict[str, Any], tasks: list[dict[str, Any]], why: str) -> str:
        errors = []
        for task in sorted(tasks, key=lambda t: t.get("UpdatedAt", ""), reverse=True):
            st = task.get("Status", {})
            err = st.get("Err") or ""
            if _tid(task) == tid and (err or st.get("State") in ("failed", "rejected")):
                errors.append(f"task {task['ID'][:12]}: {st.get('State')}: {err or st.get('Message', '')}")
        first = errors[0].split(": ", 1)[1] if errors else status.get("Message", "")
        lines = [f"{why} of {name} to {image}: {first}".rstrip(": ")]
        if status.get("Message"):
            lines.append(f"  swarm: {status['Message']}")
        lines += [f"  {e}" for e in errors[:5]]
        if any("host-mode port already in use" in str(t.get("Status", {}).get("Err", "")) for t in tasks):
            lines.append(
                "  hint: start-first cannot bind one fixed host port twice on a node: enable orchestrator.proxy, "
                "or leave published_port unset (Swarm then picks a port per task)"
            )
        return "\n".join(lines)

    # -- the pieces beside the service ---------------------------------------------------------
    def _ensure_network(self, name: str, release: Release) -> str:
        import docker.errors

        net = spec.network_name(name)
        client = self.api.client
        if any(n.name == net for n in client.networks.list(names=[net])):
            return net
        try:
            client.networks.create(
                net,
                driver="overlay",
                attachable=True,
                labels={spec.L_MANAGED: spec.MANAGER, spec.L_APP: release.app, spec.L_ENV: release.environment},
            )
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise BackendError(f"cannot create overlay network {net}: {exc.explanation or exc}") from None
        return net

    def _ensure_proxy(self, release: Release, name: str, network: str, node: str) -> None:
        image = proxy.ensure_image(self.api.client, self.settings.proxy.base_image)
        pname = spec.proxy_name(name)
        labels = {
            spec.L_MANAGED: spec.MANAGER,
            spec.L_APP: release.app,
            spec.L_ENV: release.environment,
            spec.L_ROLE: "proxy",
        }
        body = proxy.service_body(pname, name, release.port, image, node, network, self.settings, labels)
        current = self.api.service(pname)
        if current is None:
            self._say(f"creating proxy service {pname} on port {self.settings.published_port}")
            self.api.create_service(body, None)
        else:
            ports = [(p.get("PublishedPort"), p.get("PublishMode")) for p in body["EndpointSpec"].get("Ports", [])]
            live_ports = (current["Spec"].get("EndpointSpec") or {}).get("Ports") or []
            same_ports = ports == [(p.get("PublishedPort"), p.get("PublishMode")) for p in live_ports]
            if same_ports and spec.template_id(current["Spec"]["TaskTemplate"]) == spec.template_id(
                body["TaskTemplate"]
            ):
                return
            self._say(f"updating proxy service {pname} (a short gap: it holds one host port)")
            self.api.update_service(current, body, None)
        before = None if current is None else (current.get("UpdateStatus") or {}).get("StartedAt")
        self._converge(pname, body["TaskTemplate"], 1, before, "create" if current is None else "update")

    def _secrets(self, release: Release, name: str) -> list[types.SecretReference]:
        """Docker secrets for ``release.secrets``: reused while the value is unchanged, else a new one."""
        import docker.errors
        from docker import types

        refs = []
        client = self.api.client
        for key, value in sorted(release.secrets.items()):
            raw = value.get_secret_value().encode()
            filters = {
                "label": [f"{spec.L_APP}={release.app}", f"{spec.L_ENV}={release.environment}", f"{L_SECRET}={key}"]
            }
            found = None
            for secret in client.secrets.list(filters=filters):
                labels = secret.attrs["Spec"].get("Labels", {})
                if _fingerprint(raw, bytes.fromhex(labels.get(L_SALT, ""))) == labels.get(L_FINGERPRINT):
                    found = secret
                    break
            if found is None:
                salt = uuid.uuid4().bytes
                labels = {
                    spec.L_MANAGED: spec.MANAGER,
                    spec.L_APP: release.app,
                    spec.L_ENV: release.environment,
                    L_SECRET: key,
                    L_SALT: salt.hex(),
                    L_FINGERPRINT: _fingerprint(raw, salt),
                }
                secret_name = f"shipway-{hashlib.sha256(name.encode()).hexdigest()[:10]}-{uuid.uuid4().hex[:12]}"
                try:
                    found = client.secrets.create(name=secret_name, data=raw, labels=labels)
                except docker.errors.APIError as exc:
                    raise BackendError(f"cannot create Docker secret for {key}: {exc.explanation or exc}") from None
                found = client.secrets.get(found.id)
            refs.append(types.SecretReference(found.id, found.name, filename=key, uid="0", gid="0", mode=0o444))
        return refs

    def _prune_secrets(self, name: str, release: Release) -> None:
        """Remove this app's secrets that neither the live spec nor the one rollback restores uses."""
        service = self.api.service(name) or {}
        used = {
            ref.get("SecretID")
            for key in ("Spec", "PreviousSpec")
            for ref in (
                ((service.get(key) or {}).get("TaskTemplate") or {}).get("ContainerSpec", {}).get("Secrets") or []
            )
        }
        self._remove_secrets(release.app, release.environment, keep=used)

    def _remove_secrets(self, app: str, environment: str, keep: set[Any]) -> None:
        import docker.errors

        filters = {"label": [f"{spec.L_APP}={app}", f"{spec.L_ENV}={environment}", L_SECRET]}
        for secret in self.api.client.secrets.list(filters=filters):
            if secret.id not in keep:
                # Still in use by a task that is shutting down: the next release removes it.
                with suppress(docker.errors.APIError):
                    secret.remove()

    # -- contract ----------------------------------------------------------------------------------
    def status(self, app: str, environment: str = "default") -> Deployment:
        name = spec.service_name(app, environment)
        service = self.api.service(name)
        if service is None:
            return Deployment(app=app, environment=environment, state="absent", message="never deployed")
        current, previous = service["Spec"], service.get("PreviousSpec")
        image = _image(current)
        replicas = int(((current.get("Mode") or {}).get("Replicated") or {}).get("Replicas", 1))
        tasks = [t for t in self.api.tasks(name) if t.get("DesiredState") == "running"]
        running = [t for t in tasks if t["Status"]["State"] == "running"]
        on_image = [t for t in running if _tid(t) == spec.template_id(current.get("TaskTemplate"))]
        update = service.get("UpdateStatus") or {}
        update_state = update.get("State", "")
        if update_state in ("updating", "rollback_started"):
            state = "progressing"
        elif update_state in ("paused", "rollback_paused"):
            state = "failed"
        elif len(on_image) == replicas and len(running) == replicas:
            state = "healthy"
        else:
            state = "progressing" if on_image else "failed"
        lines = [f"update: {update_state or 'none'}" + (f" ({update['Message']})" if update.get("Message") else "")]
        for task in sorted(tasks, key=lambda t: t.get("Slot", 0)):
            lines.append(
                f"task {task['ID'][:12]} slot {task.get('Slot', '-')}: desired {_digest(image)[:19]}, "
                f"runs {_digest(_task_image(task))[:19]} ({task['Status']['State']})"
            )
        trace = {k: v for k, v in (current.get("Labels") or {}).items() if k in L.TRACE}
        rolls_back_to = previous if previous is not None and _revision(previous) < _revision(current) else None
        endpoint = None
        with suppress(NotFound):
            endpoint = self.endpoint(app, environment)
        return Deployment(
            app=app,
            environment=environment,
            image=ImageRef.parse(image) if image else None,
            state=state,
            replicas_desired=replicas,
            replicas_ready=len(on_image),
            running_digests=[_digest(_task_image(t)) for t in running],
            revision=_revision(current),
            previous_image=ImageRef.parse(_image(rolls_back_to)) if rolls_back_to else None,
            endpoint=endpoint,
            labels=trace,
            message="\n".join(lines),
        )

    def rollback(self, app: str, environment: str = "default") -> Deployment:
        name = spec.service_name(app, environment)
        service = self.api.service(name)
        if service is None:
            raise NotFound(f"{app} ({environment}) has never been deployed")
        current, previous = service["Spec"], service.get("PreviousSpec")
        replicas = int(((current.get("Mode") or {}).get("Replicated") or {}).get("Replicas", 1))
        before = (service.get("UpdateStatus") or {}).get("StartedAt")
        # Swarm's own rollback clears PreviousSpec; a requested one swaps it with the spec.
        undone_by_swarm = previous is None and (service.get("UpdateStatus") or {}).get("State") in _ROLLED_BACK
        if undone_by_swarm or (previous is not None and _revision(previous) > _revision(current)):
            self._say(f"the newest release of {name} was already rolled back; waiting for {_image(current)}")
            self._converge(name, current["TaskTemplate"], replicas, None, "rollback")
        elif previous is None or _revision(previous) == _revision(current):
            raise NotFound(f"{app} ({environment}) has no previous revision to roll back to")
        else:
            self._say(f"rolling {name} back to revision {_revision(previous)} ({_image(previous)})")
            self.api.update_service(service, current, None, rollback=True)
            prev_replicas = int(((previous.get("Mode") or {}).get("Replicated") or {}).get("Replicas", 1))
            self._converge(name, previous["TaskTemplate"], prev_replicas, before, "rollback")
        url = self.endpoint(app, environment)
        health = (current.get("Labels") or {}).get(spec.L_HEALTH, "/")
        why = wait_ready(url, health, min(60.0, self.settings.deadline))
        if why:
            raise RolloutFailed(f"rollback of {name} converged but {url} does not serve: {why}")
        return self.status(app, environment)

    def endpoint(self, app: str, environment: str = "default") -> str:
        name = spec.service_name(app, environment)
        host = self.settings.endpoint_host
        if self.settings.proxy.enabled:
            if self.api.service(spec.proxy_name(name)) is None:
                raise NotFound(f"proxy service {spec.proxy_name(name)} does not exist")
            return f"http://{host}:{self.settings.published_port}"
        service = self.api.service(name)
        if service is None:
            raise NotFound(f"service {name} does not exist")
        if self.settings.published_port is not None:
            return f"http://{host}:{self.settings.published_port}"
        for port in (service.get("Endpoint") or {}).get("Ports") or []:
            if port.get("PublishedPort"):
                return f"http://{host}:{port['PublishedPort']}"
        for task in self.api.tasks(name):  # host mode without a fixed port: each task has its own
            if task.get("DesiredState") == "running" and task["Status"]["State"] == "running":
                for port in (task["Status"].get("PortStatus") or {}).get("Ports") or []:
                    return f"http://{host}:{port['PublishedPort']}"
        raise NotFound(f"service {name} publishes no port (set orchestrator.published_port)")

    def remove(self, app: str, environment: str = "default") -> None:
        import docker.errors

        name = spec.service_name(app, environment)
        self.api.remove_service(spec.proxy_name(name))
        self.api.remove_service(name)
        net = spec.network_name(name)
        end = time.monotonic() + 60
        while True:  # tasks leave the network a moment after their service is gone; then the network goes
            try:
                found = [n for n in self.api.client.networks.list(names=[net]) if n.name == net]
                if not found:
                    break
                for network in found:
                    network.remove()
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError:
                pass
            if time.monotonic() > end:
                raise BackendError(f"network {net} is still in use after 60 s")
            time.sleep(0.5)
        self._remove_secrets(app, environment, keep=set())
        self._state(app, environment).clear()

    def failed_digests(self, app: str, environment: str = "default") -> dict[str, str]:
        """Kept in a config object of the swarm (every runner sees it), not on the service."""
        return self._state(app, environment).failed()

    def mark_failed(self, app: str, environment: str, digest: str, reason: str) -> None:
        self._state(app, environment).mark_failed(digest, reason)

    @contextmanager
    def lock(self, app: str, environment: str = "default") -> Iterator[None]:
        """The swarm config ``shipway-lock-<service>``: one release at a time for every runner of the swarm."""
        with self._state(app, environment).lock(self.settings.lock_ttl, self.settings.lock_wait):
            yield
