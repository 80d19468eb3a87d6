"""The model layer loaded into the real engine ahead of the final image, and what a killed run leaves."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import docker.errors
import pytest
from engine_images import preloads_topped_by

from shipway import dockerfile, dockerutil, image
from shipway.backends.blobcache import BlobCache
from shipway.domain import ModelFile, ModelVersion
from shipway.early_layer import BASE_POLL_SECONDS, EarlyLayer
from shipway.errors import BuildFailed
from shipway.layers import ModelLayer, known_layer, model_layer, model_target
from shipway.manifest import sha256

BASE_IMAGE = os.environ.get("SHIPWAY_BASE_IMAGE", "shipway-base:bookworm")

pytestmark = pytest.mark.usefixtures("shipway_docker")


def _model(tmp_path: Path) -> ModelVersion:
    data = os.urandom(200_000)  # a layer no other test's image holds
    (tmp_path / "weights.bin").write_bytes(data)
    return ModelVersion(
        name="m",
        version="1",
        created=datetime(2026, 1, 1, tzinfo=UTC),
        files=(ModelFile(path="weights.bin", size=len(data), sha256=hashlib.sha256(data).hexdigest()),),
    )


def _layer(tmp_path: Path) -> ModelLayer:
    return model_layer(_model(tmp_path), tmp_path, "/srv/model", tmp_path / "cache")


def _platform() -> dict[str, str]:
    found = image.base_platform(BASE_IMAGE)
    assert found is not None
    return found


def test_preload_puts_the_model_on_the_base_chain_once(tmp_path: Path) -> None:
    base = image.base_layers(BASE_IMAGE)
    assert base
    layer = _layer(tmp_path)
    cache = tmp_path / "cache"
    first = image.preload(base, layer, threading.Event(), platform=_platform(), cache_dir=cache)
    try:
        assert first is not None
        loaded = dockerutil.client().images.get(first)
        assert loaded.attrs["RootFS"]["Layers"] == [*base, layer.digest]
        assert loaded.tags == []  # untagged: removed by ID when the final image holds the chain
        assert loaded.labels[image.PRELOAD_LABEL] == f"{socket.gethostname()}-{os.getpid()}"
        # The engine holds the chain now: a second preload sends nothing.
        assert image.preload(base, layer, threading.Event(), platform=_platform(), cache_dir=cache) is None
    finally:
        image.drop(first or "")
    # Gone from the engine: the next preload loads it again.
    again = image.preload(base, layer, threading.Event(), platform=_platform(), cache_dir=cache)
    try:
        assert again == first
    finally:
        image.drop(again or "")


def test_a_stopped_preload_loads_nothing(tmp_path: Path) -> None:
    base = image.base_layers(BASE_IMAGE)
    assert base is not None
    layer = _layer(tmp_path)
    stop = threading.Event()
    stop.set()
    with pytest.raises(BuildFailed, match="no longer wanted"):
        image.preload(base, layer, stop, platform=_platform(), cache_dir=tmp_path / "cache")
    assert preloads_topped_by(layer.digest) == []


def _labelled(owner: str, tmp_path: Path) -> str:
    """An image labelled as the preload of ``owner`` (host-pid), loaded into the engine."""
    base = image.base_layers(BASE_IMAGE)
    assert base is not None
    config = json.dumps(
        {
            **_platform(),
            "config": {"Labels": {image.PRELOAD_LABEL: owner}},
            "rootfs": {"type": "layers", "diff_ids": base},
        }
    ).encode()
    image.docker_load(config, base, [], [])
    return sha256(config)


def test_the_next_run_removes_a_killed_runs_preload_and_keeps_a_live_ones(tmp_path: Path) -> None:
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = _labelled(f"{socket.gethostname()}-{int(ended.stdout)}", tmp_path)
    live_process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    live = _labelled(f"{socket.gethostname()}-{live_process.pid}", tmp_path)
    try:
        image.remove_abandoned_preloads(image.engine_images())
        ids = set(dockerutil.client().api.images(all=True, quiet=True))
        assert dead not in ids
        assert live in ids
    finally:
        live_process.kill()
        live_process.wait()
        image.drop(dead)
        image.drop(live)


# -- the early layer, on a runner whose build pulls the base -------------------------------------


@pytest.fixture
def hidden_base() -> Iterator[tuple[str, str]]:
    """(reference, image ID) of a base the engine holds only under another name (WORKDIR /opt/fresh)."""
    hidden = f"shipway-test-hidden:{uuid.uuid4().hex[:10]}"
    client = dockerutil.client()
    built, _ = client.images.build(
        fileobj=io.BytesIO(f"FROM {BASE_IMAGE}\nWORKDIR /opt/fresh\nRUN echo {hidden} > base\n".encode()),
        tag=hidden,
        rm=True,
    )
    reference = f"shipway-test-pulled:{uuid.uuid4().hex[:10]}"
    yield reference, str(built.id)
    for name in (reference, hidden):
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(name)


@contextlib.contextmanager
def _early(tmp_path: Path, dockerfile_text: str, base: str, built: threading.Event) -> Iterator[EarlyLayer]:
    """An EarlyLayer on a model the store's cache holds already, cancelled at the end; after 30 s a watchdog
    cancels it, so a wait that never ends fails the test (its ``target()`` gives None, ``preloaded()`` False)
    instead of hanging it."""
    model = _model(tmp_path)
    cache = BlobCache(tmp_path / "cache")
    cache.dir.mkdir(parents=True)
    for f in model.files:
        shutil.copyfile(tmp_path / f.path, cache.path(f.sha256))
    fetched = threading.Event()
    fetched.set()
    early = EarlyLayer(
        stages=dockerfile.parse(dockerfile_text, {}),
        base=base,
        into="model",
        model=model,
        cache_dir=tmp_path / "cache",
        fetched=fetched,
        built=built,
    )
    watchdog = threading.Timer(30, early.cancel)
    watchdog.start()
    try:
        yield early
    finally:
        watchdog.cancel()
        early.cancel()


def _appear(reference: str, image_id: str) -> None:
    """What the build's pull does: the engine now holds ``reference``."""
    repo, _, tag = reference.rpartition(":")
    dockerutil.client().images.get(image_id).tag(repo, tag)


