"""`shipway doctor`: is this machine ready to run and release the configured app?

One check per line, each with the fix when it fails: the configuration, the
Docker engine, the base image, the model store (readable, the configured model
resolves, writable), the registry (credentials, push permission), the
orchestrator, and, when a release is live, its health path. A backend may add its own checks with an optional
``doctor_checks()`` method (docs/plugins.md).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shipway.errors import BackendError, ConfigError, ShipwayError

LIVE_TIMEOUT = 5.0
"""Seconds the live release has to answer its health path."""


@dataclass
class DoctorCheck:
    """The outcome of one check: what was checked, whether it passed, what was found, how to fix it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(name: str, fix: str, probe: Callable[[], str]) -> DoctorCheck:
    """Run ``probe``; its return value is the detail of a pass, any shipway error a failure."""
    try:
        return DoctorCheck(name, True, probe())
    except ShipwayError as exc:
        return DoctorCheck(name, False, str(exc).splitlines()[0], fix)
    except Exception as exc:  # noqa: BLE001 - a doctor reports every failure instead of stopping
        return DoctorCheck(name, False, f"{type(exc).__name__}: {exc}", fix)


def run(state: Any) -> list[DoctorCheck]:
    """Every check for the configuration ``state`` points at (stops after a config failure)."""
    checks: list[DoctorCheck] = []
    try:
        project = state.project()
        cfg = project.loaded
        checks.append(
            DoctorCheck(
                "config",
                True,
                f"{state.config_path}: {cfg.model_store.kind} store, {cfg.registry.kind} registry, "
                f"{cfg.orchestrator.kind} orchestrator",
            )
        )
    except ShipwayError as exc:
        fix = "fix the file (`shipway validate` names file:line and key), or point -c at the right one"
        if "file not found" in str(exc):
            fix = "create one with `shipway init`, or pass -c FILE / set SHIPWAY_CONFIG"
        return [DoctorCheck("config", False, str(exc).splitlines()[0], fix)]
    checks += list(_docker(project))
    checks += list(_store(project))
    checks += list(_registry(project))
    checks += list(_orchestrator(project))
    for section in ("store", "registry", "orchestrator"):
        extra = getattr(getattr(project, section), "doctor_checks", None)
        if callable(extra):
            try:
                checks += list(extra())
            except Exception as exc:  # noqa: BLE001 - a plugin's check must not hide the others
                checks.append(DoctorCheck(f"{section} checks", False, f"{type(exc).__name__}: {exc}", ""))
    return checks


def _docker(project: Any) -> Iterator[DoctorCheck]:
    from shipway import dockerutil

    def engine() -> str:
        client = dockerutil.client()
        version = client.version()
        return f"engine {version.get('Version', '?')} at {os.environ.get('DOCKER_HOST', 'unix:///var/run/docker.sock')}"

    fix = "start the engine (scripts/services.sh starts one; or `systemctl start docker`), or set DOCKER_HOST"
    found = _check("docker", fix, engine)
    yield found
    base = project.loaded.config.build.base_image
    if not found.ok:
        return
    if base is None:
        yield DoctorCheck("base image", True, "none configured (the Dockerfile's default FROM is pulled at build)")
        return

    def present() -> str:
        import docker.errors

        try:
            image = dockerutil.client().images.get(base)
        except docker.errors.ImageNotFound:
            raise ConfigError(f"{base} is not in the local engine") from None
        return f"{base} ({image.id[:19]})"

    yield _check("base image", f"`docker pull {base}`, or build it (scripts/services.sh builds shipway-base)", present)


def _store(project: Any) -> Iterator[DoctorCheck]:
    cfg = project.loaded.config
    store = project.store

    def readable() -> str:
        versions = store.versions(cfg.model.name)
        return f"{store.describe()}: {len(versions)} version(s) of {cfg.model.name}"

    found = _check("store read", "check the store's address and credentials (see `shipway validate`)", readable)
    yield found
    if not found.ok:
        return

    def resolves() -> str:
        version = store.resolve(cfg.model.ref)
        return f"{cfg.model.ref} -> {version.version} ({version.digest[:19]})"

    publish = f"publish one: `shipway model publish PATH --name {cfg.model.name}`"
    yield _check("model", publish, resolves)
    if getattr(store, "read_only", False):
        yield DoctorCheck("store write", True, "read-only store: publishing happens elsewhere")
    elif store.kind == "local":
        yield _check("store write", "make the folder writable for this user", lambda: _writable(store))


