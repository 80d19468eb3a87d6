"""The model layer sent to the registry while the store still downloads the model.

Without it a new model version crosses the network twice, one after the
other: the store's download, then (once the image is built) the upload of the
model layer. The model layer is a pure function of the manifest's files and
its folder (:mod:`shipway.layers`), and a registry takes a blob whose digest
comes at the end of its upload (``POST``, a streamed ``PATCH``, ``PUT
?digest=``). So a thread writes the layer's tar from the files as they land in
the cache (following each partial file as it grows) and streams it to the
registry: the upload ends shortly after the download.

It runs only when the registry lacks the layer. The registry's model tag
(:func:`shipway.inputs.model_tag`, keyed by the files and the folder) says it
holds one, at the cost of one manifest request, so a code-only change on a
fresh runner still uploads no model byte.

The bytes sent are the bytes the store is writing, before the store verified
them. That is safe: the blob is named by the digest of what was sent and no
manifest names it unless that digest is the verified layer's (the push HEADs
the layer and sends it whole when it is not there). The index of layer
digests learns the streamed digest only when every file's sha256 matched the
manifest.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from shipway import dockerfile as df
from shipway import inputs
from shipway.backends.base import Registry
from shipway.backends.blobcache import BlobCache
from shipway.domain import ModelFile, ModelVersion
from shipway.early_layer import predict_target
from shipway.errors import BackendError
from shipway.layers import CHUNK, layer_key, remember_layer, streamed_entries, tar_chunks, tar_size

POLL_SECONDS = 0.01
"""How often a file still being downloaded is read again for new bytes."""


class Abandoned(BackendError):
    """The stream stopped before its end: the run stopped, or a file was not (or not wholly) fetched."""


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
                raise Abandoned("the model's upload was no longer wanted")
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


class ModelStream:
    """Streams the model layer to ``registry`` in a daemon thread while the store fetches ``model``.

    ``fetched`` is set by the caller when the fetch ended (done or failed);
    ``built`` when the engine's build of the app ended (the model's folder may
    depend on the base image's WORKDIR, which that build pulls).
    """

    def __init__(
        self,
        registry: Registry,
        model: ModelVersion,
        stages: list[df.Stage],
        base: str | None,
        into: str,
        cache_dir: Path,
        fetched: threading.Event,
        built: threading.Event,
    ) -> None:
        self._registry = registry
        self._model = model
        self._cache = BlobCache(cache_dir)
        self._cache_dir = cache_dir
        self._fetched = fetched
        self._stop = threading.Event()
        self._mismatched: list[str] = []
        self.sent = 0
        """Bytes the registry took from this stream."""
        self.digest: str | None = None
        """The digest of the blob sent (the model layer's when every file matched its manifest)."""
        self.skipped = ""
        """Why nothing was sent, when nothing was."""
        self.error = ""
        self._thread = threading.Thread(
            target=self._run, args=(stages, base, into, built), daemon=True, name="shipway-model-stream"
        )
        self._thread.start()

    def _run(self, stages: list[df.Stage], base: str | None, into: str, built: threading.Event) -> None:
        try:
            target, _ = predict_target(stages, base, into, built, self._stop)
            if target is None:
                self.skipped = "the model's folder is known only once the app is built"
                return
            tag = inputs.model_tag(layer_key(self._model, target))
            if self._registry.find(tag) is not None:
                self.skipped = f"the registry holds this model layer ({tag})"
                return
            entries = streamed_entries(self._model, target, self._opener)
            size = tar_size(entries)
            self.digest = self._registry.stream_blob(tar_chunks(entries), size)
            self.sent = size
            if not self._mismatched:
                remember_layer(self._model, target, self.digest, size, self._cache_dir)
        except Exception as exc:  # noqa: BLE001 - the push sends the layer instead
            if not self._stop.is_set():
                self.error = str(exc).splitlines()[0]

    def _opener(self, f: ModelFile) -> Callable[[], Iterable[bytes]]:
        def chunks() -> Iterator[bytes]:
            sha = hashlib.sha256()
            final, partial = self._cache.path(f.sha256), self._cache.partial_path(f.sha256)
            for chunk in follow(final, partial, f.size, self._fetched, self._stop):
                sha.update(chunk)
                yield chunk
            if sha.hexdigest() != f.sha256:
                self._mismatched.append(f.path)

        return chunks

    def wait(self) -> None:
        """Wait until the stream ended (sent, skipped or failed)."""
        self._thread.join()

    def done(self) -> bool:
        return not self._thread.is_alive()

    def describe(self) -> str:
        """One line on what the stream did, for the push stage's report."""
        if self.error:
            return f"the model layer's early upload failed ({self.error}); the push sent it"
        if self.skipped:
            return ""
        if self._mismatched:
            return f"{self.sent / 1e6:.1f} MB sent early did not match the manifest ({', '.join(self._mismatched)})"
        return f"{self.sent / 1e6:.1f} MB of it while the model downloaded"

    def cancel(self) -> None:
        """Stop following the download (an upload in flight is dropped; its blob names no image)."""
        self._stop.set()
        self._thread.join(timeout=30)


def start(
    registry: Registry,
    model: ModelVersion,
    stages: list[df.Stage],
    base: str | None,
    into: str,
    cache_dir: Path,
    fetched: threading.Event,
    built: threading.Event,
) -> ModelStream | None:
    """A :class:`ModelStream`, or None when the registry cannot stream a blob."""
    if not registry.streams_blobs:
        return None
    return ModelStream(registry, model, stages, base, into, cache_dir, fetched, built)
