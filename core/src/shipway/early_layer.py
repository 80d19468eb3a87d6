"""The model layer made while the engine builds the app (the fast path).

The layer's digest takes a read of the whole model, and the engine's own
load of it (a ``docker load`` of the base's layers plus the model layer:
the chain the final image will have) takes longer still. Both run in one
daemon thread while ``docker build`` installs the app's dependencies, so the
final load sends only the layers above the model.

Both need the base image: its ``WORKDIR`` (when the Dockerfile's own does not
fix the model's folder) and its layers. A fresh runner's build pulls the base
first; the thread waits for it to appear in the engine, for as long as the
build runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from shipway import dockerfile as df
from shipway import image
from shipway.domain import ModelVersion
from shipway.layers import ModelFiles, ModelLayer, model_layer, model_target

T = TypeVar("T")

BASE_POLL_SECONDS = 0.2
"""How often the thread looks for a base image that the engine's build is still pulling."""


def predict_target(
    stages: list[df.Stage], base: str | None, into: str, built: threading.Event, stop: threading.Event
) -> tuple[str | None, float]:
    """(the model's folder in the final image or None when it cannot be told before the build ends,
    seconds spent waiting for the base image). The base is needed only when the Dockerfile's
    ``WORKDIR`` does not fix the folder by itself."""
    if df.final_workdir(stages, "/") is None:
        return None, 0.0  # a WORKDIR made of variables: only the built image tells
    workdir, waited = once_the_base_is_there(lambda: df.final_workdir(stages, image.base_workdir(base)), built, stop)
    return (model_target(workdir, into) if workdir is not None else None), waited


def once_the_base_is_there(
    look: Callable[[], T | None], built: threading.Event, stop: threading.Event
) -> tuple[T | None, float]:
    """(``look()`` once it finds something (the engine holds the base), seconds waited). Asked again every
    :data:`BASE_POLL_SECONDS` while the engine's build may still pull the base; None once the build ended
    (or ``stop`` was set) without it."""
    waited = 0.0
    while True:
        last_chance = built.is_set() or stop.is_set()  # read before looking: no missed end
        found = look()
        if found is not None or last_chance:
            return found, waited
        start = time.monotonic()
        stopped = stop.wait(BASE_POLL_SECONDS)
        waited += time.monotonic() - start
        if stopped:
            return None, waited


class EarlyLayer:
    """The model layer computed in a daemon thread at the folder the Dockerfile predicts, then loaded
    into the engine on the base's layers (:func:`image.preload`); cancelled, and the preload removed,
    when it is not (or no longer) wanted.

    ``built`` is set by the caller once the engine's build of the app is done:
    from then on the thread stops waiting for the base image. ``preload``:
    whether to load the layer at all (not when the app image was built before
    the model arrived: one final load then takes the model with the layers
    above it).
    """

    def __init__(
        self,
        *,
        stages: list[df.Stage],
        base: str | None,
        into: str,
        model: ModelVersion,
        files: ModelFiles,
        cache_dir: Path,
        built: threading.Event,
        preload: bool,
    ) -> None:
        self._stages = stages
        self._base = base
        self._into = into
        self._model = model
        self._files = files
        self._cache_dir = cache_dir
        self._built = built
        self._wants_preload = preload
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
        self._layer: ModelLayer | None = None
        self._error: BaseException | None = None
        self._preloaded: str | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="shipway-model-layer")
        self._thread.start()

    # -- the thread ------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._target = self._predict()
            self._predicted.set()
            if self._target is not None:
                self._layer = model_layer(self._model, self._files, self._target, self._cache_dir, self._stop)
        except BaseException as exc:  # noqa: BLE001 - re-raised by result()
            self._error = exc
            return
        finally:
            self._predicted.set()
            self._ready.set()
        if self._layer is not None and self._wants_preload:
            self._preload(self._layer)

    def _predict(self) -> str | None:
        """The model's folder in the final image, or None when shipway cannot tell before the build ends."""
        target, waited = predict_target(self._stages, self._base, self._into, self._built, self._stop)
        self.base_wait_seconds += waited
        return target

    def _preload(self, layer: ModelLayer) -> None:
        start = time.monotonic()
        try:
            base, waited = once_the_base_is_there(lambda: image.base_layers(self._base), self._built, self._stop)
            self.base_wait_seconds += waited
            platform = image.base_platform(self._base) if base is not None else None
            if base is None or platform is None:
                return
            self.base_count = len(base)
            start = time.monotonic()  # the load itself, not the wait for the base
            image_id = image.preload(base, layer, self._stop, platform=platform, cache_dir=self._cache_dir)
        except Exception as exc:  # noqa: BLE001 - the final load sends the model layer instead
            if not self._stop.is_set():
                self.preload_error = str(exc)
            return
        finally:
            self.preload_seconds = time.monotonic() - start
        if image_id is None:
            return  # the engine holds the model's chain already
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

    def result(self) -> ModelLayer:
        """The model layer (its digest known); the preload may still run."""
        self._ready.wait()
        if self._error is not None:
            raise self._error
        assert self._layer is not None
        return self._layer

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
