"""Taking the app image's new layers out of the Docker engine by a push to a loopback registry.

``docker save`` exports every layer of an image, the base and the
dependencies included, on every build; a push exports only the layers the
target registry lacks. So the builder pushes the app image to a
:class:`StagingRegistry`: a minimal distribution-API server on 127.0.0.1 whose
blobs live in the shipway cache (``<cache>/staging/blobs``). The engine
remembers which compressed digest each layer got there, asks with a HEAD,
and compresses and sends only the layers it has never pushed: on a
code-only commit, the code layer.

The port is chosen from the cache folder's path, so the engine's memory of
what it pushed there holds from one run to the next. When that port is
taken (another run on this runner) a neighbour or any free port serves:
correct, only slower (the engine then sends every layer once more).

Trust: what the engine sent is content-addressed (a blob is kept only under
the digest its bytes have), and the manifest is taken only by the digest the
engine's push stream reports, with its config checked against the image ID.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import re
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

import docker.errors

from shipway import dockerutil, journal
from shipway.errors import BackendError
from shipway.localhttp import STOP_POLL_SECONDS, QuietHandler, is_loopback
from shipway.manifest import LAYER_TAR, LAYER_TAR_GZIP, Blob, sha256

PORTS = range(20000, 30000)
"""Where the preferred port of a cache folder lies: below Linux's ephemeral range (32768-60999)."""
KEEP_SECONDS = 14 * 24 * 3600
"""Blobs no push has touched for this long are removed when a staging registry starts."""

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_BLOB = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
_UPLOADS = re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/(?P<id>[0-9a-f]{32})?$")
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")


class _Upload:
    """One blob upload in progress: a spool file and the running digest of what it holds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: IO[bytes] = path.open("wb")
        self.hash = hashlib.sha256()
        self.size = 0
        self.lock = threading.Lock()

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.hash.update(chunk)
        self.size += len(chunk)


class StagingRegistry:
    """A loopback registry that keeps blobs in ``root`` (shared by runs) and manifests in memory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.uploads_dir = root / "uploads"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        self.uploads: dict[str, _Upload] = {}
        self.manifests: dict[str, bytes] = {}
        self.received = 0
        """Blob bytes (layers, config) the engine sent: blobs it pushed here before are not sent again."""
        self._lock = threading.Lock()
        _prune(self.blobs, self.uploads_dir)
        self._server = _bind(root, _handler(self))
        # Polled every 50 ms, not socketserver's 500: stop() waits for the next poll, on every build.
        threading.Thread(
            target=self._server.serve_forever, args=(STOP_POLL_SECONDS,), daemon=True, name="shipway-staging"
        ).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{int(self._server.server_address[1])}"

    def blob_path(self, digest: str) -> Path:
        return self.blobs / digest.split(":", 1)[1]

    def blob(self, digest: str, size: int, media_type: str) -> Blob:
        """A blob the engine pushed, read from the cache."""
        path = self.blob_path(digest)
        if not path.is_file() or path.stat().st_size != size:
            raise BackendError(f"staging registry: blob {digest[:19]} is missing or has the wrong size")

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    yield chunk

        return Blob(digest, size, media_type, opener=chunks)

    def new_upload(self) -> str:
        upload_id = uuid.uuid4().hex
        with self._lock:
            self.uploads[upload_id] = _Upload(self.uploads_dir / upload_id)
        return upload_id

    def drop_upload(self, upload_id: str) -> bool:
        """Forget an upload and delete what it wrote; False if there was none."""
        with self._lock:
            upload = self.uploads.pop(upload_id, None)
        if upload is None:
            return False
        with upload.lock:
            upload.file.close()
            upload.path.unlink(missing_ok=True)
        return True

    def finish_upload(self, upload_id: str, digest: str) -> bool:
        """Keep the upload as blob ``digest`` if its bytes have that digest; False (and dropped) if not."""
        with self._lock:
            upload = self.uploads.pop(upload_id)
        upload.file.close()
        if "sha256:" + upload.hash.hexdigest() != digest:
            upload.path.unlink(missing_ok=True)
            return False
        os.chmod(upload.path, 0o444)
        os.replace(upload.path, self.blob_path(digest))
        with self._lock:
            self.received += upload.size
        return True

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        for upload_id in list(self.uploads):
            self.drop_upload(upload_id)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that misbehaves or goes away is the client's problem: no traceback on shipway's stderr."""


def preferred_port(root: Path) -> int:
    """The port a cache folder's staging registry tries first (the same every run)."""
    h = int(hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8], 16)
    return PORTS.start + h % len(PORTS)


