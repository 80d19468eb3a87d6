"""The kubernetes orchestrator: the orchestrator contract, and rollout behaviour, on the fake API server."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from shipway.domain import ImageRef, Release
from shipway.errors import BackendError
from shipway.testing.contracts import OrchestratorContract, unique
from shipway_kubernetes import KubernetesOrchestrator
from shipway_kubernetes.testing import FakeApiServer


class TestKubernetesOrchestrator(OrchestratorContract):
    @pytest.fixture
    def orchestrator(self, k8s_factory: Any) -> KubernetesOrchestrator:
        return k8s_factory()


def release(app: str, image: ImageRef, replicas: int = 1) -> Release:
    return Release(
        app=app,
        image=image,
        port=8000,
        health="/healthz",
        replicas=replicas,
        labels={"org.opencontainers.image.revision": "c0ffee", "io.shipway.model.version": "3"},
    )


def test_rolling_update_reports_progress_and_keeps_serving(
    k8s_factory: Any, shipway_contract_images: dict[str, ImageRef], shipway_fake_k8s: FakeApiServer
) -> None:
    orch = k8s_factory()
    app = unique("roll")
    try:
        first = orch.deploy(release(app, shipway_contract_images["good"], replicas=2))
        assert first.replicas_ready == 2
        assert first.labels["io.shipway.model.version"] == "3"
        url = orch.endpoint(app)
        seen: list[int] = []
        stop = False

        def probe() -> None:
            while not stop:
                try:
                    seen.append(requests.get(url + "/healthz", timeout=2).status_code)
                except requests.RequestException:
                    seen.append(0)
                time.sleep(0.05)

        import threading

        t = threading.Thread(target=probe)
        t.start()
        second = orch.deploy(release(app, shipway_contract_images["good2"], replicas=2))
        stop = True
        t.join()
        assert second.digest == shipway_contract_images["good2"].digest
        assert second.revision == 2
        assert seen, "the prober sent no request"
        assert all(code == 200 for code in seen), seen.count(200) / max(1, len(seen))
        dep = k8s.AppsV1Api(orch.client).read_namespaced_deployment(app, "default")
        assert dep.status.observed_generation == dep.metadata.generation
        progressing = next(c for c in dep.status.conditions if c.type == "Progressing")
        assert progressing.reason == "NewReplicaSetAvailable"
    finally:
        orch.remove(app)


def test_a_crashing_image_exceeds_the_progress_deadline(
    k8s_factory: Any, shipway_contract_images: dict[str, ImageRef]
) -> None:
    orch = k8s_factory(deadline=4)
    app = unique("crash")
    try:
        orch.deploy(release(app, shipway_contract_images["good"]))
        with pytest.raises(BackendError) as err:
            orch.deploy(release(app, shipway_contract_images["bad"]))
        assert "ProgressDeadlineExceeded" in str(err.value)
        assert "CrashLoopBackOff" in str(err.value)
        assert orch.status(app).state == "failed"
        # The old pods kept serving through the failed rollout (maxUnavailable 0).
        assert requests.get(orch.endpoint(app) + "/version", timeout=5).text.strip() == "v1"
        restored = orch.rollback(app)
        assert restored.state == "healthy"
        assert restored.digest == shipway_contract_images["good"].digest
    finally:
        orch.remove(app)


def test_server_side_apply_conflicts_are_real_and_shipway_forces(
    k8s_factory: Any, shipway_contract_images: dict[str, ImageRef]
) -> None:
    orch = k8s_factory()
    app = unique("ssa")
    try:
        orch.deploy(release(app, shipway_contract_images["good"]))
        apps = k8s.AppsV1Api(orch.client)
        body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": app}, "spec": {"replicas": 3}}
        with pytest.raises(ApiException) as err:
            apps.patch_namespaced_deployment(app, "default", body, field_manager="kubectl-edit",
                                             _content_type="application/apply-patch+yaml")  # fmt: skip
        assert err.value.status == 409
        assert ".spec.replicas" in err.value.body
        apps.patch_namespaced_deployment(app, "default", body, field_manager="kubectl-edit", force=True,
                                         _content_type="application/apply-patch+yaml")  # fmt: skip
        assert apps.read_namespaced_deployment(app, "default").spec.replicas == 3
        managers = {m.manager for m in apps.read_namespaced_deployment(app, "default").metadata.managed_fields}
        assert managers == {"shipway", "kubectl-edit"}
        again = orch.deploy(release(app, shipway_contract_images["good2"], replicas=1))  # shipway applies with force
        assert again.replicas_desired == 1
        assert again.digest == shipway_contract_images["good2"].digest
    finally:
        orch.remove(app)


def test_wrong_token_is_a_clear_error(k8s_factory: Any, shipway_fake_k8s: FakeApiServer, tmp_path) -> None:
    shipway_fake_k8s.token = "rotated"
    with pytest.raises(BackendError, match="refused the credentials"):
        k8s_factory().status(unique("x"))


def test_unreachable_cluster_names_the_address(tmp_path, k8s_factory: Any, shipway_kubeconfig: Path) -> None:
    from shipway.testing.services import free_port

    text = shipway_kubeconfig.read_text()
    port = text.split("127.0.0.1:")[1].split("\n")[0]
    shipway_kubeconfig.write_text(text.replace(f"127.0.0.1:{port}", f"127.0.0.1:{free_port()}"))
    with pytest.raises(BackendError, match=re.escape("cannot reach the Kubernetes API at http://127.0.0.1")):
        k8s_factory().status(unique("x"))


def test_one_release_at_a_time_through_a_lease(k8s_factory: Any, shipway_fake_k8s: FakeApiServer) -> None:
    from shipway.errors import LockedError

    first, second = k8s_factory(), k8s_factory()
    app = unique("lock")
    with first.lock(app), pytest.raises(LockedError, match=f"holds Lease default/shipway-{app}"), second.lock(app):
        pass
    with second.lock(app):  # released: free again
        assert ("leases", "default", f"shipway-{app}") in shipway_fake_k8s.objects
    assert ("leases", "default", f"shipway-{app}") not in shipway_fake_k8s.objects


def test_an_expired_lease_is_taken_over(k8s_factory: Any, shipway_fake_k8s: FakeApiServer) -> None:
    app = unique("stale")
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": f"shipway-{app}"},
             "spec": {"holderIdentity": "crashed-runner", "leaseDurationSeconds": 60,
                      "acquireTime": "2020-01-01T00:00:00.000000Z",
                      "renewTime": "2020-01-01T00:00:00.000000Z"}}  # fmt: skip
    orch = k8s_factory()
    orch.request(
        "POST", "/apis/coordination.k8s.io/v1/namespaces/default/leases", body=lease, content_type="application/json"
    )
    with orch.lock(app):
        held = shipway_fake_k8s.objects[("leases", "default", f"shipway-{app}")]
        assert held["spec"]["holderIdentity"] != "crashed-runner"
