"""Releases on the real single-node swarm, under bounded load through the front proxy.

Each test prints its load counts (`pytest -s` shows them; CI keeps them in the log):
these are the zero-downtime figures in the README.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests

from shipway import dockerutil
from shipway.domain import ImageRef, Release
from shipway.errors import LockedError
from shipway.testing.contracts import unique
from shipway.testing.services import IGNORES_SIGTERM
from shipway_swarm import spec
from shipway_swarm.orchestrator import RolloutFailed

# Serves /version "v3" but no /healthz: it starts, and its health check fails.
UNHEALTHY = ["sh", "-c", "mkdir -p /dev/shm/w && echo v3 > /dev/shm/w/version && exec httpd -f -p 8000 -h /dev/shm/w"]


@pytest.fixture
def images(shipway_contract_registry: Any, shipway_tiny_image: Any) -> dict[str, ImageRef]:
    return {
        "v1": shipway_contract_registry.push(shipway_tiny_image(files={"version": "v1"}), "v1"),
        "v2": shipway_contract_registry.push(shipway_tiny_image(files={"version": "v2"}), "v2"),
        "unhealthy": shipway_contract_registry.push(shipway_tiny_image(command=UNHEALTHY), "unhealthy"),
    }


def release(app: str, image: ImageRef, replicas: int = 1) -> Release:
    return Release(
        app=app,
        image=image,
        port=8000,
        health="/healthz",
        replicas=replicas,
        labels={"org.opencontainers.image.revision": "c0ffee", "io.shipway.model.version": "7"},
    )


def test_good_release_and_rollback_drop_no_request(
    swarm_factory: Any, images: dict[str, ImageRef], shipway_contract_registry: Any, load: Any
) -> None:
    orch = swarm_factory()
    app = unique("zd")
    auth = shipway_contract_registry.credentials()
    try:
        first = orch.deploy(release(app, images["v1"]), auth=auth)
        assert first.state == "healthy"
        assert first.labels["io.shipway.model.version"] == "7"
        port = orch.settings.published_port
        with load(port) as during_release:
            time.sleep(1)
            second = orch.deploy(release(app, images["v2"]), auth=auth)
            time.sleep(1)
        during_release.report("good release v1 -> v2 (start-first, 1 replica)")
        assert second.digest == images["v2"].digest
        assert second.running_digests == [images["v2"].digest]
        assert during_release.total > 50
        assert dict(during_release.failed) == {}
        assert set(during_release.bodies) == {"v1", "v2"}
        with load(port) as during_rollback:
            time.sleep(1)
            back = orch.rollback(app)
            time.sleep(1)
        during_rollback.report("rollback v2 -> v1 (Swarm rollback=previous, start-first)")
        assert back.digest == images["v1"].digest
        assert dict(during_rollback.failed) == {}
        assert set(during_rollback.bodies) == {"v1", "v2"}
    finally:
        orch.remove(app)


def test_a_release_ends_only_once_no_old_task_runs(
    swarm_factory: Any, images: dict[str, ImageRef], shipway_contract_registry: Any, shipway_tiny_image: Any
) -> None:
    """Swarm calls an update complete when its monitor window ends, which can be before the old task has
    stopped (here it ignores SIGTERM, so it runs until stop_grace_period). Until then it can still be sent
    requests, so the checks that follow a deploy could pass against the old revision: deploy waits."""
    orch = swarm_factory(monitor=0, stop_grace_period=4)
    app = unique("done")
    auth = shipway_contract_registry.credentials()
    v1 = shipway_contract_registry.push(shipway_tiny_image(files={"version": "v1"}, command=IGNORES_SIGTERM), "v1-term")
    try:
        orch.deploy(release(app, v1), auth=auth)
        orch.deploy(release(app, images["v2"]), auth=auth)
        tasks = dockerutil.client().api.tasks(filters={"service": spec.service_name(app, "default")})
        old = [t for t in tasks if v1.digest in t["Spec"]["ContainerSpec"]["Image"]]
        assert old, "the first release's task is not listed"
        assert [t["Status"]["State"] for t in old if t["Status"]["State"] == "running"] == []
        answers = {requests.get(orch.endpoint(app) + "/version", timeout=5).text.strip() for _ in range(10)}
        assert answers == {"v2"}
    finally:
        orch.remove(app)


def test_unhealthy_image_is_rolled_back_by_swarm_and_v1_serves_throughout(
    swarm_factory: Any, images: dict[str, ImageRef], shipway_contract_registry: Any, load: Any
) -> None:
    orch = swarm_factory()
    app = unique("bad")
    auth = shipway_contract_registry.credentials()
    try:
        orch.deploy(release(app, images["v1"]), auth=auth)
        # The next release also changes the policy: it must go in an update of its own, before the image.
        changed = swarm_factory(published_port=orch.settings.published_port, monitor=3)
        with load(orch.settings.published_port) as during:
            time.sleep(1)
            with pytest.raises(RolloutFailed) as err:
                changed.deploy(release(app, images["unhealthy"]), auth=auth)
            time.sleep(1)
        during.report("unhealthy image, rolled back by Swarm")
        print(f"[swarm] deploy raised: {err.value}")
        assert "Swarm rolled back the update" in str(err.value)
        assert "unhealthy" in str(err.value)
        assert dict(during.failed) == {}
        assert set(during.bodies) == {"v1"}  # the unhealthy task never received a request
        status = changed.status(app)
        assert status.digest == images["v1"].digest
        assert status.state == "healthy"
        live = dockerutil.client().api.inspect_service(spec.service_name(app, "default"))["Spec"]
        assert live["UpdateConfig"]["Monitor"] == 3 * spec.NS  # the rollback kept the new policy
        assert live["UpdateConfig"]["Order"] == "start-first"
        restored = changed.rollback(app)  # what the engine calls next: nothing left to undo
        assert restored.digest == images["v1"].digest
        assert requests.get(changed.endpoint(app) + "/version", timeout=5).text.strip() == "v1"
    finally:
        orch.remove(app)


def test_two_concurrent_releases_never_interleave(
    swarm_factory: Any, images: dict[str, ImageRef], shipway_contract_registry: Any
) -> None:
    first = swarm_factory()
    port = first.settings.published_port
    refused, waiting = swarm_factory(published_port=port), swarm_factory(published_port=port, lock_wait=120)
    app = unique("lock")
    auth = shipway_contract_registry.credentials()
    events: list[tuple[str, float]] = []
    errors: list[BaseException] = []

    def release_v1() -> None:
        try:
            with first.lock(app):
                events.append(("first-start", time.monotonic()))
                first.deploy(release(app, images["v1"]), auth=auth)
                events.append(("first-end", time.monotonic()))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    try:
        worker = threading.Thread(target=release_v1)
        worker.start()
        lock_name = f"shipway-lock-{spec.service_name(app, 'default')}"
        end = time.monotonic() + 30
        while not dockerutil.client().configs.list(filters={"name": lock_name}) and time.monotonic() < end:
            time.sleep(0.1)
        with pytest.raises(LockedError, match=f"holds swarm config {lock_name}"), refused.lock(app):
            refused.deploy(release(app, images["v2"]), auth=auth)
        with waiting.lock(app):
            events.append(("second-start", time.monotonic()))
            second = waiting.deploy(release(app, images["v2"]), auth=auth)
            events.append(("second-end", time.monotonic()))
        worker.join(timeout=120)
        assert errors == []
        order = [name for name, _ in sorted(events, key=lambda e: e[1])]
        print(f"[swarm] lock order: {order}")
        assert order == ["first-start", "first-end", "second-start", "second-end"]
        assert second.digest == images["v2"].digest
        assert second.revision == 2
        assert not dockerutil.client().configs.list(filters={"name": lock_name})  # released
    finally:
        first.remove(app)


def test_failed_digests_live_in_the_swarm(swarm_factory: Any, images: dict[str, ImageRef], tmp_path: Any) -> None:
    one, other = swarm_factory(), swarm_factory()  # two runners: separate caches, one swarm
    app = unique("state")
    try:
        digest = images["unhealthy"].digest or ""
        one.mark_failed(app, "default", digest, "Swarm rolled back the update")
        assert other.failed_digests(app) == {digest: "Swarm rolled back the update"}
        other.mark_failed(app, "default", "sha256:" + "1" * 64, "3 of 5 verify checks failed")
        assert list(one.failed_digests(app)) == [digest, "sha256:" + "1" * 64]
        labels = {"label": [f"{spec.L_APP}={app}", "io.shipway.swarm.state=failed"]}
        assert len(dockerutil.client().configs.list(filters=labels)) == 1  # older lists are dropped
    finally:
        one.remove(app)
    assert other.failed_digests(app) == {}
