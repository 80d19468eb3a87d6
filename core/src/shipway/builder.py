"""Building the one image that holds the app's code and its model.

Two ways, chosen by ``build.model_layer`` (default ``auto``):

- ``shipway`` (fast path): the app image is built WITHOUT the model (the
  context is the app folder filtered by ``.dockerignore``, streamed, never
  copied); shipway writes the model layer itself (a deterministic,
  uncompressed tar at ``model.into`` resolved against the image's WORKDIR) and
  assembles the final image: base layers, model layer, the app's other layers.
- ``dockerfile`` (slow path, for Dockerfiles that ``COPY`` the model): the
  fetched model is part of the context and the Dockerfile places it.

``auto`` takes the Dockerfile path when the Dockerfile copies ``model.into``,
else the fast path. The app image's layers leave the engine by a push to the
staging registry (:mod:`shipway.staging`, only layers never sent before) or by
``docker save`` (every layer; ``build.export``). Either way the final config is rewritten to be
reproducible and to carry shipway's labels, and loaded into the engine, so the
image verify runs is byte for byte the image that is pushed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import docker.errors

from shipway import context as ctx
from shipway import dockerfile as df
from shipway import dockerutil, image, inputs, staging
from shipway.config import LoadedConfig
from shipway.domain import ModelVersion
from shipway.early_layer import EarlyLayer
from shipway.errors import BackendError, BuildFailed
from shipway.layers import FILE_MODE, Entry, ModelFiles, ModelLayer, model_layer, model_target, tar_chunks
from shipway.progress import Reporter
from shipway.wheelhouse import prepare as prepare_wheelhouse

Mode = Literal["shipway", "dockerfile"]


@dataclass
class BuildPlan:
    """Everything a build depends on, known before anything is built."""

    mode: Mode
    dockerfile: str
    args: dict[str, str]
    stages: list[df.Stage]
    base: str | None
    base_ids: dict[str, str]
    entries: list[Entry]
    context_digest: str
    mtime: int
    inputs: str
    parts: dict[str, Any] = field(default_factory=dict)


@dataclass
class BuiltImage:
    """The final image, loaded in the engine: its ID (= config digest), diff IDs, and how to push it."""

    image_id: str
    layers: list[str]
    assembly: image.Assembly
    model_layer: str | None = None
    model_key: str | None = None
    """:func:`shipway.layers.layer_key` of the model layer (its registry tag: :func:`shipway.inputs.model_tag`)."""
    loaded_bytes: int = 0
    log: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    """Where the build stage's time went: docker build, export, model layer, docker load."""
    exported_bytes: int = 0
    """Layer bytes that left the engine to be assembled (a push sends only layers it never sent)."""

    predicted: bool = False
    """Whether the model layer was written while the engine built (the WORKDIR was predicted right)."""

    preloaded: bool = False
    """Whether the engine took the model layer (on the base's layers) while it built the app."""

    def describe(self) -> str:
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        early = "; model layer written during docker build" if self.predicted else ""
        early += " and loaded alongside it" if self.preloaded else ""
        moved = f"{self.exported_bytes / 1e6:.1f} MB out of the engine, {self.loaded_bytes / 1e6:.1f} MB into it"
        return f"{steps}; {moved}{early}"

    def cleanup(self) -> None:
        self.assembly.app.cleanup()


def build_args(loaded: LoadedConfig, model: ModelVersion, commit: str) -> dict[str, str]:
    """Build args every shipway build passes (none of them a secret)."""
    args = {
        "SHIPWAY_COMMIT": commit,
        "SHIPWAY_MODEL_NAME": model.name,
        "SHIPWAY_MODEL_VERSION": model.version,
        "SHIPWAY_MODEL_DIGEST": model.digest,
    }
    if loaded.config.build.base_image:
        args["BASE_IMAGE"] = loaded.config.build.base_image
    args.update(loaded.config.build.args)
    return args


def _mode(loaded: LoadedConfig, stages: list[df.Stage]) -> Mode:
    chosen = loaded.config.build.model_layer
    if chosen == "auto":
        return "dockerfile" if df.copies_path(stages, loaded.config.model.into) else "shipway"
    return chosen


def _base_ids(stages: list[df.Stage]) -> dict[str, str]:
    client = dockerutil.client()
    out = {}
    for name in df.external_bases(stages):
        try:
            out[name] = str(client.images.get(name).id)
        except docker.errors.ImageNotFound:
            out[name] = "not in the engine"
        except docker.errors.APIError as exc:
            raise BuildFailed(f"cannot inspect base image {name}: {exc.explanation or exc}") from None
    return out


