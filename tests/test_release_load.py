"""Releases under bounded load on 127.0.0.1, and one release at a time per app and environment.

Load: the kit's :class:`shipway.testing.load.Load` (threads, a requests.Session
each, a new connection per request, bounded in count and time) counts every
request during a release; each test prints a ``[load]`` line (``pytest -s``
shows it, CI logs keep it): these are the figures in docs/reliability.md.
Docker is stop-first on one host port, so a release has a gap, which is
measured and bounded; Kubernetes (the fake API server, real containers as
pods, maxUnavailable 0) must drop nothing, on a good release and on a bad one
that is rolled back.

Locks: two real ``shipway release`` processes of one app and environment;
the second is refused with exit 9 while the first runs, and never touches the
release; a holder killed with SIGKILL does not block the next release for
longer than its lease (Docker: the lock dies with its process; Kubernetes: the
Lease, which the holder renews, expires).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from release_projects import in_progress, push_images, release_project, status, version

from shipway import dockerutil
from shipway.backends.base import BackendContext
from shipway.backends.docker_orchestrator import DockerOrchestrator, DockerOrchestratorSettings, RolloutFailed
from shipway.domain import ImageRef, Release
from shipway.localhttp import LocalServer
from shipway.testing.contracts import unique
from shipway.testing.interrupt import kill_when, spawn
from shipway.testing.load import Load
from shipway.testing.services import RegistryService, free_port

LOCKED = 9
SLOW_START_3S = ["sh", "-c", "sleep 3 && exec httpd -f -p 8000 -h /www"]


@pytest.fixture
def images(shipway_contract_registry: Any, shipway_tiny_image: Any) -> dict[str, ImageRef]:
    return push_images(shipway_contract_registry, shipway_tiny_image)


def release(app: str, image: ImageRef, environment: str = "default") -> Release:
    return Release(app=app, environment=environment, image=image, port=8000, health="/healthz")


# -- the load generator itself -------------------------------------------------------------


def test_load_counts_every_request_and_the_longest_outage() -> None:
    down = threading.Event()

    class Flaky(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(503 if down.is_set() else 200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"up")

    server = LocalServer(Flaky)
    try:
        with Load(server.url + "/version", workers=3, limit=400, seconds=10) as load:
            time.sleep(0.4)
            down.set()
            time.sleep(0.5)
            down.clear()
            time.sleep(0.4)
        load.report("a server down for 500 ms")
    finally:
        server.stop()
    assert load.total == load.ok + load.failures <= 3 * 400
    assert load.failures > 10
    assert set(load.failed) == {"HTTP 503"}
    assert 400 <= load.outage_ms <= 900
    assert load.bodies == {"up": load.ok}


# -- docker: stop-first, the gap measured ----------------------------------------------------


def docker_orchestrator(tmp_path: Path) -> DockerOrchestrator:
    settings = DockerOrchestratorSettings(kind="docker", host_port=free_port(), stop_timeout=2, deadline=10)
    return DockerOrchestrator(settings, BackendContext(root=tmp_path, cache_dir=tmp_path / "cache"))


def test_docker_release_gap_under_load_is_one_container_start(
    tmp_path: Path, images: dict[str, ImageRef], shipway_contract_registry: Any, shipway_docker: None
) -> None:
    orch = docker_orchestrator(tmp_path)
    port = orch.settings.host_port or 0
    app, auth = unique("gap"), shipway_contract_registry.credentials()
    try:
        orch.deploy(release(app, images["v1"]), auth=auth)
        with Load.on_port(port, seconds=60) as good:
            time.sleep(1)
            started = time.monotonic()
            second = orch.deploy(release(app, images["v2"]), auth=auth)
            took = time.monotonic() - started
            time.sleep(1)
        good.report(f"[docker] good release v1 -> v2 (stop-first; the release took {took:.1f}s)")
        assert second.digest == images["v2"].digest
        assert good.total > 50
        assert set(good.bodies) == {"v1", "v2"}
        # The old container serves until it stops (up to stop_timeout); the gap is the new one's start and boot.
        assert good.outage_ms < 2500, good.report("gap too long")

        with Load.on_port(port, seconds=60) as bad:
            time.sleep(1)
            with pytest.raises(RolloutFailed, match="did not become healthy"):
                orch.deploy(release(app, images["crash"]), auth=auth)
            back = orch.rollback(app)
            time.sleep(1)
        bad.report("[docker] crashing release, rolled back to v2")
        assert back.digest == images["v2"].digest
        assert set(bad.bodies) == {"v2"}  # the crashing image never answered
        assert bad.outage_ms < 5000, bad.report("rollback gap too long")
        assert version(f"http://127.0.0.1:{port}") == "v2"
    finally:
        orch.remove(app)


# -- kubernetes on the fake API server: rolling, nothing dropped ------------------------------


def test_kubernetes_release_and_rolled_back_release_under_load_drop_nothing(
    tmp_path: Path, images: dict[str, ImageRef], shipway_contract_registry: Any, shipway_fake_k8s: Any
) -> None:
    from shipway_kubernetes import KubernetesOrchestrator, KubernetesSettings
    from shipway_kubernetes.orchestrator import RolloutFailed as K8sRolloutFailed

    kubeconfig = shipway_fake_k8s.write_kubeconfig(tmp_path / "kubeconfig")
    settings = KubernetesSettings(kind="kubernetes", kubeconfig=str(kubeconfig), deadline=6)
    orch = KubernetesOrchestrator(settings, BackendContext(root=tmp_path, cache_dir=tmp_path / "cache"))
    app, auth = unique("roll"), shipway_contract_registry.credentials()
    url = f"{shipway_fake_k8s.url}/api/v1/namespaces/default/services/{app}:80/proxy/version"
    bearer = {"Authorization": f"Bearer {shipway_fake_k8s.token}"}
    try:
        orch.deploy(release(app, images["v1"]), auth=auth)
        with Load(url, headers=bearer, seconds=90) as good:
            time.sleep(1)
            second = orch.deploy(release(app, images["v2"]), auth=auth)
            time.sleep(1)
        good.report("[kubernetes] good release v1 -> v2 (rolling, maxUnavailable 0)")
        assert second.running_digests == [images["v2"].digest]
        assert good.total > 50
        assert dict(good.failed) == {}
        assert set(good.bodies) == {"v1", "v2"}

        with Load(url, headers=bearer, seconds=90) as bad:
            time.sleep(1)
            with pytest.raises(K8sRolloutFailed, match="ProgressDeadlineExceeded"):
                orch.deploy(release(app, images["unhealthy"]), auth=auth)
            back = orch.rollback(app)
            time.sleep(1)
        bad.report("[kubernetes] unhealthy release, rolled back to v2")
        assert back.image is not None
        assert back.image.digest == images["v2"].digest
        assert bad.total > 50
        assert dict(bad.failed) == {}
        assert set(bad.bodies) == {"v2"}  # the unhealthy pod never received a request
    finally:
        orch.remove(app)


# -- one release at a time: two processes ----------------------------------------------------


def _containers(app: str) -> list[str]:
    found = dockerutil.client().containers.list(all=True, filters={"label": f"io.shipway.app={app}"})
    return sorted(c.name for c in found)


def test_docker_releases_from_two_processes_never_interleave(
    tmp_path: Path,
    images: dict[str, ImageRef],
    shipway_registry: RegistryService,
    shipway_contract_registry: Any,
    shipway_tiny_image: Any,
    shipway_docker: None,
) -> None:
    port = free_port()
    orchestrator = {"kind": "docker", "host_port": port, "stop_timeout": 2, "deadline": 20}
    project = release_project(tmp_path / "p", shipway_registry, shipway_contract_registry, orchestrator)
    app = project.root.joinpath("shipway.yaml").read_text().split('"name": "')[1].split('"')[0]
    # v2 that takes 3 s to serve: the first release surely still holds the lock when the second asks
    files = {"version": "v2", "info": json.dumps({"ok": True})}
    slow_v2 = shipway_contract_registry.push(shipway_tiny_image(files=files, command=SLOW_START_3S), "v2-slow")
    try:
        assert project.shipway("release", "--image", images["v1"].pinned).returncode == 0
        first = spawn(project, "release", "--image", slow_v2.pinned)
        end = time.monotonic() + 30
        while not in_progress(project).exists() and first.poll() is None and time.monotonic() < end:
            time.sleep(0.02)
        assert in_progress(project).exists(), "the first release never took the lock"
        second = project.shipway("release", "--image", images["wrong"].pinned)
        assert first.poll() is None, "the first release ended before the second was refused: nothing was proved"
        assert second.returncode == LOCKED
        assert "another release of" in second.stderr
        assert "in progress" in second.stderr
        out, err = first.communicate(timeout=60)
        print(f"[first] {out}{err}")
        assert first.returncode == 0, err
        live = status(project)
        assert live["image"]["digest"] == slow_v2.digest
        assert live["revision"] == 2  # the refused release created nothing
        assert len(_containers(app)) == 2
        assert version(f"http://127.0.0.1:{port}") == "v2"

        # A holder killed mid-release: the lock died with its process, the next release goes ahead.
        killed = spawn(project, "release", "--image", images["v1"].pinned)
        kill_when(killed, in_progress(project).exists, timeout=30)
        after = project.shipway("release", "--image", images["v1"].pinned)
        assert after.returncode == 0, after.stderr
        assert "did not finish" in after.stderr
        assert status(project)["image"]["digest"] == images["v1"].digest
        assert version(f"http://127.0.0.1:{port}") == "v1"
    finally:
        project.shipway("down")


def test_kubernetes_releases_from_two_processes_never_interleave_and_a_dead_holders_lease_expires(
    tmp_path: Path,
    images: dict[str, ImageRef],
    shipway_registry: RegistryService,
    shipway_contract_registry: Any,
    shipway_fake_k8s: Any,
) -> None:
    kubeconfig = shipway_fake_k8s.write_kubeconfig(tmp_path / "kubeconfig")
    orchestrator = {"kind": "kubernetes", "kubeconfig": str(kubeconfig), "deadline": 20, "lease_seconds": 4}
    project = release_project(tmp_path / "p", shipway_registry, shipway_contract_registry, orchestrator)
    leases = [k for k in shipway_fake_k8s.objects if k[0] == "leases"]
    assert leases == []

    def lease() -> dict[str, Any] | None:
        found = [o for k, o in list(shipway_fake_k8s.objects.items()) if k[0] == "leases"]
        return found[0] if found else None

    def deployment_writes() -> int:
        return sum(1 for m, p in list(shipway_fake_k8s.requests) if m in ("PATCH", "PUT") and "/deployments/" in p)

    try:
        assert project.shipway("release", "--image", images["v1"].pinned).returncode == 0
        first = spawn(project, "release", "--image", images["v2"].pinned)
        end = time.monotonic() + 30
        while (lease() is None or deployment_writes() < 2) and first.poll() is None and time.monotonic() < end:
            time.sleep(0.02)
        writes = deployment_writes()
        second = project.shipway("release", "--image", images["wrong"].pinned)
        assert first.poll() is None, "the first release ended before the second was refused: nothing was proved"
        assert second.returncode == LOCKED
        assert "holds Lease default/shipway-" in second.stderr
        assert deployment_writes() == writes  # the refused release wrote nothing
        out, err = first.communicate(timeout=90)
        print(f"[first] {out}{err}")
        assert first.returncode == 0, err
        assert status(project)["image"]["digest"] == images["v2"].digest
        assert lease() is None  # released

        # A holder killed mid-release: refused while its lease runs, taken over once it expires.
        killed = spawn(project, "release", "--image", images["v1"].pinned)
        kill_when(killed, lambda: lease() is not None and in_progress(project).exists(), timeout=30)
        refused = project.shipway("release", "--image", images["v1"].pinned)
        assert refused.returncode == LOCKED, refused.stderr
        time.sleep(4.5)
        after = project.shipway("release", "--image", images["v1"].pinned)
        assert after.returncode == 0, after.stderr
        assert "taking over Lease" in after.stderr
        assert status(project)["image"]["digest"] == images["v1"].digest
        assert lease() is None
    finally:
        project.shipway("down")
