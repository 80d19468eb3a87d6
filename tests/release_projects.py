"""Release-only projects: a shipway.yaml that releases tiny images already pushed (no build).

Used by the load, lock and killed-release tests, on the docker orchestrator and on
Kubernetes (the fake API server, real containers as pods). Every image serves
``/healthz`` and ``/version`` (its name); the verify check asks ``/info`` for
``{"ok": true}``, which ``wrong`` answers with false: healthy (after a second), but its checks fail.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from shipway.domain import ImageRef
from shipway.testing.project import AppProject
from shipway.testing.services import RegistryService, free_port

# Serves /version but no /healthz: it starts, and never becomes ready.
UNHEALTHY = [
    "sh",
    "-c",
    "mkdir -p /dev/shm/w && echo unhealthy > /dev/shm/w/version && exec httpd -f -p 8000 -h /dev/shm/w",
]


# Serves its files after a second: a killed release can be caught after its container starts, before it is ready.
SLOW_START = ["sh", "-c", "sleep 1 && exec httpd -f -p 8000 -h /www"]


def push_images(registry: Any, tiny_image: Any) -> dict[str, ImageRef]:
    """v1, v2, wrong (healthy, fails its checks), unhealthy, crash (exits at once): pushed by digest."""
    good = json.dumps({"ok": True})
    return {
        "v1": registry.push(tiny_image(files={"version": "v1", "info": good}), "v1"),
        "v2": registry.push(tiny_image(files={"version": "v2", "info": good}), "v2"),
        "wrong": registry.push(
            tiny_image(files={"version": "wrong", "info": json.dumps({"ok": False})}, command=SLOW_START), "wrong"
        ),
        "unhealthy": registry.push(tiny_image(command=UNHEALTHY), "unhealthy"),
        "crash": registry.push(tiny_image(command=["sh", "-c", "echo model file missing >&2; exit 3"]), "crash"),
    }


def release_project(
    root: Path, reg: RegistryService, registry: Any, orchestrator: dict[str, Any], app: str | None = None
) -> AppProject:
    """A project in ``root`` releasing images of ``registry`` (an oci backend on ``reg``) with ``orchestrator``."""
    root.mkdir(parents=True, exist_ok=True)
    app = app or f"rel-{uuid.uuid4().hex[:6]}"
    config = {
        "version": 1,
        "app": {"name": app, "port": 8000, "health": "/healthz"},
        "model": {"name": "unused"},
        "registry": {
            "kind": "oci",
            "address": reg.address,
            "repository": registry.settings.repository,
            "username": "${SHIPWAY_REGISTRY_USERNAME}",
            "password": "${SHIPWAY_REGISTRY_PASSWORD}",
        },
        "orchestrator": orchestrator,
        "verify": [{"request": "GET /info", "expect_json": {"ok": True}}],
        "release": {"environment": f"t{uuid.uuid4().hex[:6]}"},
    }
    (root / "shipway.yaml").write_text(json.dumps(config, indent=2))  # JSON is YAML
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPWAY_", "KUBECONFIG"))}
    env.update(
        SHIPWAY_REGISTRY_USERNAME=reg.username,
        SHIPWAY_REGISTRY_PASSWORD=reg.password,
        SHIPWAY_CACHE_DIR=str(root / "cache"),
    )
    return AppProject(root=root, env=env, port=int(orchestrator.get("host_port") or free_port()))


def status(project: AppProject) -> dict[str, Any]:
    out = project.shipway("status", "--json")
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def version(url: str, headers: dict[str, str] | None = None) -> str:
    """What ``url + /version`` answers now ('-' when nothing answers)."""
    try:
        resp = requests.get(url + "/version", headers=headers or {}, timeout=5)
    except requests.RequestException:
        return "-"
    return resp.text.strip() if resp.status_code == 200 else "-"


def version_within(url: str, expected: str, seconds: float = 20) -> str:
    """What ``url + /version`` answers once it answers ``expected``, or after ``seconds`` (bounded polling)."""
    end = time.monotonic() + seconds
    found = version(url)
    while found != expected and time.monotonic() < end:
        time.sleep(0.1)
        found = version(url)
    return found


def names(project: AppProject) -> tuple[str, str]:
    """The project's app and environment."""
    config = json.loads((project.root / "shipway.yaml").read_text())
    return config["app"]["name"], config["release"]["environment"]


def in_progress(project: AppProject) -> Path:
    """The note a release keeps while it runs (:mod:`shipway.journal`)."""
    config = json.loads((project.root / "shipway.yaml").read_text())
    return (
        project.root
        / "cache"
        / "releases-in-progress"
        / f"{config['app']['name']}-{config['release']['environment']}.json"
    )
