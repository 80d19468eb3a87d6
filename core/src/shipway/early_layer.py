"""The model layer made while the store downloads the model and the engine builds the app (the fast path).

The layer's digest takes a read of the whole model, and the engine's own
load of it (a ``docker load`` of the base's layers plus the model layer: the
chain the final image will have) takes longer still. Both run in one daemon
thread, started with the model stage, that reads the model's files as the
store's cache receives them (:mod:`shipway.arrival`): the engine takes the
layer while it downloads, and the final load sends only the layers above the
model. The digest counts (and goes into the layer index) only when every
file matched its manifest; otherwise the build takes it from the verified
files.

Both need the base image: its ``WORKDIR`` (when the Dockerfile's own does not
fix the model's folder) and its layers. A fresh runner's build pulls the base
first; the thread waits for it to appear in the engine, for as long as the
build runs.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from shipway import dockerfile as df
from shipway import image
from shipway.arrival import Arriving
from shipway.domain import ModelVersion
from shipway.errors import BuildFailed
from shipway.layers import ModelLayer, known_layer, model_target, remember_layer, tar_chunks, tar_size

T = TypeVar("T")

BASE_POLL_SECONDS = 0.2
"""How often the thread looks for a base image that the engine's build is still pulling."""


def predict_target(
    stages: list[df.Stage],
    base: str | None,
    into: str,
    built: threading.Event,
    stop: threading.Event,
    waited: Callable[[float], None] = lambda seconds: None,
) -> str | None:
    """The model's folder in the final image, or None when it cannot be told before the build ends.
    The base is needed only when the Dockerfile's ``WORKDIR`` does not fix the folder by itself
    (see :func:`once_the_base_is_there`)."""
    if df.final_workdir(stages, "/") is None:
        return None  # a WORKDIR made of variables: only the built image tells
    workdir = once_the_base_is_there(lambda: df.final_workdir(stages, image.base_workdir(base)), built, stop, waited)
    return model_target(workdir, into) if workdir is not None else None


def once_the_base_is_there(
    look: Callable[[], T | None],
    built: threading.Event,
    stop: threading.Event,
    waited: Callable[[float], None] = lambda seconds: None,
) -> T | None:
    """``look()`` once it finds something (the engine holds the base), asked again every
    :data:`BASE_POLL_SECONDS` while the engine's build may still pull the base; None once the build ended
    (or ``stop`` was set) without it. Each wait's seconds go to ``waited``."""
    while True:
        last_chance = built.is_set() or stop.is_set()  # read before looking: no missed end
        found = look()
        if found is not None or last_chance:
            return found
        start = time.monotonic()
        stopped = stop.wait(BASE_POLL_SECONDS)
        waited(time.monotonic() - start)
        if stopped:
            return None