def _bind(root: Path, handler: type[BaseHTTPRequestHandler]) -> _Server:
    first = preferred_port(root)
    for port in [*range(first, first + 4), 0]:
        try:
            return _Server(("127.0.0.1", port), handler)
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
    raise AssertionError("unreachable: port 0 always binds")


def _prune(blobs: Path, uploads: Path) -> None:
    """Remove blobs no push touched for KEEP_SECONDS, and uploads a killed run left."""
    old = time.time() - KEEP_SECONDS
    for path in blobs.iterdir():
        try:
            if path.stat().st_mtime < old:
                path.unlink()
        except FileNotFoundError:
            pass
    for path in uploads.iterdir():
        try:
            if path.stat().st_mtime < time.time() - 3600:
                path.unlink()
        except FileNotFoundError:
            pass


def _handler(reg: StagingRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"

        def _copy(self, left: int, sink: Callable[[bytes], object]) -> None:
            while left:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    raise ConnectionError("the client went away mid-body")
                sink(chunk)
                left -= len(chunk)

        def _body_into(self, upload: _Upload | None) -> bytes:
            """Read the request body (chunked or sized) into ``upload``, or return it when there is none."""
            self.body_read = True
            kept: list[bytes] = []
            sink = upload.write if upload is not None else kept.append
            if "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
                self._copy(int(self.headers.get("Content-Length") or 0), sink)
                return b"".join(kept)
            while size := int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16):
                self._copy(size, sink)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(kept)

        body_read = False

        def _error(self, status: int, code: str) -> None:
            headers = {"Content-Type": "application/json"}
            if not self.body_read and self._has_body():
                # The body is unread: never take its bytes for the next request, and tell the client so.
                self.close_connection = True
                headers["Connection"] = "close"
            body = json.dumps({"errors": [{"code": code, "message": code.lower()}]}).encode()
            self.answer(status, body, headers)

        def _has_body(self) -> bool:
            chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
            return chunked or int(self.headers.get("Content-Length") or 0) > 0

        def _blob_found(self, name: str, digest: str, status: int = 200) -> None:
            path = reg.blob_path(digest)
            try:
                os.utime(path)  # in use: kept by the next prune
                size = path.stat().st_size
            except FileNotFoundError:
                self._error(404, "BLOB_UNKNOWN")
                return
            headers = {"Docker-Content-Digest": digest, "Location": f"/v2/{name}/blobs/{digest}"}
            if status == 200:  # HEAD: the blob's length, no body
                self.send_response(200)
                for key, value in {**headers, "Content-Length": str(size)}.items():
                    self.send_header(key, value)
                self.end_headers()
                return
            self.answer(status, b"", headers)

        def _upload_started(self, name: str, upload_id: str) -> None:
            upload = reg.uploads[upload_id]
            self.answer(
                202,
                b"",
                {
                    "Location": f"/v2/{name}/blobs/uploads/{upload_id}",
                    "Docker-Upload-UUID": upload_id,
                    "Range": f"0-{max(upload.size - 1, 0)}",
                },
            )

        def do_GET(self) -> None:
            # Only the API check: a push never reads blobs or manifests back, and serving them would hand
            # the cache's layers to any local process.
            if urlsplit(self.path).path in ("/v2", "/v2/"):
                self.answer_json(200, {})
            else:
                self._error(405, "UNSUPPORTED")

        def do_HEAD(self) -> None:
            url = urlsplit(self.path)
            if url.path in ("/v2", "/v2/"):
                self.answer_json(200, {})
            elif m := _BLOB.match(url.path):
                self._blob_found(m["name"], m["digest"])
            elif m := _MANIFEST.match(url.path):
                body = reg.manifests.get(f"{m['name']}@{m['ref']}") or reg.manifests.get(m["ref"])
                if body is None:
                    self._error(404, "MANIFEST_UNKNOWN")
                else:
                    media = json.loads(body).get("mediaType", "")
                    self.answer(200, body, {"Content-Type": media, "Docker-Content-Digest": sha256(body)})
            else:
                self._error(404, "NAME_UNKNOWN")

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            m = _UPLOADS.match(url.path)
            if not m or m["id"]:
                self._error(404, "NAME_UNKNOWN")
                return
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            mount = query.get("mount", "")
            if mount and _DIGEST.match(mount) and reg.blob_path(mount).is_file():
                self._body_into(None)
                self._blob_found(m["name"], mount, 201)
                return
            upload_id = reg.new_upload()
            if not self._fill(upload_id, reg.uploads[upload_id]):
                return
            digest = query.get("digest", "")
            if digest:
                self._finish(m["name"], upload_id, digest)
            else:
                self._upload_started(m["name"], upload_id)

        def _append(self, path: str) -> tuple[str, str] | None:
            """Add the body to the upload ``path`` names: (repository, upload ID), or None (answered)."""
            m = _UPLOADS.match(path)
            upload = reg.uploads.get(m["id"] or "") if m else None
            if m is None or upload is None:
                self._error(404, "BLOB_UPLOAD_UNKNOWN")
                return None
            return (m["name"], m["id"]) if self._fill(m["id"], upload) else None

        def _fill(self, upload_id: str, upload: _Upload) -> bool:
            """Read the body into ``upload``; on bad framing or a client gone mid-body, drop it (False)."""
            try:
                with upload.lock:
                    self._body_into(upload)
                return True
            except (ValueError, OSError):  # a bad chunk size or length, a reset (ConnectionError is an OSError)
                reg.drop_upload(upload_id)
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.answer(400, b"", {"Connection": "close"})
                return False

        def do_PATCH(self) -> None:
            if found := self._append(urlsplit(self.path).path):
                self._upload_started(*found)

        def do_PUT(self) -> None:
            url = urlsplit(self.path)
            if m := _MANIFEST.match(url.path):
                body = self._body_into(None)
                digest = sha256(body)
                reg.manifests[f"{m['name']}@{m['ref']}"] = body
                reg.manifests[digest] = body
                location = f"/v2/{m['name']}/manifests/{digest}"
                self.answer(201, b"", {"Docker-Content-Digest": digest, "Location": location})
                return
            if found := self._append(url.path):
                self._finish(*found, parse_qs(url.query).get("digest", [""])[0])

        def _finish(self, name: str, upload_id: str, digest: str) -> None:
            if not _DIGEST.match(digest):
                reg.drop_upload(upload_id)
                self._error(400, "DIGEST_INVALID")
                return
            if not reg.finish_upload(upload_id, digest):
                self._error(400, "DIGEST_INVALID")
                return
            self._blob_found(name, digest, 201)

        def do_DELETE(self) -> None:
            m = _UPLOADS.match(urlsplit(self.path).path)
            self.answer(204 if m and reg.drop_upload(m["id"] or "") else 404)

    return Handler


