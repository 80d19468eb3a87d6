"""Fixtures for the swarm tests: a real single-node swarm, orchestrators on it, a bounded load generator."""

from __future__ import annotations

import http.client
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shipway import dockerutil
from shipway.backends.base import BackendContext
from shipway.testing.services import free_port
from shipway_swarm import SwarmOrchestrator, SwarmSettings

BASE_IMAGE = os.environ.get("SHIPWAY_BASE_IMAGE", "shipway-base:bookworm")


@pytest.fixture(scope="session")
def swarm(shipway_docker: None) -> None:
    """Fail (never skip) unless the local engine is an active swarm manager with the base image."""
    info = dockerutil.client().info().get("Swarm") or {}
    if info.get("LocalNodeState") != "active" or not info.get("ControlAvailable"):
        pytest.fail("the Docker engine is not a swarm manager: run scripts/services.sh", pytrace=False)
    try:
        dockerutil.client().images.get(BASE_IMAGE)
    except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound
        pytest.fail(f"base image {BASE_IMAGE} is missing: run scripts/services.sh", pytrace=False)


@pytest.fixture
def swarm_factory(swarm: None, tmp_path: Path) -> Any:
    """``swarm_factory(**settings)``: a swarm orchestrator with the front proxy on a free port."""

    def make(**options: Any) -> SwarmOrchestrator:
        values: dict[str, Any] = {
            "kind": "swarm",
            "published_port": free_port(),
            "publish_mode": "host",
            "endpoint_mode": "dnsrr",
            "proxy": {"enabled": True, "base_image": BASE_IMAGE},
            "deadline": 90,
            "monitor": 2,
            "health_interval": 1,
            "health_retries": 2,
            "stop_grace_period": 2,
        }
        values.update(options)
        return SwarmOrchestrator(SwarmSettings(**values), BackendContext(root=tmp_path, cache_dir=tmp_path / "cache"))

    return make


@dataclass
class Load:
    """A bounded HTTP load on 127.0.0.1: ``workers`` threads, each at most ``limit`` requests and ``seconds``.

    Every request is a new connection (the case a release can break); the
    result counts successes, failures by reason and the bodies seen.
    """

    port: int
    path: str = "/version"
    workers: int = 4
    limit: int = 5000
    seconds: float = 240.0
    key: Callable[[str], str] = lambda body: body[:40]
    ok: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    bodies: Counter[str] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _mutex: threading.Lock = field(default_factory=threading.Lock)

    def _worker(self) -> None:
        end = time.monotonic() + self.seconds
        for _ in range(self.limit):
            if self._stop.is_set() or time.monotonic() > end:
                return
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", self.path, headers={"Connection": "close"})
                resp = conn.getresponse()
                body = resp.read().decode(errors="replace").strip()
                with self._mutex:
                    if resp.status == 200:
                        self.ok += 1
                        self.bodies[self.key(body)] += 1
                    else:
                        self.failed[f"HTTP {resp.status}"] += 1
            except (OSError, http.client.HTTPException) as exc:
                with self._mutex:
                    self.failed[type(exc).__name__] += 1
            finally:
                conn.close()
            time.sleep(0.01)

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(self.workers)]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    @property
    def total(self) -> int:
        return self.ok + sum(self.failed.values())

    def report(self, what: str) -> str:
        line = (
            f"[load] {what}: {self.total} requests, {self.ok} ok, {sum(self.failed.values())} failed"
            f" {dict(self.failed) or ''}; bodies {dict(self.bodies)}"
        )
        print(line)
        return line


@pytest.fixture
def load() -> type[Load]:
    return Load
