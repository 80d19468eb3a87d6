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

import threading
from pathlib import Path

from shipway import dockerfile as df
from shipway import inputs
from shipway.arrival import Arriving
from shipway.backends.base import Registry
from shipway.domain import ModelVersion
from shipway.early_layer import predict_target
from shipway.layers import layer_key, remember_layer, tar_chunks, tar_size


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
        self._target: str | None = None
        self._predicted = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(stages, base, into, built), daemon=True, name="shipway-model-stream"
        )
        self._thread.start()

    def _run(self, stages: list[df.Stage], base: str | None, into: str, built: threading.Event) -> None:
        try:
            target = self._target = predict_target(stages, base, into, built, self._stop)
            self._predicted.set()
            if target is None:
                self.skipped = "the model's folder is known only once the app is built"
                return
            tag = inputs.model_tag(layer_key(self._model, target))
            if self._registry.has_model_layer(tag):
                self.skipped = f"the registry holds this model layer ({tag})"
                return
            arriving = Arriving(self._model, target, self._cache_dir, self._fetched, self._stop)
            self._mismatched = arriving.mismatched
            size = tar_size(arriving.entries)
            self.digest = self._registry.stream_blob(tar_chunks(arriving.entries), size)
            self.sent = size
            if not self._mismatched:
                remember_layer(self._model, target, self.digest, size, self._cache_dir)
        except Exception as exc:  # noqa: BLE001 - the push sends the layer instead
            if not self._stop.is_set():
                self.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        finally:
            self._predicted.set()

    def keep_if(self, target: str) -> None:
        """Cancel the stream unless it writes the layer at ``target`` (the built image's model folder)."""
        self._predicted.wait()
        if self._target != target:
            self.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the stream ended (sent, skipped or failed), at most ``timeout`` s; whether it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def describe(self) -> str:
        """One line on what the stream did, for the push stage's report."""
        if self.error:
            return f"the model layer's early upload failed ({self.error}); the push took it the usual way"
        if self.skipped:
            return ""
        if self._mismatched:
            return f"{self.sent / 1e6:.1f} MB sent early did not match the manifest ({', '.join(self._mismatched)})"
        return f"{self.sent / 1e6:.1f} MB of it while the model downloaded"

    def cancel(self) -> None:
        """Stop following the download (an upload in flight is dropped; its blob names no image). The
        thread ends at its next read of the model; a registry request under way is not waited for long."""
        self._stop.set()
        self._thread.join(timeout=5)