def _writable(store: Any) -> str:
    """The local store's folder (or its nearest existing parent) accepts a new file."""
    folder = Path(store.settings.path)
    if not folder.is_absolute():
        folder = store.context.root / folder
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    test = probe / f".shipway-doctor-{uuid.uuid4().hex[:8]}"
    try:
        test.write_bytes(b"")
        test.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write in {probe}: {exc.strerror}") from None
    return f"{folder} is writable"


def _registry(project: Any) -> Iterator[DoctorCheck]:
    registry = project.registry
    creds_fix = (
        "set the registry's credential variables named in shipway.yaml (e.g. SHIPWAY_REGISTRY_USERNAME/PASSWORD), "
        "or `docker login`"
    )

    def login() -> str:
        registry.login()
        creds = registry.credentials()
        who = f"as {creds['username']!r}" if creds and creds.get("username") else "anonymously"
        return f"{registry.describe()}: signed in {who}"

    found = _check("registry", creds_fix, login)
    yield found
    api = getattr(registry, "api", None)
    if not found.ok or api is None or not hasattr(api, "request"):
        return

    def push() -> str:
        from shipway.oci import _push

        repo = registry.settings.repository
        resp = api.request("POST", f"/v2/{repo}/blobs/uploads/", scope=_push(repo))
        if resp.status_code != 202:
            raise ConfigError(f"starting an upload to {repo} answered {resp.status_code}")
        location = resp.headers.get("Location", "")
        if location:
            api.request("DELETE", api._location(resp), scope=_push(repo))  # cancel: nothing is stored
        return f"may push to {registry.repository()}"

    yield _check("registry push", "grant the identity push rights on the repository (e.g. AcrPush)", push)


def _orchestrator(project: Any) -> Iterator[DoctorCheck]:
    orch = project.orchestrator
    states: list[str] = []

    def reachable() -> str:
        found = orch.status(project.app, project.environment)
        states.append(found.state)
        live = str(found.image) if found.image else "nothing released yet"
        return f"{orch.describe()}: {project.app} ({project.environment}) {found.state}, {live}"

    yield _check("orchestrator", "check the orchestrator's address and credentials in shipway.yaml", reachable)
    if states != ["healthy"]:
        return

    def answers() -> str:
        import requests  # loaded when doctor asks the live release, not with the plugins that import this module

        url = orch.endpoint(project.app, project.environment).rstrip("/") + project.loaded.config.app.health
        started = time.monotonic()
        response = requests.get(url, timeout=LIVE_TIMEOUT)
        took = (time.monotonic() - started) * 1000
        if response.status_code != 200:
            raise BackendError(f"GET {url} answered {response.status_code} in {took:.0f} ms, not 200")
        return f"GET {url}: 200 in {took:.0f} ms"

    yield _check(
        "live health",
        "the release is up but does not answer its health path: `shipway status`, the app's logs, "
        "then `shipway rollback` or a new `shipway release`",
        answers,
    )


def exit_code(checks: list[DoctorCheck]) -> int:
    """0 when every check passed; 2 when the configuration failed; 7 when a backend check failed."""
    if all(c.ok for c in checks):
        return 0
    return 2 if any(c.name == "config" and not c.ok for c in checks) else 7


def format_line(check: DoctorCheck) -> str:
    """``ok    name          detail`` or ``FAIL  name          detail -- fix: ...``: one line per check."""
    line = f"{'ok' if check.ok else 'FAIL':<5} {check.name:<14} {check.detail}"
    return line if check.ok or not check.fix else f"{line} -- fix: {check.fix}"
