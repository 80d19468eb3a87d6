"""The s3 store against moto's server: the writable store contract, plus S3 specifics."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shipway.backends.base import BackendContext
from shipway.domain import ModelFile, ModelRef, ModelVersion
from shipway.errors import AuthError, BackendError, ExitCode, ModelError
from shipway.testing.contracts import WritableModelStoreContract, unique, write_model
from shipway.testing.services import free_port
from shipway_aws import S3Settings, S3Store
from shipway_aws.testing import MotoService, S3ErrorServer

MiB = 1024 * 1024


def make_store(moto: MotoService, cache: Path, bucket: str | None = None, create: bool = True, **options) -> S3Store:
    bucket = bucket or f"models-{uuid.uuid4().hex[:10]}"
    if create:
        moto.client("s3").create_bucket(Bucket=bucket)
    return S3Store(S3Settings(kind="s3", bucket=bucket, **options), BackendContext(cache_dir=cache))


class TestS3Store(WritableModelStoreContract):
    @pytest.fixture
    def store(self, shipway_aws_env: MotoService, tmp_path: Path) -> S3Store:
        return make_store(shipway_aws_env, tmp_path / "cache", prefix="team-a")

    def corrupt(self, store: S3Store, version: ModelVersion, file: ModelFile) -> None:  # type: ignore[override]
        key = f"team-a/{version.name}/blobs/sha256/{file.sha256}"
        data = bytearray(store.client.get_object(Bucket=store.settings.bucket, Key=key)["Body"].read())
        data[7] ^= 0xFF
        store.client.put_object(Bucket=store.settings.bucket, Key=key, Body=bytes(data))

    def break_publish(  # type: ignore[override]
        self, store: S3Store, monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]
    ) -> None:
        upload = store._upload_blob

        def upload_then_act(name: str, src: Path, f: ModelFile, progress: Any) -> None:
            upload(name, src, f, progress)
            action()  # one content object is in the bucket, the manifest is not

        monkeypatch.setattr(store, "_upload_blob", upload_then_act)

    def write_manifest(self, store: S3Store, name: str, version: str, manifest: dict[str, Any]) -> None:  # type: ignore[override]
        key = f"team-a/{name}/versions/{version}/manifest.json"
        store.client.put_object(Bucket=store.settings.bucket, Key=key, Body=json.dumps(manifest).encode())


@pytest.fixture
def store(shipway_aws_env: MotoService, tmp_path: Path) -> S3Store:
    return make_store(shipway_aws_env, tmp_path / "cache")


def get_object_ranges(store: S3Store) -> list[str | None]:
    """Record the Range of every GetObject the store's client sends from now on."""
    ranges: list[str | None] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        ranges.append(params.get("Range"))

    store.client.meta.events.register("provide-client-params.s3.GetObject", record)
    return ranges


