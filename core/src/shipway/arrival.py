"""The model's files read as the store's cache receives them.

A store downloads each file into a partial file of the content-addressed
cache, verifies it and renames it into place (:mod:`shipway.backends.blobcache`).
The readers here follow that partial file as it grows, so the model layer's
tar can be written, hashed, loaded into the engine and sent to the registry
while the download still runs. What they read is not verified yet: each file's
sha256 is taken on the way and reported, and a consumer trusts the result only
when every file matched its manifest.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from shipway.backends.blobcache import BlobCache
from shipway.domain import ModelFile, ModelVersion
from shipway.errors import BackendError
from shipway.layers import CHUNK, Entry, streamed_entries

POLL_SECONDS = 0.01
"""How often a file still being downloaded is read again for new bytes."""


class Abandoned(BackendError):
    """A read stopped before its end: the run stopped, or a file was not (or not wholly) fetched."""


def follow(final: Path, partial: Path, size: int, fetched: threading.Event, stop: threading.Event) -> Iterator[bytes]:
    """The ``size`` bytes of a cached file as they arrive: read from ``final`` when the cache holds it,
    else from ``partial`` as the download writes it (the open file survives its rename to ``final``).

    Abandoned when ``stop`` is set, when the download starts the file over
    (the partial was deleted), or when ``fetched`` is set (the fetch ended)
    and the bytes are not all there.
    """
    pos = 0
    handle: BinaryIO | None = None
    try:
        while pos < size:
            if stop.is_set():
                raise Abandoned("the model's read was no longer wanted")
            last_chance = fetched.is_set()  # read before looking: no missed end
            if handle is None:
                handle = _open_first(final, partial)
            chunk = handle.read(min(CHUNK, size - pos)) if handle is not None else b""
            if chunk:
                pos += len(chunk)
                yield chunk
                continue
            if handle is not None and os.fstat(handle.fileno()).st_nlink == 0:
                raise Abandoned(f"{final.name}: the download started over")
            if last_chance:
                raise Abandoned(f"{final.name}: {pos} of {size} bytes fetched")
            time.sleep(POLL_SECONDS)
    finally:
        if handle is not None:
            handle.close()


def _open_first(*paths: Path) -> BinaryIO | None:
    for path in paths:
        try:
            return path.open("rb")
        except FileNotFoundError:
            continue
    return None


class Arriving:
    """The model layer's tar entries for ``model`` at ``target``, each file read as it arrives in the cache
    at ``cache_dir``. ``mismatched`` lists the files whose bytes did not match the manifest (once read)."""

    def __init__(
        self,
        model: ModelVersion,
        target: str,
        cache_dir: Path,
        fetched: threading.Event,
        stop: threading.Event,
    ) -> None:
        self._cache = BlobCache(cache_dir)
        self._fetched = fetched
        self._stop = stop
        self.mismatched: list[str] = []
        self.entries: list[Entry] = streamed_entries(model, target, self._opener)

    def _opener(self, f: ModelFile) -> Callable[[], Iterable[bytes]]:
        def chunks() -> Iterator[bytes]:
            sha = hashlib.sha256()
            final, partial = self._cache.path(f.sha256), self._cache.partial_path(f.sha256)
            for chunk in follow(final, partial, f.size, self._fetched, self._stop):
                sha.update(chunk)
                yield chunk
            if sha.hexdigest() != f.sha256:
                self.mismatched.append(f.path)

        return chunks
