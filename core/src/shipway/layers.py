"""Deterministic tar streams: the model layer shipway writes, build contexts, image archives.

Every tar written here is a pure function of its entries: names sorted,
fixed owner (0:0, no user or group names), fixed modes, one mtime for every
entry, PAX headers only where USTAR cannot hold a name or size, and exactly
two zero blocks at the end (no record padding). So the same model files give
the same layer digest on any machine, with any cache, at any time.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import tarfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shipway.domain import ModelFile, ModelVersion
from shipway.errors import BuildFailed

CHUNK = 1 << 20
BLOCK = 512
LAYER_FORMAT = "shipway-model-layer/1"
"""Changes whenever the bytes of the model layer would change for the same files."""

DIR_MODE = 0o755
FILE_MODE = 0o644
EXEC_MODE = 0o755


@dataclass(frozen=True)
class Entry:
    """One tar entry: a directory, a regular file (read from ``source`` or ``data``) or a symlink."""

    name: str
    kind: str = "file"  # "file", "dir" or "symlink"
    size: int = 0
    mode: int = FILE_MODE
    source: Path | None = None
    data: bytes | None = None
    opener: Callable[[], Iterable[bytes]] | None = field(default=None, compare=False)
    linkname: str = ""

    def header(self, mtime: int) -> bytes:
        info = tarfile.TarInfo(self.name)
        info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE}[self.kind]
        info.mode = self.mode
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = mtime
        info.size = self.size if self.kind == "file" else 0
        info.linkname = self.linkname
        return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")

    def chunks(self) -> Iterator[bytes]:
        if self.kind != "file":
            return
        if self.data is not None:
            yield self.data
            return
        if self.opener is not None:
            yield from self.opener()
            return
        assert self.source is not None
        with self.source.open("rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def tar_size(entries: Iterable[Entry], mtime: int = 0) -> int:
    """The exact byte length of :func:`tar_chunks` for these entries."""
    total = 2 * BLOCK
    for e in entries:
        total += len(e.header(mtime))
        if e.kind == "file":
            total += e.size + len(_padding(e.size))
    return total


def tar_chunks(entries: Iterable[Entry], mtime: int = 0, end: bool = True) -> Iterator[bytes]:
    """The tar stream of ``entries`` in the order given; a file whose size changed is an error.

    ``end=False`` leaves out the two zero blocks that end the archive (more entries follow).
    """
    for e in entries:
        yield e.header(mtime)
        if e.kind != "file":
            continue
        written = 0
        for chunk in e.chunks():
            written += len(chunk)
            yield chunk
        if written != e.size:
            raise BuildFailed(f"{e.name}: {written} bytes read, {e.size} expected (the file changed while read)")
        yield _padding(e.size)
    if end:
        yield b"\0" * (2 * BLOCK)


def sort_key(name: str) -> tuple[str, ...]:
    """Parents before children, siblings by name: the order every tar here is written in."""
    return tuple(name.rstrip("/").split("/"))


def with_parents(files: list[Entry], prefix: str = "") -> list[Entry]:
    """``files`` plus an entry for every directory above them (under ``prefix`` too), sorted."""
    dirs: set[str] = set()
    for e in files:
        parts = e.name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    if prefix:
        parts = prefix.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    names = {e.name for e in files}
    out = [Entry(name=d, kind="dir", mode=DIR_MODE) for d in dirs if d not in names]
    return sorted(out + files, key=lambda e: sort_key(e.name))


@dataclass(frozen=True)
class ModelLayer:
    """The model files as one uncompressed layer at ``target`` (absolute path in the image)."""

    target: str
    entries: tuple[Entry, ...]
    digest: str
    size: int
    key: str = ""
    """:func:`layer_key` of the files and folder."""

    def chunks(self) -> Iterator[bytes]:
        return tar_chunks(self.entries)


ModelFiles = Mapping[str, Path] | Path
"""Where a model's files are: path in the version → a file (the store's verified cache), or one folder."""


def model_entries(model: ModelVersion, files: ModelFiles, target: str) -> list[Entry]:
    """Tar entries for the model's files under ``target`` (an absolute folder in the image)."""
    out = []
    for f, name in _named(model, target):
        source = files / f.path if isinstance(files, Path) else files[f.path]
        size = source.stat().st_size
        if size != f.size:
            raise BuildFailed(f"model file {source}: {size} bytes, the manifest says {f.size}")
        out.append(Entry(name=name, size=f.size, mode=FILE_MODE, source=source))
    return with_parents(out, prefix=target.strip("/"))


