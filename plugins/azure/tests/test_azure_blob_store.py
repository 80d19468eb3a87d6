"""The azure_blob store against Azurite: the writable store contract, plus Azure specifics."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from shipway.backends.base import BackendContext
from shipway.domain import ModelFile, ModelRef, ModelVersion
from shipway.errors import AuthError, ModelError
from shipway.testing.contracts import WritableModelStoreContract, unique, write_model
from shipway_azure import AzureBlobSettings, AzureBlobStore
from shipway_azure.testing import DEV_KEY, AzuriteService

MiB = 1024 * 1024


def make_store(azurite: AzuriteService, cache: Path, container: str | None = None, **options) -> AzureBlobStore:
    container = container or f"models-{uuid.uuid4().hex[:10]}"
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container(container)
    settings = AzureBlobSettings(
        kind="azure_blob", connection_string=azurite.connection_string, container=container, **options
    )
    return AzureBlobStore(settings, BackendContext(cache_dir=cache))


class TestAzureBlobStore(WritableModelStoreContract):
    @pytest.fixture
    def store(self, azurite: AzuriteService, azure_cache: Path) -> AzureBlobStore:
        return make_store(azurite, azure_cache, prefix="team-a")

    def corrupt(self, store: AzureBlobStore, version: ModelVersion, file: ModelFile) -> None:  # type: ignore[override]
        blob = store.container.get_blob_client(f"team-a/{version.name}/blobs/sha256/{file.sha256}")
        data = bytearray(blob.download_blob().readall())
        data[7] ^= 0xFF
        blob.upload_blob(bytes(data), overwrite=True)

    def write_manifest(self, store: AzureBlobStore, name: str, version: str, manifest: dict[str, Any]) -> None:  # type: ignore[override]
        blob = store.container.get_blob_client(f"team-a/{name}/versions/{version}/manifest.json")
        blob.upload_blob(json.dumps(manifest).encode(), overwrite=True)

    def break_publish(  # type: ignore[override]
        self, store: AzureBlobStore, monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]
    ) -> None:
        upload = store._upload_blob

        def upload_then_act(name: str, src: Path, f: ModelFile, progress: Any) -> None:
            upload(name, src, f, progress)
            action()  # one content blob is in the container

        monkeypatch.setattr(store, "_upload_blob", upload_then_act)


@pytest.fixture
def store(azurite: AzuriteService, azure_cache: Path) -> AzureBlobStore:
    return make_store(azurite, azure_cache)


def test_large_files_upload_as_parallel_blocks(azurite: AzuriteService, tmp_path: Path) -> None:
    store = make_store(azurite, tmp_path / "cache", single_put_size=MiB, block_size=MiB, max_concurrency=4)
    src = write_model(tmp_path / "src", {"weights.bin": os.urandom(5 * MiB + 123)})
    version = store.publish(src, "big")
    blob = store.container.get_blob_client(f"big/blobs/sha256/{version.files[0].sha256}")
    committed, _ = blob.get_block_list("committed")
    assert len(committed) == 6
    out = store.fetch(version, tmp_path / "out")
    assert (out / "weights.bin").read_bytes() == (src / "weights.bin").read_bytes()


def test_unchanged_files_are_not_uploaded_again(
    store: AzureBlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.storage.blob import BlobClient

    src = write_model(tmp_path / "src", {"weights.bin": os.urandom(MiB), "config.json": b"{}"})
    first = store.publish(src, "m")
    weights = store.container.get_blob_client(f"m/blobs/sha256/{first.files[1].sha256}")
    before = weights.get_blob_properties().last_modified
    sent: list[str] = []
    original = BlobClient.upload_blob

    def spy(self: BlobClient, *args: Any, **kwargs: Any) -> Any:
        sent.append(self.blob_name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(BlobClient, "upload_blob", spy)
    (src / "config.json").write_bytes(b'{"v": 2}')
    second = store.publish(src, "m")
    assert second.version == "2"
    config = next(f for f in second.files if f.path == "config.json")
    # only the changed file and the new manifest were sent: no request at all for the unchanged weights
    assert sorted(sent) == sorted([f"m/blobs/sha256/{config.sha256}", "m/versions/2/manifest.json"])
    assert weights.get_blob_properties().last_modified == before
    assert len(list(store.container.list_blobs(name_starts_with="m/blobs/"))) == 3


def test_concurrent_auto_numbered_publishes_get_distinct_versions(store: AzureBlobStore, tmp_path: Path) -> None:
    src = write_model(tmp_path / "src", {"w.bin": b"x" * 1000})
    versions: list[str] = []
    threads = [threading.Thread(target=lambda: versions.append(store.publish(src, "auto").version)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions, key=int) == ["1", "2", "3", "4", "5"]


def test_concurrent_alias_updates_are_not_lost(store: AzureBlobStore, tmp_path: Path) -> None:
    src = write_model(tmp_path / "src", {"w.bin": b"x"})
    store.publish(src, "al")
    threads = [threading.Thread(target=store.set_alias, args=("al", f"a{i}", "1")) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.aliases("al") == {f"a{i}": "1" for i in range(6)}


def test_a_version_is_invisible_until_its_manifest_is_written(store: AzureBlobStore, tmp_path: Path) -> None:
    src = write_model(tmp_path / "src", {"w.bin": b"v1"})
    store.publish(src, "vis")
    # A publish in progress: its files are uploaded, its manifest is not yet.
    store.container.get_blob_client("vis/blobs/sha256/" + "0" * 64).upload_blob(b"partial")
    store.container.get_blob_client("vis/versions/2/partial-marker").upload_blob(b"")
    assert [v.version for v in store.versions("vis")] == ["1"]
    assert store.resolve(ModelRef(name="vis")).version == "1"


def test_interrupted_download_resumes_from_the_partial_file(
    store: AzureBlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(3 * MiB)
    version = store.publish(write_model(tmp_path / "src", {"w.bin": data}), "resume")
    blobs = tmp_path / "cache" / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (blobs / f"{version.files[0].sha256}.partial").write_bytes(data[: 2 * MiB])  # an interrupted fetch
    offsets: list[object] = []
    original = store.container.get_blob_client

    def spying(name: str):  # type: ignore[no-untyped-def]
        client = original(name)
        download = client.download_blob

        def recorded(*args, **kwargs):  # type: ignore[no-untyped-def]
            offsets.append(kwargs.get("offset"))
            return download(*args, **kwargs)

        client.download_blob = recorded  # type: ignore[method-assign]
        return client

    monkeypatch.setattr(store.container, "get_blob_client", spying)
    out = store.fetch(version, tmp_path / "out")
    assert offsets == [2 * MiB]
    assert (out / "w.bin").read_bytes() == data


def test_a_corrupted_partial_file_is_not_trusted(
    store: AzureBlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed download that does not verify is thrown away and fetched whole, once."""
    data = os.urandom(MiB)
    version = store.publish(write_model(tmp_path / "src", {"w.bin": data}), "badpartial")
    blobs = tmp_path / "cache" / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    partial = blobs / f"{version.files[0].sha256}.partial"
    partial.write_bytes(b"\x00" * 1000)  # not a prefix of the real bytes
    starts: list[int] = []
    original = store._download

    def spy(v: ModelVersion, f: ModelFile, dest: Path) -> None:
        starts.append(dest.stat().st_size)
        original(v, f, dest)

    monkeypatch.setattr(store, "_download", spy)
    assert (store.fetch(version, tmp_path / "out") / "w.bin").read_bytes() == data
    assert starts == [1000, 0]  # resumed after the bad bytes, failed verification, then downloaded whole
    assert not partial.exists()