class EarlyLayer:
    """The model layer's digest and its preload (the base's layers plus the model layer, loaded as an
    untagged image), made in a daemon thread at the folder the Dockerfile predicts, from the files as they
    arrive; cancelled, and the preload removed, when it is not (or no longer) wanted.

    The caller sets ``fetched`` when the store's fetch ended (done or failed)
    and ``built`` when the engine's build of the app ended: from then on the
    thread stops waiting for the base image.
    """

    def __init__(
        self,
        *,
        stages: list[df.Stage],
        base: str | None,
        into: str,
        model: ModelVersion,
        cache_dir: Path,
        fetched: threading.Event,
        built: threading.Event,
    ) -> None:
        self._stages = stages
        self._base = base
        self._into = into
        self._model = model
        self._cache_dir = cache_dir
        self._fetched = fetched
        self._built = built
        self.base_count = 0
        """How many base layers the preload put under the model."""
        self.preload_seconds = 0.0
        self.preload_error = ""
        self.base_wait_seconds = 0.0
        """How long the thread waited for the engine's build to pull the base image."""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._predicted = threading.Event()
        self._ready = threading.Event()
        self._target: str | None = None
        self._digest: str | None = None
        self._preloaded: str | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="shipway-model-layer")
        self._thread.start()

    # -- the thread ------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._target = predict_target(self._stages, self._base, self._into, self._built, self._stop, self._waited)
            self._predicted.set()
            if self._target is None:
                return
            known = known_layer(self._model, self._target, self._cache_dir)
            if known is not None:
                self._digest = known
                self._ready.set()
            self._make(self._target, known)
        except Exception as exc:  # noqa: BLE001 - the final load sends the model layer instead
            if not self._stop.is_set():
                self.preload_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        finally:
            self._predicted.set()
            self._ready.set()

    def _waited(self, seconds: float) -> None:
        self.base_wait_seconds += seconds

    def _arriving(self, target: str) -> Arriving:
        return Arriving(self._model, target, self._cache_dir, self._fetched, self._stop)

    def _make(self, target: str, known: str | None) -> None:
        """Take the digest (unless ``known``) and preload, in one read of the model when the engine holds
        the base already, else the digest first and the preload once the base is there."""
        base = image.base_layers(self._base)
        platform = image.base_platform(self._base) if base is not None else None
        if known is None and base is not None and platform is not None:
            arriving = self._arriving(target)
            start = time.monotonic()
            try:
                image_id, _ = image.preload_arriving(
                    base,
                    tar_chunks(arriving.entries),
                    tar_size(arriving.entries),
                    self._stop,
                    platform=platform,
                    cache_dir=self._cache_dir,
                    on_digest=lambda digest: self._digested(target, arriving, digest),
                )
            finally:
                self.preload_seconds = time.monotonic() - start
            self.base_count = len(base)
            self._keep(image_id)
            return
        if known is None:
            arriving = self._arriving(target)
            digest = hashlib.sha256()
            for chunk in tar_chunks(arriving.entries):
                digest.update(chunk)
            self._digested(target, arriving, "sha256:" + digest.hexdigest())
        assert self._digest is not None
        base = once_the_base_is_there(lambda: image.base_layers(self._base), self._built, self._stop, self._waited)
        platform = image.base_platform(self._base) if base is not None else None
        if base is None or platform is None:
            return
        entries = tuple(self._arriving(target).entries)
        layer = ModelLayer(target=target, entries=entries, digest=self._digest, size=tar_size(entries))
        start = time.monotonic()  # the load itself, not the wait for the base
        try:
            loaded = image.preload(base, layer, self._stop, platform=platform, cache_dir=self._cache_dir)
        finally:
            self.preload_seconds = time.monotonic() - start
        self.base_count = len(base)
        if loaded is not None:  # None: the engine holds the model's chain already
            self._keep(loaded)

    def _digested(self, target: str, arriving: Arriving, digest: str) -> None:
        """The layer's bytes were all read: their digest is the layer's if every file matched its manifest."""
        if arriving.mismatched:
            raise BuildFailed(
                f"model files did not match the manifest as they arrived: {', '.join(arriving.mismatched)}"
            )
        remember_layer(self._model, target, digest, tar_size(arriving.entries), self._cache_dir)
        self._digest = digest
        self._ready.set()

    def _keep(self, image_id: str) -> None:
        with self._lock:
            unwanted = self._stop.is_set()
            if not unwanted:
                self._preloaded = image_id
        if unwanted:
            image.drop(image_id)

    # -- the caller's side -------------------------------------------------------------
    def target(self) -> str | None:
        """The folder the layer is written at (None: not predicted, no layer is written)."""
        self._predicted.wait()
        return self._target

    def result(self) -> str | None:
        """The model layer's digest, once known (then also in the layer index); None when the thread could
        not take it (the build takes it from the verified files). The preload may still run."""
        self._ready.wait()
        return self._digest

    def preloaded(self) -> bool:
        """Wait for the preload; whether the engine now holds the model layer's chain."""
        self._thread.join()
        return self._preloaded is not None

    def cancel(self) -> None:
        """Stop reading the model (and waiting for the base); remove the preloaded image, if any."""
        with self._lock:
            self._stop.set()
            image_id, self._preloaded = self._preloaded, None
        if image_id is not None:
            image.drop(image_id)