@dataclass
class StagedImage:
    """An image the engine pushed to the staging registry: its config, diff IDs and compressed layers."""

    config: bytes
    diff_ids: list[str]
    layers: list[Blob]
    """The engine's gzip blobs, in the cache."""
    received: int
    """Blob bytes the engine had to send (layers and config it had not pushed there before)."""
    root: Path

    def raw(self, i: int) -> Blob:
        """Layer ``i`` uncompressed; its size decompressed once (and checked against the diff ID), then remembered."""
        size = raw_size(self.layers[i], self.diff_ids[i], self.root / "raw")
        return Blob(self.diff_ids[i], size, LAYER_TAR, opener=functools.partial(self.raw_chunks, i))

    def raw_chunks(self, i: int) -> Iterator[bytes]:
        return _gunzip(self.layers[i]) if self.layers[i].media_type == LAYER_TAR_GZIP else _chunks(self.layers[i])

    def loadable(self, i: int) -> Blob:
        """Layer ``i`` as ``docker load`` takes it (the engine decompresses a gzip layer itself)."""
        return self.layers[i]

    def cleanup(self) -> None:
        """Nothing: the blobs stay in the cache for the next push to skip."""


def _chunks(blob: Blob) -> Iterator[bytes]:
    assert blob.opener is not None
    yield from blob.opener()