def _assert_preloaded_on(reference: str, digest: str | None, early: EarlyLayer) -> None:
    assert digest is not None
    base = image.base_layers(reference)
    assert base is not None
    assert early.base_count == len(base)
    tops = preloads_topped_by(digest)
    assert len(tops) == 1
    assert tops[0]["RootFS"]["Layers"] == [*base, digest]
    assert tops[0]["Config"]["Labels"][image.PRELOAD_LABEL].endswith(f"-{os.getpid()}")


def test_the_early_layer_waits_for_a_base_the_build_is_pulling(tmp_path: Path, hidden_base: tuple[str, str]) -> None:
    reference, base_id = hidden_base
    # No WORKDIR of its own: the model's folder depends on the base's, which the engine does not hold yet.
    with _early(tmp_path, f"FROM {reference}\nCOPY . .\n", reference, threading.Event()) as early:
        time.sleep(3 * BASE_POLL_SECONDS)
        assert early.base_wait_seconds > 0  # still waiting for the base, not given up
        _appear(reference, base_id)
        assert early.target() == model_target("/opt/fresh", "model") == "/opt/fresh/model"
        digest = early.result()
        assert early.preloaded()
        _assert_preloaded_on(reference, digest, early)
    assert preloads_topped_by(digest or "") == []


def test_the_preload_waits_for_the_base_after_the_digest(tmp_path: Path, hidden_base: tuple[str, str]) -> None:
    reference, base_id = hidden_base
    # The Dockerfile fixes the folder: the digest is taken at once; only the preload needs the base.
    with _early(tmp_path, f"FROM {reference}\nWORKDIR /srv/app\n", reference, threading.Event()) as early:
        assert early.target() == "/srv/app/model"
        digest = early.result()
        time.sleep(3 * BASE_POLL_SECONDS)
        assert early.base_wait_seconds > 0
        assert preloads_topped_by(digest or "") == []  # nothing loaded while the base is missing
        _appear(reference, base_id)
        assert early.preloaded()
        _assert_preloaded_on(reference, digest, early)
        assert early.preload_seconds > 0
    assert preloads_topped_by(digest or "") == []


def test_the_early_layer_gives_up_when_the_build_ends_without_the_base(tmp_path: Path) -> None:
    absent = f"shipway-test-absent:{uuid.uuid4().hex[:10]}"
    built = threading.Event()
    with _early(tmp_path, f"FROM {absent}\nCOPY . .\n", absent, built) as early:
        time.sleep(2 * BASE_POLL_SECONDS)
        assert early.base_wait_seconds > 0
        built.set()
        started = time.monotonic()
        assert early.target() is None
        assert time.monotonic() - started < 5 * BASE_POLL_SECONDS
        assert not early.preloaded()


def test_a_workdir_made_of_variables_is_not_predicted(tmp_path: Path) -> None:
    text = f"FROM {BASE_IMAGE}\nENV HOME_DIR=/srv\nWORKDIR $HOME_DIR\n"
    with _early(tmp_path, text, BASE_IMAGE, threading.Event()) as early:
        assert early.target() is None
        assert not early.preloaded()


