"""The model layer sent to the registry while the store downloads the model (:mod:`shipway.model_stream`).

Against the kit's real registry (htpasswd auth) and a real local store whose
downloads arrive in pieces; no Docker engine is needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from shipway import dockerfile as df
from shipway import inputs
from shipway.arrival import Abandoned, follow
from shipway.backends.base import BackendContext
from shipway.backends.local_store import LocalModelStore, LocalStoreSettings
from shipway.backends.oci_registry import OciRegistry, OciRegistrySettings
from shipway.domain import ModelFile, ModelVersion
from shipway.errors import IntegrityError
from shipway.layers import layer_key, model_layer
from shipway.manifest import MANIFEST_V2
from shipway.model_stream import ModelStream
from shipway.testing.services import RegistryService

PIECE = 256 << 10
INTO = "weights"
TARGET = "/srv/app/weights"  # WORKDIR /srv/app (absolute: no base image needed to predict it)


# -- follow --------------------------------------------------------------------------------------


def _write_slowly(path: Path, data: bytes, pause: float = 0.005) -> None:
    with path.open("ab") as f:
        for start in range(0, len(data), PIECE):
            f.write(data[start : start + PIECE])
            f.flush()
            time.sleep(pause)


def test_follow_reads_a_file_as_it_grows_and_after_its_rename(tmp_path: Path) -> None:
    final, partial = tmp_path / "blob", tmp_path / "blob.partial"
    data = os.urandom(3_000_000)
    fetched, stop = threading.Event(), threading.Event()

    def download() -> None:
        time.sleep(0.05)  # the reader starts before the partial file exists
        _write_slowly(partial, data)
        os.replace(partial, final)
        fetched.set()

    writer = threading.Thread(target=download)
    writer.start()
    chunks = list(follow(final, partial, len(data), fetched, stop))
    writer.join()
    assert b"".join(chunks) == data
    assert len(chunks) > 3  # read while the file grew, not once it was complete


def test_follow_reads_a_cached_file_at_once(tmp_path: Path) -> None:
    final = tmp_path / "blob"
    final.write_bytes(b"x" * 5000)
    assert b"".join(follow(final, tmp_path / "none", 5000, threading.Event(), threading.Event())) == b"x" * 5000


def test_follow_gives_up_when_the_download_starts_over(tmp_path: Path) -> None:
    final, partial = tmp_path / "blob", tmp_path / "blob.partial"
    fetched, stop, reading = threading.Event(), threading.Event(), threading.Event()
    partial.write_bytes(b"a" * 1000)

    def start_over() -> None:
        reading.wait(10)
        partial.unlink()  # the cache drops a partial that did not verify, and downloads it whole once more
        _write_slowly(partial, b"b" * 2000)
        fetched.set()

    writer = threading.Thread(target=start_over)
    writer.start()

    def read_all() -> None:
        for _ in follow(final, partial, 2000, fetched, stop):
            reading.set()

    with pytest.raises(Abandoned, match="started over"):
        read_all()
    writer.join()


def test_follow_gives_up_when_the_fetch_ended_short(tmp_path: Path) -> None:
    partial = tmp_path / "blob.partial"
    partial.write_bytes(b"a" * 1000)
    fetched = threading.Event()
    fetched.set()
    with pytest.raises(Abandoned, match="1000 of 2000"):
        list(follow(tmp_path / "blob", partial, 2000, fetched, threading.Event()))


def test_follow_stops_when_asked(tmp_path: Path) -> None:
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    with pytest.raises(Abandoned, match="no longer wanted"):
        list(follow(tmp_path / "blob", tmp_path / "blob.partial", 10, threading.Event(), stop))


# -- the stream against a real registry ------------------------------------------------------------


class WatchedRegistry(OciRegistry):
    """The ``oci`` registry, noting how many bytes of a stream it has taken so far."""

    streamed = 0
    took_a_megabyte: threading.Event

    def stream_blob(self, chunks: Iterable[bytes], size: int) -> str:
        def watched() -> Iterator[bytes]:
            for chunk in chunks:
                yield chunk
                self.streamed += len(chunk)
                if self.streamed >= 1 << 20:
                    self.took_a_megabyte.set()

        return super().stream_blob(watched(), size)


class SlowStore(LocalModelStore):
    """The local store, its downloads arriving in pieces. Half-way through the big file it waits (at most
    10 s) until the registry has taken a megabyte of the stream, and notes whether it did. ``corrupt``: the
    big file's first bytes are wrong, and the download ends once the stream has read all of it."""

    registry: WatchedRegistry
    overlapped: bool | None = None
    watch = True
    corrupt = False

    def _download(self, version: ModelVersion, file: ModelFile, dest: Path) -> None:
        src = self._model_dir(version.name) / "versions" / version.version / "files" / file.path
        data = src.read_bytes()
        big = file.size > 1 << 21
        if self.corrupt and big:
            data = bytes(b ^ 1 for b in data[:64]) + data[64:]
        half = len(data) // 2
        _write_slowly(dest, data[:half])
        if self.watch and big:
            self.overlapped = self.registry.took_a_megabyte.wait(10)
        _write_slowly(dest, data[half:])
        deadline = time.monotonic() + 10
        while self.corrupt and big and self.registry.streamed < file.size and time.monotonic() < deadline:
            time.sleep(0.01)