def _gunzip(blob: Blob) -> Iterator[bytes]:
    inflate = zlib.decompressobj(31)
    for chunk in _chunks(blob):
        while chunk:
            out = inflate.decompress(chunk, 1 << 20)
            if out:
                yield out
            chunk = inflate.unconsumed_tail
    rest = inflate.flush()
    if rest:
        yield rest


def raw_size(blob: Blob, diff_id: str, index: Path) -> int:
    """Uncompressed size of a gzip layer whose diff ID is ``diff_id``; decompressed once, then remembered."""
    entry = index / f"{blob.digest.split(':', 1)[1]}.json"
    if entry.is_file():
        found = json.loads(entry.read_text())
        if found.get("diff_id") == diff_id:
            return int(found["size"])
    h = hashlib.sha256()
    size = 0
    for chunk in _gunzip(blob) if blob.media_type == LAYER_TAR_GZIP else _chunks(blob):
        h.update(chunk)
        size += len(chunk)
    if "sha256:" + h.hexdigest() != diff_id:
        raise BackendError(f"staging registry: blob {blob.digest[:19]} does not hold layer {diff_id[:19]}")
    index.mkdir(parents=True, exist_ok=True)
    tmp = entry.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps({"diff_id": diff_id, "size": size}))
    tmp.replace(entry)
    return size


def engine_is_local() -> bool:
    """Whether the engine shares this machine's loopback (a local socket or a loopback TCP address).

    A remote engine (``DOCKER_HOST=tcp://docker:2375`` of a CI service) cannot
    reach a registry on this machine's 127.0.0.1.
    """
    host = os.environ.get("DOCKER_HOST", "")
    if not host or host.startswith(("unix://", "npipe://")):
        return True
    netloc = urlsplit(host).netloc
    return bool(netloc) and is_loopback(netloc)


def _engines_file(root: Path) -> Path:
    return root / "engines.json"


def engine_id() -> str:
    """The engine's own ID (``docker info``): the same across restarts, new on a new machine."""
    return str(dockerutil.client().info().get("ID") or "")


RETRY_PUSH_SECONDS = 24 * 3600
"""How long an engine whose push failed is given ``docker save`` before a push is tried again."""


def _ways(root: Path) -> dict[str, dict[str, Any]]:
    try:
        table = json.loads(_engines_file(root).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {k: v for k, v in table.items() if isinstance(v, dict)} if isinstance(table, dict) else {}


def way_for(root: Path, engine: str) -> str | None:
    """How builds with this cache take layers out of ``engine`` next ("push", "save"), None on a first build.

    A "save" noted after a failed push lasts RETRY_PUSH_SECONDS; then the
    engine is treated as new again (one build with save, then a push).
    """
    entry = _ways(root).get(engine) or {}
    way, at = entry.get("way"), entry.get("at", 0)
    if way == "save" and time.time() - float(at) > RETRY_PUSH_SECONDS:
        return None
    return way if way in ("push", "save") else None


def remember_way(root: Path, engine: str, way: str) -> None:
    """Note how the next build with this cache takes layers out of ``engine`` (the last writer wins)."""
    table = _ways(root)
    if (table.get(engine) or {}).get("way") == way and way == "push":
        return
    table.pop(engine, None)
    table[engine] = {"way": way, "at": time.time()}
    root.mkdir(parents=True, exist_ok=True)
    path = _engines_file(root)
    tmp = path.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(dict(list(table.items())[-16:])))
    tmp.replace(path)


