"""The kubernetes orchestrator's client through the kit's fault proxy, in front of the fake API server.

Reads and polls (GET) are retried by the client's connection pool with the
orchestrator's ``retries`` policy: a burst of 503, a 429 with Retry-After and a
reset mid-answer are survived, and the proxy counts the retries. Writes are
never sent twice. Persistent faults give one error naming the API server, exit
code 7, in bounded time; a stall ends in a timeout.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from shipway.backends.base import BackendContext
from shipway.errors import BackendError, ExitCode, LockedError
from shipway.progress import Reporter
from shipway.testing.faults import FaultProxy
from shipway_kubernetes.orchestrator import KubernetesOrchestrator, KubernetesSettings
from shipway_kubernetes.proxy import ServiceProxy
from shipway_kubernetes.testing.fake_apiserver import FakeApiServer

FAST = {"attempts": 4, "max_seconds": 20, "backoff": 0.05, "max_backoff": 0.2}
SERVICES = "/api/v1/namespaces/default/services"


@pytest.fixture
def proxy(shipway_fake_k8s: FakeApiServer, shipway_fault_proxy: Callable[..., FaultProxy]) -> FaultProxy:
    return shipway_fault_proxy(shipway_fake_k8s.url)


def orchestrator(
    fake: FakeApiServer, proxy: FaultProxy | None, tmp_path: Path, lease_seconds: int = 30, **retries: Any
) -> KubernetesOrchestrator:
    """The orchestrator talking to ``fake`` through ``proxy`` (None: directly)."""
    kubeconfig = fake.write_kubeconfig(tmp_path / f"kubeconfig-{uuid.uuid4().hex[:6]}")
    if proxy is not None:
        kubeconfig.write_text(kubeconfig.read_text().replace(fake.url, proxy.url))
    settings = KubernetesSettings(
        kind="kubernetes", kubeconfig=str(kubeconfig), retries={**FAST, **retries}, lease_seconds=lease_seconds
    )
    context = BackendContext(root=tmp_path, cache_dir=tmp_path / "cache", reporter=Reporter())  # says on stderr
    return KubernetesOrchestrator(settings, context)


def test_transient_faults_on_reads_are_retried(
    shipway_fake_k8s: FakeApiServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    orch = orchestrator(shipway_fake_k8s, proxy, tmp_path)
    proxy.fail(503, times=3)
    assert orch.status("faulty").state == "absent"
    assert proxy.count("fail") == 3
    proxy.fail(429, times=1, retry_after=1)
    started = time.monotonic()
    assert orch.request("GET", SERVICES)["kind"] == "ServiceList"
    assert time.monotonic() - started >= 1  # Retry-After honoured
    proxy.reset(after_bytes=150)  # inside the answer's head or body: the read broke
    assert orch.request("GET", SERVICES)["kind"] == "ServiceList"
    assert proxy.count("reset") == 1
    assert proxy.count("forwarded", method="GET") == 3


def test_writes_are_not_sent_twice(shipway_fake_k8s: FakeApiServer, proxy: FaultProxy, tmp_path: Path) -> None:
    orch = orchestrator(shipway_fake_k8s, proxy, tmp_path)
    proxy.fail(503, times=None, method="POST")
    with pytest.raises(BackendError, match="503"), orch.lock("faulty"):
        pass
    assert proxy.count("fail", method="POST") == 1


def test_the_apps_answers_through_the_service_proxy_are_not_retried(
    shipway_fake_k8s: FakeApiServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    """A 503 of the app itself (not ready yet) reaches the caller at once: verify and load counts see it as it is."""
    orch = orchestrator(shipway_fake_k8s, proxy, tmp_path)
    forward = ServiceProxy(orch.client, "/api/v1/namespaces/default/services/faulty:80/proxy").start()
    try:
        proxy.fail(503, times=None, path="/proxy/")
        assert requests.get(f"{forward.url}/healthz", timeout=10).status_code == 503
        assert proxy.count("fail") == 1
    finally:
        forward.stop()


def test_persistent_503_gives_one_clear_error_in_bounded_time(
    shipway_fake_k8s: FakeApiServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    orch = orchestrator(shipway_fake_k8s, proxy, tmp_path)
    proxy.fail(503, times=None)
    started = time.monotonic()
    with pytest.raises(BackendError) as caught:
        orch.status("faulty")
    assert time.monotonic() - started < 3
    assert str(caught.value).startswith(f"the Kubernetes API at {proxy.url} answered 503 to GET /apis/apps/v1/")
    assert "(4 tries" in str(caught.value)
    assert caught.value.exit_code == ExitCode.BACKEND
    assert proxy.count("fail") == 4


def test_a_stall_ends_in_a_timeout(shipway_fake_k8s: FakeApiServer, proxy: FaultProxy, tmp_path: Path) -> None:
    orch = orchestrator(shipway_fake_k8s, proxy, tmp_path, attempts=2, read_timeout=1)
    orch.request("GET", SERVICES)  # the client is built; then every request stalls
    proxy.stall()
    started = time.monotonic()
    with pytest.raises(BackendError, match=f"cannot reach the Kubernetes API at {proxy.url}"):
        orch.status("faulty")
    elapsed = time.monotonic() - started
    print(f"kubernetes stall: gave up after {elapsed:.1f}s")
    assert elapsed < 4  # two tries of a 1 s read timeout, one short wait
    assert proxy.count("stall") == 2


def test_a_release_that_cannot_renew_its_lease_stops_writing_before_it_expires(
    shipway_fake_k8s: FakeApiServer, proxy: FaultProxy, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Renewals the API server never answers do not outlast the Lease (the client's retries would take
    minutes here): the holder stops writing before it expires, the next release takes it over once it
    has, and the first one's clean-up leaves the new holder's Lease alone."""
    leases = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
    app = f"renew-{uuid.uuid4().hex[:6]}"
    first = orchestrator(
        shipway_fake_k8s, proxy, tmp_path, lease_seconds=3, attempts=5, read_timeout=30, max_seconds=120
    )
    second = orchestrator(shipway_fake_k8s, None, tmp_path, lease_seconds=3)
    with contextlib.ExitStack() as first_holds:
        first_holds.enter_context(first.lock(app))
        proxy.stall(path=leases)  # every renewal from now on hangs
        started = time.monotonic()
        while "ran out: not renewed within lease_seconds" not in capfd.readouterr().err:
            assert time.monotonic() - started < 6, "the holder did not stop when its Lease ran out"
            time.sleep(0.1)
        assert time.monotonic() - started < 2.8  # a margin before the 3 s Lease expires
        write = {"body": {"metadata": {"name": app}}, "content_type": "application/json"}
        with pytest.raises(LockedError, match=f"Lease shipway-{app} ran out.*stopped before POST"):
            first.request("POST", SERVICES, **write)
        assert first.request("GET", SERVICES)["kind"] == "ServiceList"  # reads go on
        while True:  # the API server answers the other runner: it takes the Lease over once it expired
            try:
                second_holds = second.lock(app)
                second_holds.__enter__()
                break
            except LockedError:
                assert time.monotonic() - started < 8, "the expired Lease was not taken over"
                time.sleep(0.2)
        try:
            proxy.clear()
            first_holds.close()  # the first release ends: it must not delete the Lease the second holds
            held = shipway_fake_k8s.objects[("leases", "default", f"shipway-{app}")]
            assert second._lease is not None
            assert held["spec"]["holderIdentity"] == second._lease.holder
        finally:
            second_holds.__exit__(None, None, None)
    assert proxy.count("stall", path=leases) >= 1
    assert ("services", "default", app) not in shipway_fake_k8s.objects
    with first.lock(app):  # the next release through the same orchestrator holds a Lease of its own
        first.request("POST", SERVICES, **write)
    assert ("services", "default", app) in shipway_fake_k8s.objects


def test_a_lease_is_deleted_only_as_the_version_its_holder_saw(shipway_fake_k8s: FakeApiServer, tmp_path: Path) -> None:
    """The DELETE that ends a lock carries a resourceVersion precondition, which the API server honours."""
    orch = orchestrator(shipway_fake_k8s, None, tmp_path)
    leases = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "pre"}, "spec": {}}
    created = orch.request("POST", leases, body=lease, content_type="application/json")
    version = created["metadata"]["resourceVersion"]
    stale = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"resourceVersion": version + "0"}}
    with pytest.raises(BackendError, match="Precondition failed: ResourceVersion"):
        orch.request("DELETE", f"{leases}/pre", body=stale, content_type="application/json")
    assert ("leases", "default", "pre") in shipway_fake_k8s.objects
    current = {**stale, "preconditions": {"resourceVersion": version}}
    orch.request("DELETE", f"{leases}/pre", body=current, content_type="application/json")
    assert ("leases", "default", "pre") not in shipway_fake_k8s.objects