def streamed_entries(
    model: ModelVersion, target: str, opener: Callable[[ModelFile], Callable[[], Iterable[bytes]]]
) -> list[Entry]:
    """The entries of :func:`model_entries`, each file's bytes from ``opener(file)`` (files still arriving)."""
    out = [Entry(name=name, size=f.size, mode=FILE_MODE, opener=opener(f)) for f, name in _named(model, target)]
    return with_parents(out, prefix=target.strip("/"))


def _named(model: ModelVersion, target: str) -> list[tuple[ModelFile, str]]:
    root = target.strip("/")
    out = []
    for f in sorted(model.files, key=lambda f: f.path):
        rel = posixpath.normpath(f.path)
        if rel.startswith("../") or posixpath.isabs(rel):
            raise BuildFailed(f"model file {f.path!r} is outside the model folder")
        out.append((f, f"{root}/{rel}" if root else rel))
    return out


def model_target(workdir: str, into: str) -> str:
    """``model.into`` as an absolute folder in the image (relative paths start at the WORKDIR)."""
    return posixpath.normpath(posixpath.join("/", workdir or "/", into))


def layer_key(model: ModelVersion, target: str) -> str:
    """What the model layer's bytes depend on, hashed: the layer format, the folder, every file's path, size
    and sha256. The local index and the registry's model tag (:func:`shipway.inputs.model_tag`) use it."""
    return hashlib.sha256(json.dumps(_key_body(model, target), sort_keys=True).encode()).hexdigest()


def _key_body(model: ModelVersion, target: str) -> dict[str, object]:
    return {
        "format": LAYER_FORMAT,
        "target": target,
        "files": sorted((f.path, f.size, f.sha256) for f in model.files),
    }


def _index(cache_dir: Path, key: str) -> Path:
    return cache_dir / "model-layers" / f"{key}.json"


def known_layer(model: ModelVersion, target: str, cache_dir: Path) -> str | None:
    """The model layer's digest from the cache index, when these files were tarred at ``target`` before."""
    index = _index(cache_dir, layer_key(model, target))
    try:
        return str(json.loads(index.read_text())["digest"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember_layer(model: ModelVersion, target: str, digest: str, size: int, cache_dir: Path) -> None:
    """Record the digest of the model layer of these files at ``target`` (only ever a digest of its bytes)."""
    index = _index(cache_dir, layer_key(model, target))
    index.parent.mkdir(parents=True, exist_ok=True)
    tmp = index.with_suffix(f".{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps({"digest": digest, "size": size, **_key_body(model, target)}))
    tmp.replace(index)


def model_layer(
    model: ModelVersion, files: ModelFiles, target: str, cache_dir: Path, stop: threading.Event | None = None
) -> ModelLayer:
    """The model layer, its digest from the cache index when these files were tarred before.

    The index key (:func:`layer_key`) covers everything the bytes depend on,
    each file's sha256 verified by the store's fetch, so a hit is exact and
    saves reading the model once more. ``stop`` set: the read ends early with
    BuildFailed (nobody wants the digest any more).
    """
    entries = tuple(model_entries(model, files, target))
    key = layer_key(model, target)
    index = _index(cache_dir, key)
    size = tar_size(entries)
    if index.is_file():
        found = json.loads(index.read_text())
        if found.get("size") == size:
            return ModelLayer(target=target, entries=entries, digest=found["digest"], size=size, key=key)
    digest = hashlib.sha256()
    for chunk in tar_chunks(entries):
        if stop is not None and stop.is_set():
            raise BuildFailed("the model layer's digest was no longer needed")
        digest.update(chunk)
    layer = ModelLayer(target=target, entries=entries, digest="sha256:" + digest.hexdigest(), size=size, key=key)
    remember_layer(model, target, layer.digest, size, cache_dir)
    return layer
