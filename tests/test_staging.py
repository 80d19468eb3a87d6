"""The staging registry: the engine exports only layers it never sent, and nothing unverified is kept."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker.errors
import pytest
import requests

from shipway import dockerutil, image, journal, staging
from shipway.manifest import LAYER_TAR, LAYER_TAR_GZIP, Blob
from shipway.testing.services import ensure_tiny_image


def _layers(image_id: str) -> list[str]:
    return list(dockerutil.client().images.get(image_id).attrs["RootFS"]["Layers"])


def _bytes(blob: Blob) -> bytes:
    assert blob.opener is not None
    return b"".join(blob.opener())


def test_export_sends_each_layer_once_and_gives_each_layer_uncompressed(
    shipway_tiny_image: Callable[..., str], tmp_path: Path
) -> None:
    root = tmp_path / "staging"
    base = len(_layers(ensure_tiny_image()))
    first_id = shipway_tiny_image()
    first = staging.export(first_id, root, "Tiny App")
    assert first.diff_ids == _layers(first_id)
    assert hashlib.sha256(first.config).hexdigest() == first_id.split(":", 1)[1]
    assert first.received == sum(b.size for b in first.layers) + len(first.config)
    for i, blob in enumerate(first.layers):
        assert blob.media_type == LAYER_TAR_GZIP
        assert hashlib.sha256(_bytes(blob)).hexdigest() == blob.digest.split(":", 1)[1]
        # Uncompressed, a layer is its diff ID: what the registry gets for base layers, and what shipway
        # compresses itself for the others (the same blob as after a docker save).
        raw = first.raw(i)
        assert (raw.digest, raw.media_type) == (first.diff_ids[i], LAYER_TAR)
        data = _bytes(raw)
        assert (len(data), "sha256:" + hashlib.sha256(data).hexdigest()) == (raw.size, raw.digest)
        assert b"".join(first.raw_chunks(i)) == data

    again = staging.export(first_id, root, "Tiny App")
    assert again.received == 0
    assert [b.digest for b in again.layers] == [b.digest for b in first.layers]

    # Another image on the same base: only its own new layers leave the engine.
    other_id = shipway_tiny_image(files={"extra": "x" * 50_000})
    other = staging.export(other_id, root, "Tiny App")
    assert other.diff_ids[:base] == first.diff_ids[:base]
    new = [b for b in other.layers if b.digest not in {x.digest for x in first.layers}]
    assert new
    assert other.received == sum(b.size for b in new) + len(other.config)
    assert other.received < first.received


def test_a_push_tag_that_a_killed_run_left_goes_with_the_next_run(shipway_docker: None) -> None:
    """A run removes its push tag however the push ends, unless it is killed: then the next run on this
    host does, and only tags of this host's runs that have ended (the tag would keep the image for ever)."""
    ended = subprocess.Popen(["true"])
    ended.wait()
    host, repository = journal.tag_host(), f"127.0.0.1:1/shipway-staging/tiny-{uuid.uuid4().hex[:6]}"
    abandoned = f"{repository}:build-{host}-{ended.pid}-0123abcd"
    kept = [f"{repository}:build-{host}-{os.getpid()}-4567abcd", f"{repository}:build-elsewhere-{ended.pid}-89abcdef"]
    client = dockerutil.client()
    for name in [abandoned, *kept]:
        client.api.tag(ensure_tiny_image(), *name.rsplit(":", 1))
    try:
        removed = staging.remove_abandoned_push_tags(image.engine_images())
        assert abandoned in removed  # (another killed run's tag on this engine may go too)
        assert not set(kept) & set(removed)
        tags = client.images.get(ensure_tiny_image()).tags
        assert abandoned not in tags
        assert set(kept) <= set(tags)
    finally:
        for name in [abandoned, *kept]:
            with contextlib.suppress(docker.errors.DockerException):
                client.api.remove_image(name, noprune=True)


def test_a_push_tag_names_its_host_and_process_whatever_the_host_is_called(monkeypatch: pytest.MonkeyPatch) -> None:
    for host in ("vm", "ci-runner-12", "node-123-456", "h" * 80):
        monkeypatch.setattr(journal, "tag_host", lambda host=host: host)
        tag = staging._push_tag()
        found = staging._PUSH_TAG.match(tag)
        assert found is not None, tag
        assert (found["host"], int(found["pid"])) == (host, os.getpid())
        assert len(f"127.0.0.1:29999/shipway-staging/app:{tag}".rpartition(":")[2]) <= 128  # Docker's tag limit


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[staging.StagingRegistry]:
    reg = staging.StagingRegistry(tmp_path / "staging")
    yield reg
    reg.stop()


def _upload(url: str, body: bytes, digest: str) -> requests.Response:
    started = requests.post(f"{url}/v2/app/blobs/uploads/", timeout=10)
    assert started.status_code == 202
    location = url + started.headers["Location"]
    # A chunked PATCH, as the engine sends it (a generator body has no length).
    patched = requests.patch(location, data=iter([body[:3], body[3:]]), timeout=10)
    assert patched.status_code == 202
    assert patched.headers["Range"] == f"0-{len(body) - 1}"
    return requests.put(location, params={"digest": digest}, timeout=10)