@pytest.fixture
def registry(shipway_registry: RegistryService, tmp_path: Path) -> WatchedRegistry:
    settings = OciRegistrySettings(
        kind="oci",
        address=shipway_registry.address,
        repository=f"stream/{uuid.uuid4().hex[:8]}",
        username=shipway_registry.username,
        password=shipway_registry.password,
    )
    reg = WatchedRegistry(settings, BackendContext(cache_dir=tmp_path / "registry-cache"))
    reg.took_a_megabyte = threading.Event()
    return reg


@pytest.fixture
def store(tmp_path: Path, registry: WatchedRegistry) -> SlowStore:
    settings = LocalStoreSettings(kind="local", path=str(tmp_path / "store"))
    found = SlowStore(settings, BackendContext(cache_dir=tmp_path / "cache"))
    found.registry = registry
    return found


def _publish(store: SlowStore, tmp_path: Path) -> ModelVersion:
    folder = tmp_path / f"model-{uuid.uuid4().hex[:6]}"
    (folder / "nested").mkdir(parents=True)
    (folder / "nested" / "big.bin").write_bytes(os.urandom(5_000_000))
    (folder / "labels.txt").write_text("cat\ndog\n")
    return store.publish(folder, "m")


def _stream(registry: WatchedRegistry, store: SlowStore, model: ModelVersion) -> tuple[ModelStream, Exception | None]:
    """Start the stream, fetch the model as ``shipway run`` does, wait for the stream."""
    stages = df.parse("FROM scratch\nWORKDIR /srv/app\nCOPY . .\n", {})
    fetched, built = threading.Event(), threading.Event()
    stream = ModelStream(registry, model, stages, None, INTO, store.context.cache_dir, fetched, built)
    error: Exception | None = None
    try:
        store.verified_blobs(model)
    except IntegrityError as exc:
        error = exc
    finally:
        fetched.set()
    stream.wait()
    return stream, error


def _index(cache: Path, model: ModelVersion) -> Path:
    return cache / "model-layers" / f"{layer_key(model, TARGET)}.json"


def test_the_layer_goes_up_while_the_model_downloads(
    registry: WatchedRegistry, store: SlowStore, tmp_path: Path
) -> None:
    model = _publish(store, tmp_path)
    stream, error = _stream(registry, store, model)
    assert error is None
    assert stream.error == ""
    assert stream.skipped == ""
    assert store.overlapped is True  # the registry took bytes of the big file before its download ended
    # What went up is the model layer shipway writes from the verified files (computed afresh here).
    files = store.verified_blobs(model)
    expected = model_layer(model, files, TARGET, tmp_path / "fresh-cache")
    assert stream.digest == expected.digest
    assert stream.sent == expected.size
    assert registry.api.has_blob(registry.settings.repository, expected.digest)
    assert registry.bytes_uploaded >= expected.size
    # Every file matched its manifest: the layer's digest is known here without reading the model again.
    assert json.loads(_index(store.context.cache_dir, model).read_text())["digest"] == expected.digest
    assert stream.describe().endswith("while the model downloaded")


