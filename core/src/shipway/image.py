"""Assembling the final image from the app image and the model layer, and loading it into the engine.

The app image comes out of the engine by a push to the staging registry
(:mod:`shipway.staging`: only the layers the engine never pushed there are
exported) or, when the engine cannot reach it, ``docker save`` (every layer,
uncompressed). The final config is the app's with the model layer's diff ID
inserted right above the base image's layers, reproducible fields (created
from the source date, no build container, no engine version) and shipway's
labels. ``docker load`` then gives the engine exactly that image (its ID is
the config digest), sending only the layers the engine does not hold yet.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import socket
import tarfile
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import docker.errors
import requests

from shipway import dockerutil, journal, labels
from shipway.errors import BackendError, BuildFailed
from shipway.layers import Entry, ModelLayer, tar_chunks
from shipway.manifest import LAYER_TAR_GZIP, Blob, Image, sha256


class _StreamReader:
    """A read()-able view of an iterator of byte chunks (for tarfile's stream mode)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._it)
            except StopIteration:
                break
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk


class AppImage(Protocol):
    """The app image as the builder took it out of the engine: config, diff IDs, each layer's bytes."""

    config: bytes
    diff_ids: list[str]

    def raw(self, i: int) -> Blob:
        """Layer ``i`` uncompressed (digest = diff ID)."""
        ...

    def raw_chunks(self, i: int) -> Iterator[bytes]:
        """Layer ``i``'s uncompressed bytes (without needing its size first)."""
        ...

    def loadable(self, i: int) -> Blob:
        """Layer ``i`` as ``docker load`` takes it (uncompressed or gzip)."""
        ...

    def cleanup(self) -> None:
        """Drop what only this build needed."""
        ...


@dataclass
class SavedImage:
    """An image from ``docker save``: its config and its layers spooled to ``folder``."""

    config: bytes
    diff_ids: list[str]
    sizes: list[int]
    paths: list[Path]
    folder: Path

    def raw(self, i: int) -> Blob:
        path = self.paths[i]
        return Blob(self.diff_ids[i], self.sizes[i], opener=lambda: _file_chunks(path))

    def raw_chunks(self, i: int) -> Iterator[bytes]:
        return _file_chunks(self.paths[i])

    def loadable(self, i: int) -> Blob:
        return self.raw(i)

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def remove_abandoned_spools(spool: Path) -> None:
    """Delete ``docker save`` folders of this host's runs that were killed (their process is gone)."""
    for entry in spool.iterdir() if spool.is_dir() else []:
        parts = entry.name.rsplit("-", 2)
        if len(parts) == 3 and parts[1].isdigit() and journal.gone(parts[0], int(parts[1])):
            shutil.rmtree(entry, ignore_errors=True)


def _spool_folder(spool: Path) -> Path:
    """A fresh folder for one ``docker save``, named for its process (see :func:`remove_abandoned_spools`)."""
    spool.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{socket.gethostname()}-{os.getpid()}-", dir=spool))


def save(image_id: str, spool: Path) -> SavedImage:
    """Stream ``docker save`` of one image, keeping its config and each layer's tar."""
    client = dockerutil.client()
    folder = _spool_folder(spool)
    files: dict[str, Path] = {}
    blobs: dict[str, bytes] = {}
    try:
        stream = client.api.get_image(image_id, chunk_size=1 << 20)
        with tarfile.open(fileobj=_StreamReader(stream), mode="r|") as archive:  # type: ignore[call-overload]
            for member in archive:
                if not member.isfile():
                    continue
                src = archive.extractfile(member)
                assert src is not None
                if member.name.endswith(".tar"):
                    target = folder / f"{len(files)}.tar"
                    with target.open("wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                    files[member.name] = target
                elif member.name.endswith(".json") and member.size < 16 << 20:
                    blobs[member.name] = src.read()
    except (docker.errors.APIError, tarfile.TarError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise BuildFailed(f"docker save of {image_id[:19]} failed: {exc}") from None
    manifest = json.loads(blobs["manifest.json"])[0]
    config = blobs[manifest["Config"]]
    diff_ids = list(json.loads(config)["rootfs"]["diff_ids"])
    paths = [files[name] for name in manifest["Layers"]]
    return SavedImage(
        config=config, diff_ids=diff_ids, sizes=[p.stat().st_size for p in paths], paths=paths, folder=folder
    )


def gzip_chunks(raw: Iterable[bytes]) -> Iterator[bytes]:
    """A layer gzip-compressed, the same bytes every time for one zlib (level 1, no name, mtime 0)."""
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    for chunk in raw:
        out = comp.compress(chunk)
        if out:
            yield out
    yield comp.flush()


def gzip_blob(diff_id: str, raw: Callable[[], Iterable[bytes]], cache_dir: Path) -> Blob:
    """The compressed blob of a layer the Dockerfile made; its digest cached by diff ID, so a layer seen
    before is not compressed again just to learn that the registry already has it.

    The same layer gives the same blob whichever way it left the engine
    (``docker save`` or the staging push), so switching ways uploads nothing.
    """
    index = cache_dir / "gz-layers" / f"{diff_id.split(':', 1)[1]}.json"
    if index.is_file():
        found = json.loads(index.read_text())
        digest, size = str(found["digest"]), int(found["size"])
    else:
        digest, size = sha256_stream(gzip_chunks(raw()))
        index.parent.mkdir(parents=True, exist_ok=True)
        tmp = index.with_suffix(".tmp")
        tmp.write_text(json.dumps({"digest": digest, "size": size, "zlib": zlib.ZLIB_RUNTIME_VERSION}))
        tmp.replace(index)
    return Blob(digest, size, LAYER_TAR_GZIP, opener=lambda: gzip_chunks(raw()))


def base_layers(base: str | None) -> list[str] | None:
    """Diff IDs of a local base image; ``[]`` for scratch; None when the engine does not have it."""
    if base is None:
        return []
    try:
        return list(dockerutil.client().images.get(base).attrs["RootFS"]["Layers"])
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        raise BackendError(f"cannot inspect base image {base}: {exc.explanation or exc}") from None


def base_platform(base: str | None) -> dict[str, str] | None:
    """The ``architecture``/``os`` (and ``variant``) of a local base image, or of the engine for scratch."""
    try:
        client = dockerutil.client()
        if base is None:
            version = client.version()
            return {"architecture": str(version["Arch"]), "os": str(version["Os"])}
        attrs = client.images.get(base).attrs
    except (docker.errors.DockerException, KeyError):
        return None
    found = {"architecture": attrs.get("Architecture"), "os": attrs.get("Os"), "variant": attrs.get("Variant")}
    return {k: str(v) for k, v in found.items() if v} if found["architecture"] and found["os"] else None


def base_workdir(base: str | None) -> str | None:
    """The WORKDIR of a local base image ("/" for scratch or unset; None when the engine lacks the image)."""
    if base is None:
        return "/"
    try:
        return str(dockerutil.client().images.get(base).attrs["Config"].get("WorkingDir") or "/")
    except docker.errors.DockerException:
        return None


def model_position(app_layers: list[str], base: list[str] | None) -> int:
    """Where the model layer goes: right above the base's layers, else on top of everything.

    Above the base, the model's chain (base + model) does not change with the
    code or the dependencies, so engines and nodes that hold it never take it
    in again; on top (when the base is unknown) every new app layer below it
    makes the engine store the model once more.
    """
    if base is not None and app_layers[: len(base)] == base:
        return len(base)
    return len(app_layers)


@dataclass
class Assembly:
    """What the final image is made of, before it is loaded or pushed."""

    image: Image
    position: int | None
    model_layer: ModelLayer | None
    app: AppImage
    tag: str
    chains: list[str] = field(default_factory=list)

    def loadable(self, i: int) -> Blob:
        """Layer ``i`` of the final image as ``docker load`` takes it."""
        if self.model_layer is not None and self.position is not None:
            if i == self.position:
                return self.image.layers[i]
            if i > self.position:
                return self.app.loadable(i - 1)
        return self.app.loadable(i)


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The engine's layer chain IDs (each layer's identity given everything below it)."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else sha256(f"{out[-1]} {d}".encode()))
    return out


def assemble(
    app: AppImage,
    model_layer: ModelLayer | None,
    position: int | None,
    base_history: int,
    created: str,
    labels: dict[str, str],
    tag: str,
    description: str,
    compress_from: int | None = None,
    cache_dir: Path | None = None,
) -> Assembly:
    """The final config and layer list: the app's layers with the model layer at ``position``.

    Layers the Dockerfile made (``compress_from`` on, in the app image) are
    pushed gzip-compressed: they change with every build anyway, and
    dependencies compress well. Base and model layers stay uncompressed, so
    their digest is their diff ID, the same on every runner.
    """
    cfg: dict[str, Any] = json.loads(app.config)
    for key in ("container", "container_config", "docker_version"):
        cfg.pop(key, None)
    cfg["created"] = created
    inner = cfg.setdefault("config", {})
    inner["Image"] = ""
    inner["Hostname"] = ""
    inner["Labels"] = {**(inner.get("Labels") or {}), **labels}
    history: list[dict[str, Any]] = list(cfg.get("history") or [])
    for i, entry in enumerate(history):
        if i >= base_history:
            entry["created"] = created
    blobs = [
        gzip_blob(app.diff_ids[i], functools.partial(app.raw_chunks, i), cache_dir)
        if compress_from is not None and cache_dir is not None and i >= compress_from
        else app.raw(i)
        for i in range(len(app.diff_ids))
    ]
    diff_ids = list(app.diff_ids)
    if model_layer is not None and position is not None:
        blobs.insert(position, Blob(model_layer.digest, model_layer.size, opener=model_layer.chunks))
        diff_ids.insert(position, model_layer.digest)
        history.insert(
            _history_index(history, position),
            {"created": created, "created_by": description, "comment": "shipway model layer"},
        )
    cfg["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    cfg["history"] = history
    config = json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()
    image = Image(config=config, layers=tuple(blobs), local_id=sha256(config))
    return Assembly(image, position, model_layer, app, tag, chain_ids(diff_ids))


def _history_index(history: list[dict[str, Any]], layer: int) -> int:
    """Index in ``history`` before which a new (non-empty) entry becomes layer number ``layer``."""
    seen = 0
    for i, entry in enumerate(history):
        if seen == layer:
            return i
        if not entry.get("empty_layer"):
            seen += 1
    return len(history)


def _index_path(cache_dir: Path) -> Path:
    return cache_dir / "engine-chains.json"


def _known_chains(cache_dir: Path) -> dict[str, str]:
    path = _index_path(cache_dir)
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def present_chains(chains: list[str], first: int, cache_dir: Path) -> int:
    """How many chains from ``first`` on the engine holds (an image it still has contains them)."""
    known = _known_chains(cache_dir)
    client = dockerutil.client()
    alive: dict[str, bool] = {}
    n = first
    for chain in chains[first:]:
        image_id = known.get(chain)
        if image_id is None:
            break
        if image_id not in alive:
            try:
                client.images.get(image_id)
                alive[image_id] = True
            except docker.errors.ImageNotFound:
                alive[image_id] = False
        if not alive[image_id]:
            break
        n += 1
    return n


def load(assembly: Assembly, cache_dir: Path) -> int:
    """``docker load`` the final image, sending only layers the engine lacks; returns bytes sent.

    Layers below the model are the app image's own, so the engine has them.
    When the engine lost a layer shipway thought it had, the load is retried
    with every layer above the base.
    """
    image = assembly.image
    first = assembly.position if assembly.position is not None else len(image.layers)
    start = present_chains(assembly.chains, first, cache_dir)
    try:
        sent = _load(assembly, start)
    except BuildFailed:
        if start == first:
            raise
        sent = _load(assembly, first)
    _remember_chains(assembly.chains, image.local_id, cache_dir)
    return sent


_index_lock = threading.Lock()


def _remember_chains(chains: list[str], image_id: str, cache_dir: Path) -> None:
    """Record that the engine holds ``chains`` while it holds ``image_id``."""
    path = _index_path(cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _index_lock, path.with_suffix(".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # runs sharing a cache do not drop each other's entries
        known = _known_chains(cache_dir)
        known.update(dict.fromkeys(chains, image_id))
        if len(known) > 5000:
            known = dict(list(known.items())[-5000:])
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known))
        tmp.replace(path)


def _load(assembly: Assembly, send_from: int) -> int:
    image = assembly.image
    layers = [(i, assembly.loadable(i)) for i in range(send_from, len(image.layers))]
    # A second tag says a live run holds the image: another run's prune spares it until this run ends.
    tags = [assembly.tag, held_tag(assembly.tag.rpartition(":")[0], image.local_id)]
    docker_load(image.config, [b.digest for b in image.layers], layers, tags)
    client = dockerutil.client()
    try:
        loaded = client.images.get(assembly.tag)
    except docker.errors.ImageNotFound:
        raise BuildFailed(f"docker load did not create {assembly.tag}") from None
    if loaded.id != image.local_id:
        raise BuildFailed(f"the engine loaded {loaded.id}, the assembled config is {image.local_id}")
    return sum(b.size for _, b in layers)


def docker_load(config: bytes, diff_ids: list[str], layers: list[tuple[int, Blob]], tags: list[str]) -> None:
    """``docker load`` an image archive holding ``config`` and only the layers given (index, blob).

    The engine looks a layer up by its chain before it opens the layer's file,
    so layers it already holds need not be in the archive.
    """
    names = [f"layers/{d.split(':', 1)[1]}.tar" for d in diff_ids]
    manifest = json.dumps([{"Config": "config.json", "RepoTags": tags, "Layers": names}]).encode()
    entries = [
        Entry(name="layers", kind="dir"),
        Entry(name="config.json", size=len(config), data=config),
        Entry(name="manifest.json", size=len(manifest), data=manifest),
    ]
    entries += [Entry(name=names[i], size=blob.size, opener=blob.opener) for i, blob in layers]
    _load_archive(tar_chunks(entries), f"docker load of {tags[0] if tags else sha256(config)[:19]}")


def _load_archive(archive: Iterable[bytes], what: str) -> None:
    try:
        stream = dockerutil.client().api.load_image(archive)
        dockerutil.follow(stream, what)
    except (docker.errors.APIError, BackendError) as exc:
        raise BuildFailed(f"{what} failed: {exc}") from None


def preload(
    base: list[str], layer: ModelLayer, stop: threading.Event, *, platform: dict[str, str], cache_dir: Path
) -> str | None:
    """Load the base's layers plus the model layer into the engine as an untagged image; returns its ID
    (None when the engine already holds that chain: nothing was loaded).

    Run while the engine still builds the app: the model layer sits right
    above the base in the final image, so this chain is the final image's
    own, and the final load then sends only the layers above the model. The
    caller removes the image once the final image holds the chain.
    """
    diff_ids = [*base, layer.digest]
    chains = chain_ids(diff_ids)
    if present_chains(chains, len(base), cache_dir) > len(base):
        return None
    config = _preload_config(diff_ids, platform)

    def chunks() -> Iterator[bytes]:
        for chunk in layer.chunks():
            if stop.is_set():
                raise BuildFailed("the model layer's preload was no longer wanted")
            yield chunk

    image_id = sha256(config)
    # Recorded first: an entry naming an image that never loaded is only a miss for present_chains.
    _remember_chains(chains[len(base) :], image_id, cache_dir)
    docker_load(config, diff_ids, [(len(base), Blob(layer.digest, layer.size, opener=chunks))], [])
    return image_id


def preload_arriving(
    base: list[str],
    chunks: Iterable[bytes],
    size: int,
    stop: threading.Event,
    *,
    platform: dict[str, str],
    cache_dir: Path,
    on_digest: Callable[[str], None] = lambda digest: None,
) -> tuple[str, str]:
    """:func:`preload` of a layer whose bytes are still arriving (the model as the store downloads it):
    returns (image ID, the layer's diff ID).

    The archive holds the layer first and its config last, so the diff ID is
    taken on the way; the engine writes the layer out as it comes and checks
    it against the config at the end. ``on_digest`` is called with the diff
    ID once the layer's last byte is read, before the engine registers the
    layer; what it raises stops the load.
    """
    name = "layers/arriving.tar"
    sha = hashlib.sha256()
    found: list[str] = []

    def archive() -> Iterator[bytes]:
        yield Entry(name=name, size=size).header(0)
        sent = 0
        for chunk in chunks:
            if stop.is_set():
                raise BuildFailed("the model layer's preload was no longer wanted")
            sha.update(chunk)
            sent += len(chunk)
            yield chunk
        if sent != size:
            raise BuildFailed(f"the model layer's preload read {sent} bytes, {size} expected")
        yield b"\0" * (-size % 512)
        diff_ids = [*base, "sha256:" + sha.hexdigest()]
        on_digest(diff_ids[-1])
        config = _preload_config(diff_ids, platform)
        layer_names = [f"layers/{d.split(':', 1)[1]}.tar" for d in base] + [name]
        manifest = json.dumps([{"Config": "config.json", "RepoTags": [], "Layers": layer_names}]).encode()
        found.extend([diff_ids[-1], sha256(config)])
        yield from tar_chunks(
            [
                Entry(name="config.json", size=len(config), data=config),
                Entry(name="manifest.json", size=len(manifest), data=manifest),
            ]
        )

    _load_archive(archive(), "docker load of the arriving model layer")
    diff_id, image_id = found
    _remember_chains(chain_ids([*base, diff_id])[len(base) :], image_id, cache_dir)
    return image_id, diff_id


def _preload_config(diff_ids: list[str], platform: dict[str, str]) -> bytes:
    owner = {PRELOAD_LABEL: f"{socket.gethostname()}-{os.getpid()}"}
    return json.dumps(
        {**platform, "config": {"Labels": owner}, "rootfs": {"type": "layers", "diff_ids": diff_ids}},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


PRELOAD_LABEL = "io.shipway.preload"
"""On the images :func:`preload` loads: the host and process that own it."""


EngineImages = list[dict[str, Any]]
"""The engine's image summaries (``GET /images/json``: Id, RepoTags, RepoDigests, Labels, ...)."""


def engine_images() -> EngineImages:
    """One listing of the engine's images, for the clean-ups after a run to share: on an engine that
    holds thousands of images (a long-lived runner) each listing costs the engine a fifth of a second.
    Empty when the engine cannot be asked (the clean-ups are best effort)."""
    try:
        return list(dockerutil.client().api.images())
    except (BackendError, docker.errors.DockerException, requests.RequestException):
        return []


def remove_abandoned_preloads(listing: EngineImages) -> None:
    """Remove preloaded images whose run was killed on this host (normally each run removes its own)."""
    for img in listing:
        host, _, pid = str((img.get("Labels") or {}).get(PRELOAD_LABEL, "")).rpartition("-")
        if pid.isdigit() and journal.gone(host, int(pid)):
            drop(str(img["Id"]))


_HELD_PREFIX = "held-by-"
HOLD_SECONDS = 3600
"""How long a run's hold counts at most: it needs to last from the load until its verify container
starts; an older hold is one a killed run left (on another host sharing the engine, it cannot be asked)."""


def held_tag(repository: str, image_id: str, pid: int | None = None, since: float | None = None) -> str:
    """The tag that says run ``pid`` (this one) of this host holds ``image_id`` since ``since`` (now)."""
    stamp = int(time.time() if since is None else since)
    return f"{repository}:{_HELD_PREFIX}{journal.tag_host()}-{pid or os.getpid()}-{stamp}-{image_id[7:19]}"


def _held(tags: list[str]) -> bool:
    """Whether a run that has not ended holds the image: a ``held-by-<host>-<pid>-<since>-<id>`` tag,
    younger than :data:`HOLD_SECONDS`, whose process (on this host) still runs."""
    for tag in tags:
        name = tag.rpartition(":")[2]
        parts = name.removeprefix(_HELD_PREFIX).rsplit("-", 3)
        if not name.startswith(_HELD_PREFIX) or len(parts) != 4 or not (parts[1] + parts[2]).isdigit():
            continue
        host, pid, since = parts[0], int(parts[1]), int(parts[2])
        ended = host == journal.tag_host() and journal.gone(socket.gethostname(), pid)
        if not ended and time.time() - since < HOLD_SECONDS:
            return True
    return False


def release_held(image_id: str) -> None:
    """Remove this run's hold on ``image_id`` (the tag :func:`load` gave it)."""
    try:
        tags = dockerutil.client().images.get(image_id).tags
    except (docker.errors.DockerException, requests.RequestException):
        return
    mine = f":{_HELD_PREFIX}{journal.tag_host()}-{os.getpid()}-"
    for tag in tags:
        if mine in tag and tag.endswith(f"-{image_id[7:19]}"):
            drop(tag)


def prune_app_images(app: str, keep: int, current: str, repository: str, listing: EngineImages) -> list[str]:
    """Delete this app's older images from the engine: all but the ``keep`` newest (``current``, the
    image just built, always among them); returns the IDs of the images the engine deleted.

    Each final image holds its model layer, so a runner that builds often (a
    new model version, a 1 GiB layer, each time) would otherwise fill its
    disk. The app's images are those labelled ``io.shipway.app=<app>`` whose
    only names are shipway's (``shipway/<app>:<tag>``, and ``repository@digest``
    as a local release pulls them); one a user named is left alone. Newest
    means by the date the image says it was made (the later of its commit's
    and its model's, :func:`shipway.labels.source_date`): ``docker load``
    records no load time. An image a container uses (a release, a stopped
    revision kept for rollback, another run's verify) is left as it is, its
    names included, and so is one
    a run that has not ended loaded (another run of the app on this engine,
    between its load and its verify: :func:`held_tag`); the
    registry keeps every image, and the chain index (:func:`present_chains`)
    notices what is gone. ``listing``: :func:`engine_images`, read once for
    every clean-up after a run.
    """
    app_ids = [str(img["Id"]) for img in listing if (img.get("Labels") or {}).get(labels.APP) == app]
    if len(app_ids) <= max(keep, 1):
        return []  # nothing to delete: no need to ask the engine more
    try:
        client = dockerutil.client()
        used = {str(c.get("ImageID")) for c in client.api.containers(all=True)}
        found = []
        for image_id in app_ids:
            with contextlib.suppress(docker.errors.ImageNotFound):  # gone since the listing
                found.append(client.images.get(image_id))
    except (BackendError, docker.errors.DockerException, requests.RequestException):
        return []
    ours = [
        img
        for img in found
        if all(tag.startswith(f"shipway/{app}:") for tag in img.tags)
        and all(name.startswith(f"{repository}@") for name in img.attrs.get("RepoDigests") or [])
    ]
    ours.sort(key=lambda img: (_when(img.attrs.get("Created")), str(img.id)), reverse=True)
    older = [img for img in ours if img.id != current][max(keep - 1, 0) :]
    older = [img for img in older if not _held(img.tags) and img.id not in used]  # in use: keeps its names too
    deleted = []
    for img in older:
        # By each name in turn: removing the last one deletes the image, unless a container uses it.
        for name in [*img.tags, *(img.attrs.get("RepoDigests") or [])] or [str(img.id)]:
            with contextlib.suppress(docker.errors.DockerException, requests.RequestException):
                client.images.remove(name, noprune=False)
        try:
            client.images.get(str(img.id))
        except docker.errors.ImageNotFound:
            deleted.append(str(img.id))
        except (docker.errors.DockerException, requests.RequestException):
            pass
    return deleted


def _when(value: object) -> datetime:
    """An engine's RFC 3339 time (any fraction and offset; the year 1 when unset or unreadable)."""
    stamp = str(value or "")
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", stamp)
    if match is None:
        return datetime.min.replace(tzinfo=UTC)
    whole, fraction, zone = match.groups()
    micro = (fraction or ".0")[1:7].ljust(6, "0")
    return datetime.fromisoformat(f"{whole}.{micro}{'+00:00' if zone == 'Z' else zone}")


def drop(image_id: str) -> None:
    """Remove an image shipway loaded for itself (no error if it is gone or still in use)."""
    with contextlib.suppress(docker.errors.DockerException, requests.RequestException):
        dockerutil.client().images.remove(image_id, noprune=False)


def sha256_stream(chunks: Iterable[bytes]) -> tuple[str, int]:
    """(digest, size) of a byte stream."""
    h = hashlib.sha256()
    n = 0
    for chunk in chunks:
        h.update(chunk)
        n += len(chunk)
    return "sha256:" + h.hexdigest(), n


__all__ = ["AppImage", "Assembly", "SavedImage", "assemble", "base_layers", "load", "model_position", "save"]
