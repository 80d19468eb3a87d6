"""The azure_blob store through the kit's fault proxy, in front of Azurite.

The storage SDK's retry policy, configured from the store's ``retries`` block,
retries a burst of 503 (honouring Retry-After) and a reset connection; its
downloader reads a body cut short again. Persistent faults give one error naming
the store and its endpoint, exit code 7, in bounded time; a stall ends in a timeout.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shipway.backends.base import BackendContext
from shipway.domain import ModelRef
from shipway.errors import BackendError, ExitCode
from shipway.testing.contracts import write_model
from shipway.testing.faults import FaultProxy
from shipway_azure.blob_store import AzureBlobSettings, AzureBlobStore
from shipway_azure.testing import DEV_ACCOUNT, DEV_KEY, AzuriteService

FAST = {"attempts": 4, "max_seconds": 20, "backoff": 0.05, "max_backoff": 0.2}
WEIGHTS = bytes(range(256)) * 8192  # 2 MiB


@pytest.fixture
def proxy(azurite: AzuriteService, shipway_fault_proxy: Callable[..., FaultProxy]) -> FaultProxy:
    return shipway_fault_proxy(f"127.0.0.1:{azurite.port}")


def make(azurite: AzuriteService, proxy: FaultProxy, tmp_path: Path, **retries: Any) -> AzureBlobStore:
    from azure.storage.blob import BlobServiceClient

    container = f"faults-{uuid.uuid4().hex[:10]}"
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container(container)
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint={proxy.url}/{DEV_ACCOUNT};"
    )
    settings = AzureBlobSettings(
        kind="azure_blob", connection_string=connection, container=container, retries={**FAST, **retries}
    )
    return AzureBlobStore(settings, BackendContext(cache_dir=tmp_path / "cache"))


def test_transient_faults_are_retried_and_publish_and_fetch_succeed(
    azurite: AzuriteService, proxy: FaultProxy, tmp_path: Path
) -> None:
    store = make(azurite, proxy, tmp_path)
    proxy.fail(503, times=2, method="PUT")
    published = store.publish(write_model(tmp_path / "src", {"weights.bin": WEIGHTS}), "m")
    assert proxy.count("fail", method="PUT") == 2
    proxy.fail(503, times=1, method="GET", retry_after=1)
    proxy.reset(after_bytes=500_000, method="GET", path="/blobs/")
    started = time.monotonic()
    version = store.resolve(ModelRef(name="m"))
    fetched = store.fetch(version, tmp_path / "out")
    assert time.monotonic() - started >= 1  # Retry-After honoured
    assert version.digest == published.digest
    assert (fetched / "weights.bin").read_bytes() == WEIGHTS
    assert proxy.count("fail", method="GET") == 1
    assert proxy.count("reset", path="/blobs/") == 1
    assert proxy.count("forwarded", method="GET", path="/blobs/") >= 1  # the rest was read again


def test_persistent_503_gives_one_clear_error_in_bounded_time(
    azurite: AzuriteService, proxy: FaultProxy, tmp_path: Path
) -> None:
    store = make(azurite, proxy, tmp_path)
    proxy.fail(503, times=None)
    started = time.monotonic()
    with pytest.raises(BackendError) as caught:
        store.versions("m")
    assert time.monotonic() - started < 5
    endpoint = f"{proxy.url}/{DEV_ACCOUNT}/{store.settings.container}"
    assert str(caught.value).startswith(f"{store.describe()}: list m/versions/: {endpoint} answered 503 (4 tries")
    assert caught.value.exit_code == ExitCode.BACKEND
    assert proxy.count("fail") == 4


def test_a_stall_ends_in_a_timeout(azurite: AzuriteService, proxy: FaultProxy, tmp_path: Path) -> None:
    store = make(azurite, proxy, tmp_path, attempts=2, read_timeout=1)
    proxy.stall()
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"no complete answer from .*ServiceResponseTimeoutError, 2 tries"):
        store.versions("m")
    assert time.monotonic() - started < 4
    assert proxy.count("stall") == 2