def test_a_registry_with_the_model_tag_gets_no_byte(
    registry: WatchedRegistry, store: SlowStore, tmp_path: Path
) -> None:
    model = _publish(store, tmp_path)
    _put_manifest(registry, inputs.model_tag(layer_key(model, TARGET)))
    store.watch = False
    before = registry.bytes_uploaded
    stream, error = _stream(registry, store, model)
    assert error is None
    assert stream.sent == 0
    assert stream.digest is None
    assert "holds this model layer" in stream.skipped
    assert registry.bytes_uploaded == before
    assert stream.describe() == ""


def test_bytes_that_do_not_match_the_manifest_are_never_indexed(
    registry: WatchedRegistry, store: SlowStore, tmp_path: Path
) -> None:
    model = _publish(store, tmp_path)
    store.corrupt, store.watch = True, False
    stream, error = _stream(registry, store, model)
    assert isinstance(error, IntegrityError)
    # The stream took every byte the store wrote (the wrong ones too) before the fetch refused them.
    assert stream.error == ""
    assert stream.digest is not None
    assert "did not match the manifest (nested/big.bin)" in stream.describe()
    assert not _index(store.context.cache_dir, model).exists()
    # Nothing names what went up, and it is not the true layer (from the stored bytes).
    store.corrupt = False
    files = store.verified_blobs(model)
    true_layer = model_layer(model, files, TARGET, tmp_path / "fresh-cache")
    assert stream.digest != true_layer.digest
    assert not registry.api.has_blob(registry.settings.repository, true_layer.digest)


def test_a_layer_another_repository_holds_is_left_to_the_push_to_mount(
    registry: WatchedRegistry, store: SlowStore, tmp_path: Path
) -> None:
    model = _publish(store, tmp_path)
    other = f"stream/{uuid.uuid4().hex[:8]}"
    _put_manifest(registry, inputs.model_tag(layer_key(model, TARGET)), repo=other)
    store.watch = False
    assert not registry.has_model_layer(inputs.model_tag(layer_key(model, TARGET)))
    registry.settings.mount_from = [other]
    stream, error = _stream(registry, store, model)
    assert error is None
    assert stream.sent == 0
    assert "holds this model layer" in stream.skipped


def test_a_stream_at_the_wrong_folder_stops(registry: WatchedRegistry, store: SlowStore, tmp_path: Path) -> None:
    model = _publish(store, tmp_path)
    stages = df.parse("FROM scratch\nWORKDIR /srv/app\n", {})
    fetched = threading.Event()  # the download has not begun: the stream waits for the first file
    stream = ModelStream(registry, model, stages, None, INTO, store.context.cache_dir, fetched, threading.Event())
    try:
        stream.keep_if(TARGET)  # the folder it writes at: it goes on
        assert not stream.wait(0.3)
        stream.keep_if("/srv/app/elsewhere")  # the built image put the model elsewhere
        assert stream.wait(5)
        assert stream.error == ""
        assert stream.sent == 0
        assert registry.streamed < 10_000  # tar headers at most: no byte of the model
    finally:
        fetched.set()
        stream.cancel()


def _put_manifest(registry: OciRegistry, tag: str, repo: str | None = None) -> None:
    """A real image manifest (an empty config, no layers) under ``tag`` (in ``repo``, default the registry's)."""
    repo = repo or registry.settings.repository
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    registry.api.upload_blob(repo, digest, len(config), lambda: [config])
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_V2,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": len(config),
            "digest": digest,
        },
        "layers": [],
    }
    registry.api.put_manifest(repo, tag, json.dumps(manifest).encode(), MANIFEST_V2)