def test_large_files_move_as_parallel_parts(shipway_aws_env: MotoService, tmp_path: Path) -> None:
    store = make_store(shipway_aws_env, tmp_path / "cache", multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    src = write_model(tmp_path / "src", {"weights.bin": os.urandom(12 * MiB + 123)})
    version = store.publish(src, "big")
    key = f"big/blobs/sha256/{version.files[0].sha256}"
    head = store.client.head_object(Bucket=store.settings.bucket, Key=key)
    assert head["ETag"].strip('"').endswith("-3")  # a three-part multipart upload
    assert head["Metadata"] == {"sha256": version.files[0].sha256}
    ranges = get_object_ranges(store)
    out = store.fetch(version, tmp_path / "out")
    assert (out / "weights.bin").read_bytes() == (src / "weights.bin").read_bytes()
    assert len([r for r in ranges if r]) == 3  # three ranged GETs, in parallel


def test_unchanged_files_are_not_uploaded_again(store: S3Store, tmp_path: Path) -> None:
    src = write_model(tmp_path / "src", {"weights.bin": os.urandom(MiB), "config.json": b"{}"})
    first = store.publish(src, "m")
    weights = next(f for f in first.files if f.path == "weights.bin")
    key = f"m/blobs/sha256/{weights.sha256}"
    bucket = store.settings.bucket
    before = store.client.head_object(Bucket=bucket, Key=key)["LastModified"]
    puts: list[str] = []
    store.client.meta.events.register(
        "provide-client-params.s3.PutObject", lambda params, **_: puts.append(params["Key"])
    )
    (src / "config.json").write_bytes(b'{"v": 2}')
    second = store.publish(src, "m")
    assert second.version == "2"
    assert store.client.head_object(Bucket=bucket, Key=key)["LastModified"] == before
    assert key not in puts
    listed = store.client.list_objects_v2(Bucket=bucket, Prefix="m/blobs/")
    assert listed["KeyCount"] == 3


def test_the_manifest_write_is_conditional(store: S3Store, tmp_path: Path) -> None:
    """Two publishers that both passed the existence check: S3's If-None-Match decides, once."""
    src = write_model(tmp_path / "src", {"w.bin": b"one"})
    store.publish(src, "cond", version="1")
    store._exists = lambda name, version: False  # type: ignore[method-assign]  # as if we checked before it landed
    with pytest.raises(ModelError, match="already exists"):
        store.publish(write_model(tmp_path / "other", {"w.bin": b"two"}), "cond", version="1")
    fetched = store.fetch(store.resolve(ModelRef(name="cond", select="1")), tmp_path / "out")
    assert (fetched / "w.bin").read_bytes() == b"one"


def test_concurrent_auto_numbered_publishes_get_distinct_versions(store: S3Store, tmp_path: Path) -> None:
    src = write_model(tmp_path / "src", {"w.bin": b"x" * 1000})
    versions: list[str] = []
    threads = [threading.Thread(target=lambda: versions.append(store.publish(src, "auto").version)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions, key=int) == ["1", "2", "3", "4", "5"]


def test_concurrent_alias_updates_are_not_lost(store: S3Store, tmp_path: Path) -> None:
    store.publish(write_model(tmp_path / "src", {"w.bin": b"x"}), "al")
    threads = [threading.Thread(target=store.set_alias, args=("al", f"a{i}", "1")) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.aliases("al") == {f"a{i}": "1" for i in range(6)}


def test_a_version_is_invisible_until_its_manifest_is_written(store: S3Store, tmp_path: Path) -> None:
    store.publish(write_model(tmp_path / "src", {"w.bin": b"v1"}), "vis")
    bucket = store.settings.bucket
    # A publish in progress: its files are uploaded, its manifest is not yet.
    store.client.put_object(Bucket=bucket, Key="vis/blobs/sha256/" + "0" * 64, Body=b"partial")
    store.client.put_object(Bucket=bucket, Key="vis/versions/2/partial-marker", Body=b"")
    assert [v.version for v in store.versions("vis")] == ["1"]
    assert store.resolve(ModelRef(name="vis")).version == "1"


def test_interrupted_download_resumes_with_a_ranged_get(store: S3Store, tmp_path: Path) -> None:
    data = os.urandom(3 * MiB)
    version = store.publish(write_model(tmp_path / "src", {"w.bin": data}), "resume")
    blobs = tmp_path / "cache" / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (blobs / f"{version.files[0].sha256}.partial").write_bytes(data[: 2 * MiB])  # an interrupted fetch
    ranges = get_object_ranges(store)
    out = store.fetch(version, tmp_path / "out")
    assert ranges == [f"bytes={2 * MiB}-"]
    assert (out / "w.bin").read_bytes() == data


def test_a_truncated_content_object_is_replaced_on_publish(store: S3Store, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    src = write_model(tmp_path / "src", {"w.bin": data})
    first = store.publish(src, "heal")
    key = f"heal/blobs/sha256/{first.files[0].sha256}"
    store.client.put_object(Bucket=store.settings.bucket, Key=key, Body=data[:1000])  # an interrupted copy
    store.publish(src, "heal")
    assert store.client.head_object(Bucket=store.settings.bucket, Key=key)["ContentLength"] == len(data)
    assert (store.fetch(first, tmp_path / "out") / "w.bin").read_bytes() == data


def test_a_file_missing_from_the_bucket_is_a_model_error(store: S3Store, tmp_path: Path) -> None:
    version = store.publish(write_model(tmp_path / "src", {"w.bin": b"gone"}), "lost")
    store.client.delete_object(Bucket=store.settings.bucket, Key=f"lost/blobs/sha256/{version.files[0].sha256}")
    with pytest.raises(ModelError, match=r"file w\.bin is missing") as err:
        store.fetch(version, tmp_path / "out")
    assert err.value.exit_code == ExitCode.MODEL


def test_missing_bucket_is_one_clear_backend_error(shipway_aws_env: MotoService, tmp_path: Path) -> None:
    store = make_store(shipway_aws_env, tmp_path, bucket="no-such-bucket-here", create=False)
    with pytest.raises(BackendError, match="bucket 'no-such-bucket-here' does not exist") as err:
        store.versions("m")
    assert err.value.exit_code == ExitCode.BACKEND
    with pytest.raises(BackendError, match="does not exist"):
        store.publish(write_model(tmp_path / "src", {"w.bin": b"x"}), unique("m"))


def test_unreachable_endpoint_is_one_clear_backend_error(shipway_aws_env: MotoService, tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    store = make_store(shipway_aws_env, tmp_path, create=False, endpoint_url=endpoint)
    store.client.meta.config.retries = {"max_attempts": 1}
    with pytest.raises(BackendError, match=f"cannot reach s3 store s3://{store.settings.bucket}/") as err:
        store.versions("m")
    assert "EndpointConnectionError" in str(err.value)
    assert not isinstance(err.value, AuthError)


def test_wrong_region_names_the_bucket_region(shipway_aws_env: MotoService, tmp_path: Path) -> None:
    server = S3ErrorServer(301, "PermanentRedirect", {"x-amz-bucket-region": "eu-west-1"})
    try:
        store = make_store(shipway_aws_env, tmp_path, bucket="models", create=False, region="us-east-1",
                           endpoint_url=server.url)  # fmt: skip
        with pytest.raises(BackendError) as err:
            store.versions("m")
    finally:
        server.stop()
    assert str(err.value).endswith(
        "bucket 'models' is not in region us-east-1 (it is in eu-west-1): set model_store.region"
    )
    assert err.value.exit_code == ExitCode.BACKEND


def test_access_denied_names_the_permissions_needed(shipway_aws_env: MotoService, tmp_path: Path) -> None:
    server = S3ErrorServer(403, "AccessDenied")
    try:
        store = make_store(shipway_aws_env, tmp_path, bucket="models", create=False, endpoint_url=server.url)
        with pytest.raises(AuthError, match=r"access denied \(AccessDenied\): the role needs s3:ListBucket") as read:
            store.versions("m")
        with pytest.raises(AuthError, match="s3:PutObject"):
            store.publish(write_model(tmp_path / "src", {"w.bin": b"x"}), "m")
    finally:
        server.stop()
    assert read.value.exit_code == ExitCode.BACKEND
    assert shipway_aws_env.secret_key not in str(read.value)


def test_no_credentials_names_the_chain(
    shipway_aws_env: MotoService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(shipway_aws_env, tmp_path)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    fresh = S3Store(store.settings, BackendContext(cache_dir=tmp_path))
    with pytest.raises(AuthError, match="no AWS credentials found: set AWS_ACCESS_KEY_ID"):
        fresh.versions("m")


def test_keys_in_the_file_are_refused() -> None:
    with pytest.raises(ValueError, match="aws_secret_access_key: AWS credentials never go in the file"):
        S3Settings(kind="s3", bucket="models", aws_secret_access_key="abc")  # type: ignore[call-arg]


def test_a_manifest_write_retried_after_it_landed_is_not_a_second_version(
    store: S3Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore retries a PUT whose answer was lost; the retry of a create-only write gets 412 for our own write."""
    write = store._write_json

    def applied_then_refused(key: str, body: bytes, etag: str | None) -> bool:
        write(key, body, etag)
        return False

    monkeypatch.setattr(store, "_write_json", applied_then_refused)
    published = store.publish(write_model(tmp_path / "src", {"w.bin": b"once"}), "retried")
    monkeypatch.undo()
    assert published.version == "1"
    assert [v.version for v in store.versions("retried")] == ["1"]
    assert store.resolve(ModelRef(name="retried", select="latest")) == published
