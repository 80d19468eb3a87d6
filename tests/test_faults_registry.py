"""The oci registry client through the kit's fault proxy, in front of a real docker-registry with auth.

Transient faults are retried and the operation succeeds (the proxy counts the
retries); persistent ones give one error naming the registry and the endpoint,
exit code 7, within a bounded time; a stall ends in a timeout, not a hang.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shipway.backends.base import BackendContext
from shipway.backends.oci_registry import OciRegistry, OciRegistrySettings
from shipway.errors import BackendError, ExitCode, NotFound
from shipway.retry import GaveUp
from shipway.testing.contracts import unique
from shipway.testing.faults import FaultProxy
from shipway.testing.services import RegistryService, free_port

LAYER = bytes(range(256)) * 4096  # 1 MiB
FAST = {"attempts": 4, "max_seconds": 20, "backoff": 0.05, "max_backoff": 0.2}


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def backend(address: str, reg: RegistryService, tmp_path: Path, repository: str, **retries: Any) -> OciRegistry:
    settings = OciRegistrySettings(
        kind="oci",
        address=address,
        repository=repository,
        username=reg.username,
        password=reg.password,
        retries={**FAST, **retries},
    )
    return OciRegistry(settings, BackendContext(cache_dir=tmp_path / "cache"))


@pytest.fixture
def repo() -> str:
    return unique("faults")


@pytest.fixture
def proxy(shipway_registry: RegistryService, shipway_fault_proxy: Callable[..., FaultProxy]) -> FaultProxy:
    return shipway_fault_proxy(shipway_registry.address)


@pytest.fixture
def through(proxy: FaultProxy, shipway_registry: RegistryService, tmp_path: Path, repo: str) -> OciRegistry:
    """The backend, talking to the registry through the proxy."""
    return backend(proxy.address, shipway_registry, tmp_path, repo)


@pytest.fixture
def pushed(shipway_registry: RegistryService, tmp_path: Path, repo: str) -> str:
    """An image (one layer, a config) pushed directly under tag ``v1``; returns its manifest digest."""
    direct = backend(shipway_registry.address, shipway_registry, tmp_path, repo).api
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"k": "v"}}}).encode()
    for blob in (LAYER, config):
        direct.upload_blob(repo, digest_of(blob), len(blob), lambda b=blob: [b])  # type: ignore[misc]
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest_of(LAYER),
                    "size": len(LAYER)}],
    }  # fmt: skip
    body = json.dumps(manifest).encode()
    return direct.put_manifest(repo, "v1", body, manifest["mediaType"])


def test_a_burst_of_503_is_retried_and_the_read_succeeds(through: OciRegistry, proxy: FaultProxy, pushed: str) -> None:
    proxy.fail(503, times=3)
    assert through.resolve("v1").digest == pushed
    assert proxy.count("fail") == 3
    assert proxy.count("forwarded", method="HEAD") == 1


def test_a_429_with_retry_after_is_honoured(through: OciRegistry, proxy: FaultProxy, pushed: str) -> None:
    proxy.fail(429, times=1, retry_after=2)
    started = time.monotonic()
    assert through.labels(through.resolve("v1")) == {"k": "v"}
    assert time.monotonic() - started >= 2  # waited as asked, not the 50 ms backoff
    assert proxy.count("fail") == 1


def test_a_reset_mid_download_is_retried(through: OciRegistry, proxy: FaultProxy, repo: str, pushed: str) -> None:
    proxy.reset(after_bytes=200_000, path="/blobs/")
    assert through.api.blob(repo, digest_of(LAYER)) == LAYER
    assert proxy.count("reset", method="GET") == 1
    assert proxy.count("forwarded", method="GET", path="/blobs/") == 1


def test_a_reset_mid_upload_restarts_the_upload_session(
    through: OciRegistry, proxy: FaultProxy, shipway_registry: RegistryService, tmp_path: Path, repo: str
) -> None:
    data = LAYER + b"upload"
    proxy.reset(after_bytes=300_000, direction="request", method="PUT")
    through.api.upload_blob(
        repo, digest_of(data), len(data), lambda: [data[i : i + 65536] for i in range(0, len(data), 65536)]
    )
    assert proxy.count("reset", method="PUT") == 1
    assert proxy.count(method="POST", path="/blobs/uploads/") == 2  # a new session, not the half-written one
    direct = backend(shipway_registry.address, shipway_registry, tmp_path, repo).api
    assert direct.blob(repo, digest_of(data)) == data


def test_a_503_on_the_upload_put_restarts_the_session(through: OciRegistry, proxy: FaultProxy, repo: str) -> None:
    data = b"small blob"
    proxy.fail(503, times=2, method="PUT")
    through.api.upload_blob(repo, digest_of(data), len(data), lambda: [data])
    assert proxy.count("fail", method="PUT") == 2
    assert proxy.count(method="POST") == 3
    assert through.api.has_blob(repo, digest_of(data))


def test_persistent_503_gives_one_clear_error_in_bounded_time(through: OciRegistry, proxy: FaultProxy) -> None:
    proxy.fail(503, times=None)
    started = time.monotonic()
    with pytest.raises(GaveUp) as caught:
        through.login()
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert message.startswith(f"registry {proxy.address}: GET http://{proxy.address}/v2/: answered 503")
    assert "4 tries" in message
    assert "retries.attempts" in message
    assert caught.value.exit_code == ExitCode.BACKEND
    assert proxy.count("fail") == 4
    assert elapsed < 2  # 3 waits of at most 0.05, 0.1, 0.2 s


def test_max_seconds_bounds_the_tries(proxy: FaultProxy, shipway_registry: RegistryService, tmp_path: Path) -> None:
    slow = backend(
        proxy.address, shipway_registry, tmp_path, "x", attempts=20, max_seconds=2, backoff=0.5, max_backoff=1
    )
    proxy.fail(503, times=None)
    started = time.monotonic()
    with pytest.raises(GaveUp):
        slow.login()
    assert time.monotonic() - started < 2.5
    assert 2 <= proxy.count("fail") < 20


def test_errors_that_are_not_transient_are_not_retried(through: OciRegistry, proxy: FaultProxy) -> None:
    proxy.fail(500, times=None)
    with pytest.raises(BackendError, match="answered 500"):
        through.login()
    assert proxy.count("fail") == 1
    proxy.clear()
    with pytest.raises(NotFound):
        through.resolve("no-such-tag")
    assert proxy.count("forwarded", method="HEAD") == 1


def test_a_post_is_not_resent_after_a_503(through: OciRegistry, proxy: FaultProxy, repo: str) -> None:
    """Starting an upload session alone (as `shipway doctor` does) is a POST: not repeated after a 503."""
    proxy.fail(503, times=None, method="POST")
    assert through.api.request("POST", f"/v2/{repo}/blobs/uploads/").status_code == 503  # the caller judges it
    assert proxy.count("fail", method="POST") == 1


def test_a_stall_ends_in_a_timeout_not_a_hang(
    proxy: FaultProxy, shipway_registry: RegistryService, tmp_path: Path
) -> None:
    stalled = backend(proxy.address, shipway_registry, tmp_path, "x", attempts=2, read_timeout=1, max_seconds=5)
    proxy.stall()
    started = time.monotonic()
    with pytest.raises(GaveUp, match=r"no answer in time \(read timeout\) \(2 tries"):
        stalled.login()
    assert time.monotonic() - started < 3.5
    assert proxy.count("stall") == 2


def test_a_dead_endpoint_fails_with_exit_7_in_bounded_time(tmp_path: Path, shipway_registry: RegistryService) -> None:
    """Defaults: 5 tries; measured in docs/reliability.md ("time to give up on a dead endpoint")."""
    address = f"127.0.0.1:{free_port()}"
    settings = OciRegistrySettings(kind="oci", address=address, repository="x", username="u", password="p")
    started = time.monotonic()
    with pytest.raises(GaveUp, match=f"cannot reach registry {address}: GET http://{address}/v2/: connection refused"):
        OciRegistry(settings, BackendContext(cache_dir=tmp_path)).login()
    elapsed = time.monotonic() - started
    print(f"dead endpoint: gave up after {elapsed:.2f}s")
    assert elapsed < 0.5 + 1 + 2 + 4 + 1  # the default waits are capped at 0.5, 1, 2, 4 s


def test_a_streamed_upload_cut_off_is_one_clear_error_and_its_session_is_dropped(
    through: OciRegistry, proxy: FaultProxy, repo: str
) -> None:
    data = LAYER + b"streamed"
    proxy.reset(after_bytes=300_000, direction="request", method="PATCH")
    with pytest.raises(BackendError, match="streamed upload"):
        through.stream_blob((data[i : i + 65536] for i in range(0, len(data), 65536)), len(data))
    assert proxy.count("reset", method="PATCH") == 1
    assert proxy.count(method="DELETE", path="/blobs/uploads/") == 1  # the half-written session, abandoned
    assert not through.api.has_blob(repo, digest_of(data))


def test_the_closing_put_of_a_streamed_upload_is_retried(through: OciRegistry, proxy: FaultProxy, repo: str) -> None:
    data = LAYER + b"streamed put"
    proxy.fail(503, times=2, method="PUT")
    assert through.stream_blob(iter([data]), len(data)) == digest_of(data)
    assert proxy.count("fail", method="PUT") == 2
    assert proxy.count(method="PATCH") == 1  # the bytes went once
    assert through.api.has_blob(repo, digest_of(data))
