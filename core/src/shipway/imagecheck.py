"""Verifying a built image: start it on the local engine, wait until ready, run the verify checks.

The container gets the app's environment and its secrets as read-only files
under ``/run/secrets`` (as on every orchestrator), publishes the app port on
127.0.0.1 only, and is removed afterwards with its secret files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import docker.errors
from docker.models.containers import Container

from shipway import dockerutil, secretfiles
from shipway.config import LoadedConfig
from shipway.domain import CheckResult
from shipway.errors import VerifyFailed
from shipway.verify import run_checks, wait_ready


def verify_built_image(
    loaded: LoadedConfig,
    image_id: str,
    cache_dir: Path,
    defer: Callable[[Callable[[], None]], object] | None = None,
    on_running: Callable[[], object] | None = None,
) -> list[CheckResult]:
    """Run ``image_id`` and its verify checks; VerifyFailed if it never becomes ready, else every check's result.

    ``defer``: hands over the container's removal (and its secret files') to
    run while the caller goes on, e.g. ``executor.submit``; the caller waits
    for it before it ends. None: removed before this returns.
    ``on_running``: called once the container runs, while the app starts and
    is checked (the engine has no more layer work to do for it).
    """
    cfg = loaded.config
    client = dockerutil.client()
    secrets_dir = secretfiles.write(cfg.app.secrets, cache_dir / "secrets")
    started: list[Container] = []

    def remove() -> None:
        try:
            for container in started:
                container.remove(force=True)
        finally:
            secretfiles.remove(secrets_dir)

    try:
        try:
            container = client.containers.run(
                image_id,
                detach=True,
                environment=cfg.app.env,
                ports={f"{cfg.app.port}/tcp": ("127.0.0.1", None)},
                volumes=secretfiles.volumes(secrets_dir),
                labels={"io.shipway.verify": cfg.app.name},
            )
        except docker.errors.APIError as exc:
            raise VerifyFailed(f"cannot start the built image: {exc.explanation or exc}") from None
        started.append(container)
        if on_running is not None:
            on_running()
        container.reload()
        bindings = container.attrs["NetworkSettings"]["Ports"].get(f"{cfg.app.port}/tcp") or []
        if not bindings:
            raise VerifyFailed(f"the container publishes no port {cfg.app.port}")
        url = f"http://127.0.0.1:{bindings[0]['HostPort']}"

        def exited() -> str | None:
            container.reload()
            if container.status != "exited":
                return None
            return f"the container exited with code {container.attrs['State']['ExitCode']}"

        why = wait_ready(url, cfg.app.health, cfg.release.deadline, problem=exited)
        if why:
            logs = container.logs(tail=20).decode(errors="replace").strip()
            raise VerifyFailed(
                f"the built image did not become ready: {why} (app.health is the path that must answer 200, "
                "release.deadline how long to wait)" + (f"\n{logs}" if logs else "")
            )
        return run_checks(url, cfg.verify, loaded.context)
    finally:
        if defer is None:
            remove()
        else:
            defer(remove)