def plan(
    loaded: LoadedConfig,
    model: ModelVersion,
    commit: str,
    labels: dict[str, str],
    mtime: int,
    cache_dir: Path,
    reporter: Reporter,
) -> BuildPlan:
    """Read the Dockerfile, list the context, and compute the inputs digest (no build, no model bytes)."""
    cfg = loaded.config
    context = loaded.context
    dockerfile_path = context / cfg.app.dockerfile
    if not dockerfile_path.is_file():
        raise BuildFailed(f"app.dockerfile: {dockerfile_path} not found")
    args = build_args(loaded, model, commit)
    stages = df.parse(dockerfile_path.read_text(), args)
    if not stages:
        raise BuildFailed(f"app.dockerfile: {dockerfile_path} has no FROM")
    mode = _mode(loaded, stages)
    exclude = [cfg.model.into]
    wheels: list[Entry] = []
    if cfg.build.wheelhouse:
        exclude.append(cfg.build.wheelhouse.into)
        found = prepare_wheelhouse(cfg.build.wheelhouse, context, cache_dir, reporter)
        wheels = ctx.tree_entries(found, cfg.build.wheelhouse.into)
    entries = ctx.merge(ctx.app_entries(context, cfg.app.dockerfile, exclude), wheels)
    context_digest = ctx.digest(entries, mtime, cache_dir)
    base_ids = _base_ids(stages)
    parts: dict[str, Any] = {
        "commit": commit,
        "model": model.digest,
        "model_into": cfg.model.into,
        "mode": mode,
        "context": context_digest,
        "dockerfile": cfg.app.dockerfile,
        "args": args,
        "bases": base_ids,
        "labels": labels,
        "mtime": mtime,
        # What "verified" meant for this build: the checks and how the app was run.
        "verify": [c.model_dump(mode="json") for c in cfg.verify],
        "app": {"port": cfg.app.port, "health": cfg.app.health, "env": cfg.app.env},
    }
    return BuildPlan(
        mode=mode,
        dockerfile=cfg.app.dockerfile,
        args=args,
        stages=stages,
        base=df.final_base(stages),
        base_ids=base_ids,
        entries=entries,
        context_digest=context_digest,
        mtime=mtime,
        inputs=inputs.digest(parts),
        parts=parts,
    )


def _docker_build(
    loaded: LoadedConfig,
    bp: BuildPlan,
    entries: list[Entry],
    tag: str,
    reporter: Reporter,
    stop: threading.Event | None = None,
) -> str:
    client = dockerutil.client()
    log: list[str] = []
    image_id = None
    try:
        stream = client.api.build(
            fileobj=tar_chunks(entries, bp.mtime),
            custom_context=True,
            dockerfile=bp.dockerfile,
            tag=tag,
            buildargs=bp.args,
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
            timeout=int(loaded.config.build.timeout),
        )
        for event in stream:
            if stop is not None and stop.is_set():
                raise BuildFailed("docker build stopped: the run failed while the engine built")
            if "stream" in event:
                line = event["stream"].rstrip()
                if line:
                    log.append(line)
                    if line.startswith("Step "):
                        reporter.info("  " + line.splitlines()[0][:110])
            if "error" in event:
                tail = "\n".join(log[-15:])
                step = next((line.splitlines()[0] for line in reversed(log) if line.startswith("Step ")), "")
                at = f" at {bp.dockerfile} {step}" if step else f" ({bp.dockerfile})"
                raise BuildFailed(f"docker build failed{at}: {event['error'].strip()}\n{tail}")
            aux = event.get("aux")
            if isinstance(aux, dict) and "ID" in aux:
                image_id = aux["ID"]
    except docker.errors.APIError as exc:
        raise BuildFailed(f"docker build failed: {exc.explanation or exc}") from None
    if image_id is None:
        image_id = client.images.get(tag).id
    return str(image_id)