def test_account_key_credential(azurite: AzuriteService, tmp_path: Path) -> None:
    container = f"models-{uuid.uuid4().hex[:10]}"
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container(container)
    good = AzureBlobSettings(
        kind="azure_blob", account_url=azurite.blob_endpoint, account_key=DEV_KEY, container=container
    )
    store = AzureBlobStore(good, BackendContext(cache_dir=tmp_path))
    assert store.publish(write_model(tmp_path / "src", {"w.bin": b"k"}), "keyed").version == "1"
    wrong_key = "A" * 86 + "=="
    bad = AzureBlobSettings(
        kind="azure_blob", account_url=azurite.blob_endpoint, account_key=wrong_key, container=container
    )
    with pytest.raises(AuthError) as err:
        AzureBlobStore(bad, BackendContext(cache_dir=tmp_path)).versions("keyed")
    assert "model_store.account_key" in str(err.value)
    assert wrong_key not in str(err.value)


def test_missing_container_is_a_clear_error(azurite: AzuriteService, tmp_path: Path) -> None:
    settings = AzureBlobSettings(
        kind="azure_blob", connection_string=azurite.connection_string, container="nope-missing"
    )
    store = AzureBlobStore(settings, BackendContext(cache_dir=tmp_path))
    with pytest.raises(ModelError, match="container 'nope-missing' does not exist"):
        store.publish(write_model(tmp_path / "src", {"w.bin": b"x"}), unique("m"))


def test_settings_need_a_location() -> None:
    with pytest.raises(ValueError, match="give account_url, or connection_string"):
        AzureBlobSettings(kind="azure_blob", container="models")


def test_a_truncated_content_blob_is_replaced_on_publish(store: AzureBlobStore, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    src = write_model(tmp_path / "src", {"w.bin": data})
    first = store.publish(src, "heal")
    blob = store.container.get_blob_client(f"heal/blobs/sha256/{first.files[0].sha256}")
    blob.upload_blob(data[:1000], overwrite=True)  # an interrupted upload left a short blob
    store.publish(src, "heal")  # the same content again: the short blob is replaced, not trusted
    assert blob.get_blob_properties().size == len(data)
    assert (store.fetch(first, tmp_path / "out") / "w.bin").read_bytes() == data
