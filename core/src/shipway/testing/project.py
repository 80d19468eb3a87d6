"""End-to-end harness: run the ``shipway`` CLI on a git-initialised copy of an app.

Used by shipway's own pipeline tests and by plugin authors who want their
backends exercised through ``shipway run`` / ``release`` exactly as CI does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from shipway.testing.services import RegistryService


def project_env(
    work: Path,
    registry: RegistryService | None = None,
    *,
    drop: tuple[str, ...] = (),
    registry_address: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """The environment to run shipway on a project in a test (the variables a ``shipway init`` config reads).

    This process's environment without any ``SHIPWAY_`` variable, nor one starting
    with a prefix in ``drop``; a model store (``SHIPWAY_MODEL_STORE``) and a cache
    (``SHIPWAY_CACHE_DIR``) under ``work``; a release environment of its own
    (``SHIPWAY_ENVIRONMENT``); the classic builder (``DOCKER_BUILDKIT=0``); with
    ``registry``, its address (or ``registry_address``, a proxy in front of it)
    and credentials (``SHIPWAY_REGISTRY``, ``_USERNAME``, ``_PASSWORD``); then ``extra``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPWAY_", *drop))}
    env.update(
        SHIPWAY_MODEL_STORE=str(work / "store"),
        SHIPWAY_CACHE_DIR=str(work / "cache"),
        SHIPWAY_ENVIRONMENT=f"test-{uuid.uuid4().hex[:8]}",  # never a developer's own release, nor another test's
        DOCKER_BUILDKIT="0",
    )
    if registry is not None:
        env.update(
            SHIPWAY_REGISTRY=registry_address or registry.address,
            SHIPWAY_REGISTRY_USERNAME=registry.username,
            SHIPWAY_REGISTRY_PASSWORD=registry.password,
        )
    env.update(extra)
    return env


@dataclass
class AppProject:
    """A copy of an app folder under git, with the environment its shipway.yaml reads."""

    root: Path
    env: dict[str, str]
    port: int

    @classmethod
    def copy(cls, source: Path, dest: Path, env: dict[str, str], port: int) -> AppProject:
        """Copy ``source`` to ``dest`` and commit it, so builds have a real commit."""
        shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".shipway", "build", "__pycache__"))
        project = cls(root=dest, env=env, port=port)
        project.git("init", "-q", "-b", "main")
        project.commit("app")
        return project

    def shipway(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``shipway ARGS`` in the project (a subprocess, like CI); output and time are echoed for pytest."""
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "shipway.cli", *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=900,
        )
        took = time.monotonic() - started
        print(f"$ shipway {' '.join(args)} -> {proc.returncode} in {took:.1f}s\n{proc.stdout}{proc.stderr}")
        return proc

    def git(self, *args: str) -> str:
        out = subprocess.run(["git", *args], cwd=self.root, check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("-c", "user.name=shipway-tests", "-c", "user.email=tests@shipway.invalid", "commit", "-qm", message)
        return self.git("rev-parse", "HEAD")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def post_json_file(self, path: str, json_file: str) -> Any:
        """POST the JSON in ``json_file`` (relative to the project) to the live app."""
        body = json.loads((self.root / json_file).read_text())
        return requests.post(self.url(path), json=body, timeout=10).json()

    @staticmethod
    def record(path: Path) -> Any:
        return json.loads(path.read_text())