_STAGING_REPOSITORY = "shipway-staging"
_PUSH_TAG = re.compile(r"^build-(?P<host>[A-Za-z0-9_.-]+)-(?P<pid>\d+)-[0-9a-f]{8}$")


def _push_tag() -> str:
    """The tag a push goes out under: it names this host and process, so a later run on this host can
    tell one a killed run left (the run removes its own however the push ends)."""
    return f"build-{journal.tag_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def remove_abandoned_push_tags(listing: list[dict[str, Any]]) -> list[str]:
    """Remove the staging push tags that runs of this host which have ended left in the engine (a killed
    run's tag would keep its app image, and its layers, in the engine for ever); returns them.
    ``listing``: the engine's images (:func:`shipway.image.engine_images`)."""
    removed = []
    for tag in [t for img in listing for t in img.get("RepoTags") or []]:
        repository, _, name = tag.rpartition(":")
        m = _PUSH_TAG.match(name)
        if m is None or f"/{_STAGING_REPOSITORY}/" not in repository or m["host"] != journal.tag_host():
            continue  # not a push tag of this host's
        if journal.gone(socket.gethostname(), int(m["pid"])):
            with contextlib.suppress(BackendError, docker.errors.DockerException, OSError):
                dockerutil.client().api.remove_image(tag, noprune=True)
                removed.append(tag)
    return removed


def export(image_id: str, root: Path, app: str) -> StagedImage:
    """Push ``image_id`` to a staging registry over ``root`` and read it back (config, layers)."""
    try:
        reg = StagingRegistry(root)
    except OSError as exc:
        raise BackendError(f"cannot start the staging registry in {root}: {exc}") from None
    client = dockerutil.client()
    repository = f"{reg.address}/{_STAGING_REPOSITORY}/{_repo_name(app)}"
    tag = _push_tag()
    try:
        client.api.tag(image_id, repository, tag)
        try:
            events = dockerutil.follow(
                client.api.push(repository, tag=tag, stream=True, decode=True), f"push to {repository}"
            )
        finally:
            with contextlib.suppress(docker.errors.APIError):
                client.api.remove_image(f"{repository}:{tag}", noprune=True)
        digest = next(
            (str(e["aux"]["Digest"]) for e in events if isinstance(e.get("aux"), dict) and "Digest" in e["aux"]), ""
        )
        body = reg.manifests.get(digest)
        if body is None or sha256(body) != digest:
            raise BackendError(f"push to {repository}: the engine reported manifest {digest or 'nothing'}")
        manifest = json.loads(body)
        config_ref = manifest["config"]
        config = reg.blob_path(config_ref["digest"]).read_bytes()
        if sha256(config) != image_id or config_ref["digest"] != image_id:
            raise BackendError(f"push to {repository}: the pushed config is not image {image_id[:19]}")
        diff_ids = list(json.loads(config)["rootfs"]["diff_ids"])
        layers = [reg.blob(d["digest"], int(d["size"]), d["mediaType"]) for d in manifest["layers"]]
        if len(layers) != len(diff_ids):
            raise BackendError(f"push to {repository}: {len(layers)} layers for {len(diff_ids)} diff IDs")
        return StagedImage(config, diff_ids, layers, reg.received, root)
    except docker.errors.APIError as exc:
        raise BackendError(f"push to {repository} failed: {exc.explanation or exc}") from None
    except (OSError, KeyError, ValueError) as exc:
        raise BackendError(f"push to {repository}: cannot read what the engine pushed: {exc}") from None
    finally:
        reg.stop()


def _repo_name(app: str) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", app.lower()).strip("._-")
    return name or "app"


__all__ = [
    "RETRY_PUSH_SECONDS",
    "StagedImage",
    "StagingRegistry",
    "engine_id",
    "engine_is_local",
    "export",
    "preferred_port",
    "remember_way",
    "remove_abandoned_push_tags",
    "way_for",
]