def test_a_base_the_engine_holds_is_preloaded_at_once(tmp_path: Path) -> None:
    with _early(tmp_path, f"FROM {BASE_IMAGE}\nWORKDIR /srv/app\n", BASE_IMAGE, threading.Event()) as early:
        assert early.target() == "/srv/app/model"
        digest = early.result()
        assert early.preloaded()
        assert early.base_wait_seconds == 0
        _assert_preloaded_on(BASE_IMAGE, digest, early)
    assert preloads_topped_by(digest or "") == []


def _arriving_model(tmp_path: Path, data: bytes) -> ModelVersion:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "weights.bin").write_bytes(data)
    return ModelVersion(
        name="m",
        version="1",
        created=datetime(2026, 1, 1, tzinfo=UTC),
        files=(ModelFile(path="weights.bin", size=len(data), sha256=hashlib.sha256(data).hexdigest()),),
    )


def _early_at_srv_app(model: ModelVersion, cache: BlobCache, fetched: threading.Event) -> EarlyLayer:
    """An EarlyLayer on the test base with ``WORKDIR /srv/app``, reading ``model`` as it arrives in ``cache``."""
    return EarlyLayer(
        stages=dockerfile.parse(f"FROM {BASE_IMAGE}\nWORKDIR /srv/app\n", {}),
        base=BASE_IMAGE,
        into="model",
        model=model,
        cache_dir=cache.dir.parents[1],
        fetched=fetched,
        built=threading.Event(),
    )


def _engine_took(monkeypatch: pytest.MonkeyPatch, at_least: int) -> threading.Event:
    """Set once the engine has taken ``at_least`` bytes of a docker load archive."""
    took = threading.Event()
    load = image._load_archive

    def counted(archive: Iterable[bytes], what: str) -> None:
        def chunks() -> Iterator[bytes]:
            sent = 0
            for chunk in archive:
                yield chunk
                sent += len(chunk)
                if sent >= at_least:
                    took.set()

        load(chunks(), what)

    monkeypatch.setattr(image, "_load_archive", counted)
    return took


def _download(partial: Path, data: bytes, half_done: Callable[[], bool], fetched: threading.Event) -> threading.Thread:
    """What a store's download does in the cache: the partial file grows; half-way it asks ``half_done``."""

    def run() -> None:
        half = len(data) // 2
        with partial.open("wb") as f:
            f.write(data[:half])
            f.flush()
            half_done()
            f.write(data[half:])
        fetched.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_the_engine_takes_the_model_layer_while_it_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(4_000_000)
    model = _arriving_model(tmp_path, data)
    cache = BlobCache(tmp_path / "cache")
    cache.dir.mkdir(parents=True)
    took = _engine_took(monkeypatch, 1 << 20)
    fetched, overlapped = threading.Event(), []
    early = _early_at_srv_app(model, cache, fetched)
    partial = cache.partial_path(model.files[0].sha256)
    try:
        writer = _download(partial, data, lambda: overlapped.append(took.wait(10)), fetched)
        digest = early.result()
        writer.join()
        assert overlapped == [True]  # the engine had a megabyte of the layer before the download ended
        expected = model_layer(model, tmp_path / "src", "/srv/app/model", tmp_path / "fresh-cache").digest
        assert digest == expected
        assert known_layer(model, "/srv/app/model", cache.dir.parents[1]) == expected  # the build reads no byte
        assert early.preloaded()
        _assert_preloaded_on(BASE_IMAGE, digest, early)
    finally:
        early.cancel()
    assert preloads_topped_by(expected) == []


def test_bytes_that_do_not_match_are_neither_indexed_nor_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(3_000_000)
    model = _arriving_model(tmp_path, data)
    wrong = bytes(b ^ 1 for b in data[:64]) + data[64:]
    (tmp_path / "wrong").mkdir()
    (tmp_path / "wrong" / "weights.bin").write_bytes(wrong)
    wrong_digest = model_layer(model, tmp_path / "wrong", "/srv/app/model", tmp_path / "other-cache").digest
    cache = BlobCache(tmp_path / "cache")
    cache.dir.mkdir(parents=True)
    took = _engine_took(monkeypatch, len(data))
    fetched = threading.Event()
    early = _early_at_srv_app(model, cache, fetched)
    try:
        # The whole wrong file arrives (and is read) before the cache's check refuses it.
        writer = _download(cache.partial_path(model.files[0].sha256), wrong, lambda: True, fetched)
        assert early.result() is None
        writer.join()
        assert took.wait(10)
        assert not early.preloaded()
        assert "did not match the manifest" in early.preload_error
        assert known_layer(model, "/srv/app/model", cache.dir.parents[1]) is None
        assert preloads_topped_by(wrong_digest) == []
    finally:
        early.cancel()