class AppBuild:
    """``docker build`` of the app image in a thread, started before the model is fetched.

    On the fast path the context holds no model byte, so the engine can build
    while the store downloads and verifies the model. A failed fetch cancels
    it (it stops at the engine's next message; a CLI run that exits closes the
    connection, which stops the engine's build).
    """

    def __init__(self, loaded: LoadedConfig, bp: BuildPlan, reporter: Reporter) -> None:
        self._stop = threading.Event()
        self._image_id: str | None = None
        self._error: BaseException | None = None
        self.seconds = 0.0
        self.finished = threading.Event()
        """Set when the engine has finished (or failed) the build."""
        tag = f"shipway/{loaded.config.app.name}:app"
        self._thread = threading.Thread(
            target=self._run, args=(loaded, bp, tag, reporter), daemon=True, name="shipway-docker-build"
        )
        self._thread.start()

    def _run(self, loaded: LoadedConfig, bp: BuildPlan, tag: str, reporter: Reporter) -> None:
        start = time.monotonic()
        try:
            self._image_id = _docker_build(loaded, bp, bp.entries, tag, reporter, self._stop)
        except BaseException as exc:  # noqa: BLE001 - re-raised by result()
            self._error = exc
        self.seconds = time.monotonic() - start
        self.finished.set()

    def result(self) -> str:
        """The app image's ID, once the engine has built it (raises what the build raised)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._image_id is not None
        return self._image_id

    def cancel(self) -> None:
        self._stop.set()


def start_app_build(loaded: LoadedConfig, bp: BuildPlan, reporter: Reporter) -> AppBuild | None:
    """Start ``docker build`` now when the model is not part of the context (the fast path), else None."""
    return AppBuild(loaded, bp, reporter) if bp.mode == "shipway" else None


def _own_layers(app_layers: list[str], base: list[str] | None) -> int:
    """Index of the first layer the Dockerfile made (above the base's), or past the end if unknown."""
    if base is not None and app_layers[: len(base)] == base:
        return len(base)
    return len(app_layers)


def export(app_id: str, how: str, app: str, cache_dir: Path, reporter: Reporter) -> tuple[image.AppImage, str, int]:
    """Take the app image out of the engine: (the image, how it was taken, layer bytes that left the engine).

    ``auto`` pushes to the staging registry once this cache has built on this
    engine before: the first push compresses every layer (the engine has never
    sent them there), later ones only new layers. A first build on an engine
    (every build of a hosted CI runner) is cheaper with ``docker save``. An
    engine whose push failed (it cannot reach this machine's loopback) is
    remembered and not pushed to again with this cache.
    """
    image.remove_abandoned_spools(cache_dir / "spool")
    root = cache_dir / "staging"
    engine = staging.engine_id()
    way = staging.way_for(root, engine)
    use = how
    if how == "auto":
        use = "push" if way == "push" and staging.engine_is_local() else "save"
    if use == "push":
        try:
            staged = staging.export(app_id, root, app)
            staging.remember_way(root, engine, "push")
            return staged, "push", staged.received
        except BackendError as exc:
            if how == "push":
                raise BuildFailed(f"build.export push: {exc}") from None
            reporter.info(f"  {exc}; taking the layers with docker save (now and from now on with this cache)")
            staging.remember_way(root, engine, "save")
    elif how == "auto" and way is None:
        staging.remember_way(root, engine, "push")  # the first build here: the next one pushes
    saved = image.save(app_id, cache_dir / "spool")
    return saved, "save", sum(saved.sizes)


def model_context_entries(model: ModelVersion, files: ModelFiles, into: str) -> list[Entry]:
    """The model's files at ``into`` in the build context (the Dockerfile path), read where they are."""
    under = into.strip("/")
    return [
        Entry(
            name=f"{under}/{f.path}",
            size=f.size,
            mode=FILE_MODE,
            source=files / f.path if isinstance(files, Path) else files[f.path],
        )
        for f in sorted(model.files, key=lambda f: f.path)
    ]


def build(
    loaded: LoadedConfig,
    bp: BuildPlan,
    model: ModelVersion,
    model_files: ModelFiles,
    labels: dict[str, str],
    created: str,
    tag: str,
    cache_dir: Path,
    reporter: Reporter,
    on_assembled: Callable[[image.Assembly], None] | None = None,
    app_build: AppBuild | None = None,
    early: EarlyLayer | None = None,
) -> BuiltImage:
    """Build the app image, add the model layer (fast path), load the final image into the engine.

    ``app_build``: the engine's build of the app image, already under way
    (:func:`start_app_build`); ``early``: the model layer's digest and preload,
    under way since the model stage began (:func:`start_early_layer`); this
    call cancels it when it ends. ``on_assembled`` is called once the final
    image is known, before it is loaded: the engine starts uploading its
    blobs then, alongside the load.
    """
    cfg = loaded.config
    app_tag = f"shipway/{cfg.app.name}:app"
    entries = bp.entries
    if bp.mode == "dockerfile":
        entries = ctx.merge(entries, model_context_entries(model, model_files, cfg.model.into))
    seconds: dict[str, float] = {}
    preloaded = False
    try:
        start = time.monotonic()
        if app_build is not None:
            app_id = app_build.result()
            seconds["docker build"] = app_build.seconds
        else:
            app_id = _docker_build(loaded, bp, entries, app_tag, reporter)
            seconds["docker build"] = time.monotonic() - start
        start = time.monotonic()
        base = image.base_layers(bp.base)
        app, how, exported = export(app_id, cfg.build.export, cfg.app.name, cache_dir, reporter)
        seconds[f"export ({how})"] = time.monotonic() - start
        try:
            start = time.monotonic()
            layer = _model_layer(loaded, bp, model, model_files, app, early, cache_dir)
            position = image.model_position(app.diff_ids, base) if layer else None
            if layer and position == len(app.diff_ids) and app.diff_ids:
                reporter.info("  base image layers not found below the app's: the model layer goes on top")
            assembly = image.assemble(
                app,
                layer,
                position,
                _history_length(bp.base),
                created,
                labels,
                tag=f"shipway/{cfg.app.name}:{tag}",
                description=(
                    f"shipway: model {model.name}:{model.version} ({model.digest[:19]}) at {layer.target}"
                    if layer
                    else ""
                ),
                compress_from=_own_layers(app.diff_ids, base),
                cache_dir=cache_dir,
            )
            seconds["model layer"] = time.monotonic() - start
            if on_assembled is not None:
                on_assembled(assembly)
            predicted = False
            if early is not None and layer is not None and early.target() == layer.target:
                predicted = True
                # The model's chain is (being) loaded: wait for it, then send only the layers above.
                preloaded = early.preloaded() and position == early.base_count
                if early.base_wait_seconds:
                    seconds["wait for the base"] = early.base_wait_seconds
                seconds["model preload"] = early.preload_seconds
                if early.preload_error:
                    reporter.info(f"  the model's preload failed ({early.preload_error}); the final load sends it")
            start = time.monotonic()
            sent = image.load(assembly, cache_dir)
            seconds["docker load"] = time.monotonic() - start
        except BaseException:
            app.cleanup()
            raise
    finally:
        if early is not None:
            early.cancel()  # a failed build does not wait for (or keep reading) the model; the preload goes
    return BuiltImage(
        image_id=assembly.image.local_id,
        layers=[b.digest for b in assembly.image.layers],
        assembly=assembly,
        model_layer=layer.digest if layer else None,
        model_key=layer.key if layer else None,
        loaded_bytes=sent,
        seconds=seconds,
        exported_bytes=exported,
        predicted=predicted,
        preloaded=preloaded,
    )


def _model_layer(
    loaded: LoadedConfig,
    bp: BuildPlan,
    model: ModelVersion,
    model_files: ModelFiles,
    app: image.AppImage,
    early: EarlyLayer | None,
    cache_dir: Path,
) -> ModelLayer | None:
    """The model layer at ``model.into`` under the built image's WORKDIR (None on the Dockerfile path).

    Its digest comes from the layer index, where the early layer put it when it predicted this folder.
    """
    if bp.mode != "shipway":
        return None
    workdir = (json.loads(app.config).get("config") or {}).get("WorkingDir") or "/"
    target = model_target(workdir, loaded.config.model.into)
    if early is not None:
        if early.target() == target:
            early.result()  # wait for its digest (None: it could not take one; read the verified files)
        else:
            early.cancel()  # predicted wrong (or not at all): stop that read now rather than wait for it
    return model_layer(model, model_files, target, cache_dir)


def start_early_layer(
    loaded: LoadedConfig,
    bp: BuildPlan,
    model: ModelVersion,
    cache_dir: Path,
    fetched: threading.Event,
    app_build: AppBuild | None,
) -> EarlyLayer | None:
    """Start the model layer's digest and preload as the store fetches the model (the fast path only)."""
    if bp.mode != "shipway" or app_build is None:
        return None
    return EarlyLayer(
        stages=bp.stages,
        base=bp.base,
        into=loaded.config.model.into,
        model=model,
        cache_dir=cache_dir,
        fetched=fetched,
        built=app_build.finished,
    )


def _history_length(base: str | None) -> int:
    """How many history entries the base image has (they keep their dates)."""
    if not base:
        return 0
    try:
        return len(dockerutil.client().api.history(base))
    except docker.errors.APIError:
        return 0
