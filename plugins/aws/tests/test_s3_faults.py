"""The s3 store through the kit's fault proxy, in front of moto's S3 server.

botocore retries the requests (its standard mode, with the attempts and
timeouts of the store's ``retries`` block); shipway re-reads a JSON body that
breaks mid-way, and boto3's transfer manager a file that does. The proxy
counts the retries; persistent faults give one error naming the store and its
endpoint, exit code 7, in bounded time; a stall ends in a timeout.
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
from shipway_aws import S3Settings, S3Store
from shipway_aws.testing import MotoService

FAST = {"attempts": 4, "max_seconds": 20, "backoff": 0.05, "max_backoff": 0.2}
WEIGHTS = bytes(range(256)) * 8192  # 2 MiB


@pytest.fixture
def proxy(shipway_aws_env: MotoService, shipway_fault_proxy: Callable[..., FaultProxy]) -> FaultProxy:
    return shipway_fault_proxy(shipway_aws_env.url)


def make(moto: MotoService, proxy: FaultProxy, tmp_path: Path, bucket: str | None = None, **retries: Any) -> S3Store:
    if bucket is None:
        bucket = f"faults-{uuid.uuid4().hex[:10]}"
        moto.client("s3").create_bucket(Bucket=bucket)
    settings = S3Settings(kind="s3", bucket=bucket, endpoint_url=proxy.url, retries={**FAST, **retries})
    return S3Store(settings, BackendContext(cache_dir=tmp_path / "cache"))


def test_transient_faults_are_retried_and_publish_and_fetch_succeed(
    shipway_aws_env: MotoService, proxy: FaultProxy, tmp_path: Path
) -> None:
    store = make(shipway_aws_env, proxy, tmp_path)
    proxy.fail(503, times=2, method="PUT")
    published = store.publish(write_model(tmp_path / "src", {"weights.bin": WEIGHTS}), "m")
    assert proxy.count("fail", method="PUT") == 2
    proxy.fail(503, times=2, method="GET")
    proxy.reset(after_bytes=500_000, method="GET", path="/blobs/")
    version = store.resolve(ModelRef(name="m"))
    assert version.digest == published.digest
    fetched = store.fetch(version, tmp_path / "out")
    assert (fetched / "weights.bin").read_bytes() == WEIGHTS
    assert proxy.count("fail", method="GET") == 2
    assert proxy.count("reset", path="/blobs/") == 1
    assert proxy.count("forwarded", method="GET", path="/blobs/") >= 1  # fetched again after the reset


def test_a_manifest_body_cut_short_is_read_again(
    shipway_aws_env: MotoService, proxy: FaultProxy, tmp_path: Path
) -> None:
    store = make(shipway_aws_env, proxy, tmp_path)
    store.publish(write_model(tmp_path / "src", {"w.bin": b"x" * 100}), "m", metadata={"pad": "p" * 20_000})
    proxy.reset(after_bytes=5_000, method="GET", path="/manifest.json")  # past the head, inside the body
    assert [v.version for v in store.versions("m")] == ["1"]
    assert proxy.count("reset") == 1
    assert proxy.count("forwarded", method="GET", path="/manifest.json") == 1


def test_a_resumed_download_cut_short_resumes_again(
    shipway_aws_env: MotoService, proxy: FaultProxy, tmp_path: Path
) -> None:
    store = make(shipway_aws_env, proxy, tmp_path)
    version = store.publish(write_model(tmp_path / "src", {"weights.bin": WEIGHTS}), "m")
    partial = tmp_path / "partial"
    partial.write_bytes(WEIGHTS[:100_000])  # an earlier fetch was interrupted here
    proxy.reset(after_bytes=300_000, method="GET", path="/blobs/")
    store._download(version, version.files[0], partial)  # as fetch calls it, with the partial file
    assert partial.read_bytes() == WEIGHTS
    assert proxy.count("reset", path="/blobs/") == 1
    assert proxy.count("forwarded", method="GET", path="/blobs/") == 1  # one more ranged GET, after the bytes written


def test_persistent_503_gives_one_clear_error_in_bounded_time(
    shipway_aws_env: MotoService, proxy: FaultProxy, tmp_path: Path
) -> None:
    store = make(shipway_aws_env, proxy, tmp_path)
    proxy.fail(503, times=None)
    started = time.monotonic()
    with pytest.raises(BackendError) as caught:
        store.versions("m")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert message.startswith(f"s3 store s3://{store.settings.bucket}/: list m/versions/: {proxy.url} answered 503")
    assert "(4 tries" in message
    assert caught.value.exit_code == ExitCode.BACKEND
    assert proxy.count("fail") == 4


def test_a_stall_ends_in_a_timeout(shipway_aws_env: MotoService, proxy: FaultProxy, tmp_path: Path) -> None:
    store = make(shipway_aws_env, proxy, tmp_path, attempts=2, read_timeout=1)
    proxy.stall()
    started = time.monotonic()
    with pytest.raises(BackendError, match=f"cannot reach s3 store .*ReadTimeoutError \\({proxy.url}"):
        store.versions("m")
    assert time.monotonic() - started < 4
    assert proxy.count("stall") == 2