def test_a_blob_is_kept_only_under_the_digest_of_its_bytes(registry: staging.StagingRegistry) -> None:
    url = f"http://{registry.address}"
    body = b"layer bytes"
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    wrong = "sha256:" + hashlib.sha256(b"other").hexdigest()

    refused = _upload(url, body, wrong)
    assert refused.status_code == 400
    assert requests.head(f"{url}/v2/app/blobs/{wrong}", timeout=10).status_code == 404
    assert list(registry.blobs.iterdir()) == []

    kept = _upload(url, body, digest)
    assert kept.status_code == 201
    assert kept.headers["Docker-Content-Digest"] == digest
    head = requests.head(f"{url}/v2/other-repo/blobs/{digest}", timeout=10)
    assert (head.status_code, head.headers["Content-Length"]) == (200, str(len(body)))
    assert registry.received == len(body)

    # A mount names a blob by digest: granted only when the blob is here.
    mounted = requests.post(f"{url}/v2/x/blobs/uploads/", params={"mount": digest, "from": "app"}, timeout=10)
    assert (mounted.status_code, mounted.headers["Docker-Content-Digest"]) == (201, digest)
    unknown = requests.post(f"{url}/v2/x/blobs/uploads/", params={"mount": wrong, "from": "app"}, timeout=10)
    assert unknown.status_code == 202


def test_a_manifest_is_found_only_by_the_digest_of_its_bytes(registry: staging.StagingRegistry) -> None:
    """export() takes the manifest by the digest the engine's push reports: another local process that
    PUTs a manifest naming that digest (or the push's tag) cannot put its own layers in its place."""
    url = f"http://{registry.address}/v2/shipway-staging/app/manifests"
    engine = json.dumps({"schemaVersion": 2, "layers": [{"digest": "sha256:" + "1" * 64}]}).encode()
    digest = "sha256:" + hashlib.sha256(engine).hexdigest()
    pushed = requests.put(f"{url}/build-0123456789abcdef", data=engine, timeout=10)
    assert (pushed.status_code, pushed.headers["Docker-Content-Digest"]) == (201, digest)
    rogue = json.dumps({"schemaVersion": 2, "layers": [{"digest": "sha256:" + "6" * 64}]}).encode()
    for ref in (digest, "build-0123456789abcdef"):
        answer = requests.put(f"{url}/{ref}", data=rogue, timeout=10)
        assert answer.headers["Docker-Content-Digest"] == "sha256:" + hashlib.sha256(rogue).hexdigest()
    assert registry.manifests[digest] == engine


def test_the_registry_keeps_connections_serves_no_bytes_and_drops_bad_uploads(
    registry: staging.StagingRegistry,
) -> None:
    url = f"http://{registry.address}"
    body = b"config bytes"
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    with requests.Session() as session:
        # What every push does: a HEAD that finds nothing, then a POST on the same kept-alive connection.
        assert session.head(f"{url}/v2/app/blobs/{digest}", timeout=10).status_code == 404
        started = session.post(f"{url}/v2/app/blobs/uploads/", params={"digest": digest}, data=body, timeout=10)
        assert started.status_code == 201
        # Whatever is in the cache exists for a HEAD, but no process reads it back through the registry.
        assert session.head(f"{url}/v2/app/blobs/{digest}", timeout=10).status_code == 200
        assert session.get(f"{url}/v2/app/blobs/{digest}", timeout=10).status_code == 405
    # A chunked body with a chunk size that is not hex: 400, the upload and its bytes gone.
    upload = requests.post(f"{url}/v2/app/blobs/uploads/", timeout=10).headers["Location"]
    upload_id = upload.rsplit("/", 1)[1]
    host, port = registry.address.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(
            f"PATCH {upload} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n".encode()
        )
        assert raw.recv(1024).startswith(b"HTTP/1.1 400")
    assert upload_id not in registry.uploads
    assert not (registry.uploads_dir / upload_id).exists()


def test_the_port_is_the_same_for_one_cache_and_a_busy_port_is_not_an_error(tmp_path: Path) -> None:
    root = tmp_path / "staging"
    assert staging.preferred_port(root) == staging.preferred_port(tmp_path / "x" / ".." / "staging")
    assert staging.preferred_port(root) in staging.PORTS
    first = staging.StagingRegistry(root)
    try:
        assert first.address == f"127.0.0.1:{staging.preferred_port(root)}"
        second = staging.StagingRegistry(root)  # another run of the same cache: served on another port
        try:
            assert second.address != first.address
            assert requests.get(f"http://{second.address}/v2/", timeout=10).status_code == 200
        finally:
            second.stop()
    finally:
        first.stop()


@pytest.mark.parametrize(
    ("docker_host", "local"),
    [
        ("", True),
        ("unix:///run/user/1000/docker.sock", True),
        ("tcp://127.0.0.1:2375", True),
        ("tcp://localhost:2376", True),
        ("tcp://docker:2375", False),
        ("ssh://builder@10.0.0.5", False),
    ],
)
def test_only_an_engine_on_this_machine_is_pushed_to_loopback(
    docker_host: str, local: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    assert staging.engine_is_local() is local


def test_the_way_out_of_each_engine_is_remembered_per_cache(tmp_path: Path) -> None:
    root = tmp_path / "staging"
    assert staging.way_for(root, "engine-a") is None
    staging.remember_way(root, "engine-a", "push")
    staging.remember_way(root, "engine-b", "save")
    assert (staging.way_for(root, "engine-a"), staging.way_for(root, "engine-b")) == ("push", "save")
    staging.remember_way(root, "engine-a", "save")
    assert staging.way_for(root, "engine-a") == "save"
    assert staging.way_for(tmp_path / "other", "engine-a") is None
    # A failed push is not held against an engine forever: after a day it is tried as new again.
    table = json.loads((root / "engines.json").read_text())
    table["engine-a"]["at"] -= staging.RETRY_PUSH_SECONDS + 1
    (root / "engines.json").write_text(json.dumps(table))
    assert staging.way_for(root, "engine-a") is None
    assert staging.way_for(root, "engine-b") == "save"
    (root / "engines.json").write_text("[not a table")
    assert staging.way_for(root, "engine-a") is None
