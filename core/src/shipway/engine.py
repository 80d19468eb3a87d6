"""The engine: `run` (test → model → build → verify → push) and `release`.

It owns ordering, timing, reporting, the records and which error ends a
command; backends only do what their contract says.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from shipway import builder, image, inputs, journal, junit, labels, model_stream, staging
from shipway.backends.base import BackendContext, ModelStore, Orchestrator, Registry
from shipway.config import LoadedConfig
from shipway.domain import (
    BuildRecord,
    CheckResult,
    Deployment,
    ImageRef,
    ModelVersion,
    Release,
    ReleaseRecord,
    StageResult,
    StageStatus,
    utcnow,
)
from shipway.errors import (
    BackendError,
    NotFound,
    RolledBack,
    ShipwayError,
    TagExists,
    TestsFailed,
    VerifyFailed,
)
from shipway.gitinfo import source_info
from shipway.imagecheck import verify_built_image
from shipway.manifest import Image
from shipway.plugins import PluginHost
from shipway.progress import Reporter
from shipway.verify import run_checks

RECORD_TIME = "%Y%m%dT%H%M%S.%f"
"""Record file names start with their start time to the microsecond: they sort in the order runs began
(two runs of one commit within a second must neither swap places nor overwrite each other)."""


@dataclass(frozen=True)
class Outputs:
    """Where a command writes its record besides .shipway/: JSON and JUnit XML, both optional."""

    json: Path | None = None
    junit: Path | None = None


@dataclass
class Project:
    """A loaded configuration with its plugins and backends, ready to run commands."""

    loaded: LoadedConfig
    host: PluginHost
    reporter: Reporter
    _backends: dict[str, Any] = field(default_factory=dict)

    @property
    def app(self) -> str:
        return self.loaded.config.app.name

    @property
    def environment(self) -> str:
        return self.loaded.config.release.environment

    @property
    def context(self) -> BackendContext:
        return BackendContext(root=self.loaded.root, reporter=self.reporter, hook=self.host.hook)

    def _backend(self, section: str) -> Any:
        if section not in self._backends:
            settings = getattr(self.loaded, section)
            cls = self.host.backend_class(section, settings.kind)
            self._backends[section] = cls(settings, self.context)
        return self._backends[section]

    @property
    def store(self) -> ModelStore:
        return self._backend("model_store")  # type: ignore[no-any-return]

    @property
    def registry(self) -> Registry:
        return self._backend("registry")  # type: ignore[no-any-return]

    @property
    def orchestrator(self) -> Orchestrator:
        return self._backend("orchestrator")  # type: ignore[no-any-return]

    @property
    def records_dir(self) -> Path:
        return self.loaded.root / ".shipway"


class Stages:
    """Times each stage, reports it, records it and tells plugins it finished."""

    def __init__(self, project: Project, command: str, results: list[StageResult]) -> None:
        self.project = project
        self.command = command
        self.results = results

    @contextmanager
    def stage(self, name: str) -> Iterator[list[str]]:
        detail: list[str] = []
        start = time.monotonic()
        try:
            yield detail
        except ShipwayError as exc:
            self._finish(name, "failed", start, str(exc).splitlines()[0])
            raise
        except BaseException:
            self._finish(name, "failed", start, "interrupted")
            raise
        self._finish(name, "ok", start, "; ".join(detail))

    def skip(self, name: str, why: str) -> None:
        self._finish(name, "skipped", time.monotonic(), why)

    def _finish(self, name: str, status: StageStatus, start: float, detail: str) -> None:
        result = StageResult(name=name, status=status, seconds=round(time.monotonic() - start, 3), detail=detail)
        self.results.append(result)
        self.project.reporter.stage(name, status, result.seconds, detail)
        self.project.host.hook.shipway_stage_finished(stage=result, command=self.command)


# -- run ------------------------------------------------------------------------


def run(
    project: Project,
    skip_tests: bool = False,
    push: bool = True,
    outputs: Outputs = Outputs(),
    rebuild: bool = False,
) -> BuildRecord:
    """The commit pipeline. Returns the build record; raises the error that ended it.

    ``find`` asks the registry (one manifest request) for a verified build of
    the same inputs; when there is one, nothing is fetched, built or pushed
    (``action: reused``) unless ``rebuild``.
    """
    cfg = project.loaded.config
    stages: list[StageResult] = []
    st = Stages(project, "run", stages)
    record = BuildRecord(app=cfg.app.name, source=source_info(project.loaded.context), base_image=cfg.build.base_image)
    try:
        if push:
            # Fail on bad registry credentials in a second, not after the tests and the build.
            project.registry.login()
        if cfg.test is None or skip_tests:
            st.skip("test", "--skip-tests" if skip_tests else "no test command configured")
        else:
            with st.stage("test") as detail:
                _run_tests(project)
                detail.append(" ".join(cfg.test.command))
        with st.stage("find") as detail:
            model = project.store.resolve(cfg.model.ref)
            record.model, record.model_digest = model, model.digest
            created = labels.source_date(record)
            image_labels = labels.for_image(record, created, project.host.hook)
            bp = builder.plan(
                project.loaded,
                model,
                record.source.commit,
                image_labels,
                int(created.timestamp()),
                project.context.cache_dir,
                project.reporter,
            )
            record.inputs = bp.inputs
            found = _find_same_inputs(project, record, push, rebuild, detail)
        if found is not None:
            record.action, record.image, record.uploaded_bytes = "reused", found, 0
            for name in ("model", "build", "verify", "push"):
                st.skip(name, f"reused {found.digest}")
            project.reporter.info(f"action: reused {found} (same inputs {bp.inputs[:19]}; --rebuild builds anyway)")
        else:
            _build_verify_push(project, st, record, bp, model, image_labels, labels.iso(created), push)
    except ShipwayError as exc:
        record.status, record.error = "failed", str(exc)
        record.stages = stages
        _finish_run(project, record, outputs)
        raise
    record.stages = stages
    _finish_run(project, record, outputs)
    return record


def _find_same_inputs(
    project: Project, record: BuildRecord, push: bool, rebuild: bool, detail: list[str]
) -> ImageRef | None:
    assert record.inputs is not None
    detail.append(f"inputs {record.inputs[:19]}")
    why_not = (
        "--no-push" if not push else "--rebuild" if rebuild else "dirty work tree" if record.source.dirty else None
    )
    if why_not:
        detail.append(f"not looked up ({why_not})")
        return None
    found = project.registry.find(inputs.tag(record.inputs))
    detail.append(f"verified build {found.digest}" if found else "no verified build of these inputs yet")
    return found


def _build_verify_push(
    project: Project,
    st: Stages,
    record: BuildRecord,
    bp: builder.BuildPlan,
    model: ModelVersion,
    image_labels: dict[str, str],
    created: str,
    push: bool,
) -> None:
    # On the fast path the engine builds the app while the store fetches the model (the context
    # holds no model byte); a model that fails its checks stops that build.
    app_build = builder.start_app_build(project.loaded, bp, project.reporter)
    tag = image_tag(record)
    uploads: list[_BlobUpload] = []
    uploaded_before = project.registry.bytes_uploaded
    # As the store downloads the model: its layer's digest and the engine's load of it (early_layer), and
    # its upload when the registry lacks it (model_stream; with nothing to download, the push's HEAD and
    # mounts decide as for any layer).
    fetched = threading.Event()
    early = builder.start_early_layer(project.loaded, bp, model, project.context.cache_dir, fetched, app_build)
    stream: model_stream.ModelStream | None = None
    if push and app_build is not None and project.registry.streams_blobs and not project.store.cached(model):
        stream = model_stream.ModelStream(
            project.registry,
            model,
            bp.stages,
            bp.base,
            project.loaded.config.model.into,
            project.context.cache_dir,
            fetched,
            app_build.finished,
        )

    def start_upload(assembly: image.Assembly) -> None:
        # Blobs only, while the image is loaded and verified: no manifest names them until verify passed.
        if stream is not None and assembly.model_layer is not None:
            stream.keep_if(assembly.model_layer.target)  # a wrong guess of the model's folder uploads nothing more
        if push:
            uploads.append(_BlobUpload(project.registry, assembly.image, stream))

    built: builder.BuiltImage | None = None
    listings: list[Future[image.EngineImages | None]] = []

    def listing() -> Future[image.EngineImages | None]:
        """The engine's images, listed once (and what killed runs left removed) beside the run's work."""
        if not listings:
            listings.append(meanwhile.submit(_list_and_remove_abandoned))
        return listings[0]

    # What may finish while the run goes on (the verify container's removal, the engine's listing and
    # clean-ups): done before the run ends, however it ends.
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="shipway-meanwhile") as meanwhile:
        try:
            # The model layer (or, on the Dockerfile path, the build context) reads the store's verified,
            # read-only cache in place: no copy of the model per run, and an unchanged model moves no byte.
            with st.stage("model") as detail:
                try:
                    files = project.store.verified_blobs(model)
                finally:
                    fetched.set()
                detail.append(f"{model.name}:{model.version} ({model.size / 1e6:.1f} MB, {model.digest[:19]})")
            with st.stage("build") as detail:
                built = builder.build(
                    project.loaded,
                    bp,
                    model,
                    files,
                    image_labels,
                    created,
                    tag,
                    project.context.cache_dir,
                    project.reporter,
                    on_assembled=start_upload,
                    app_build=app_build,
                    early=early,
                )
                record.local_image_id = built.image_id
                record.layers = built.layers
                record.model_layer = built.model_layer
                detail.append(
                    f"{built.image_id[:19]}, {len(built.layers)} layers ({bp.mode} model layer; {built.describe()})"
                )
            uploading = uploads[0] if uploads else None
            with st.stage("verify") as detail:
                # The listing (and the removal of what killed runs left) once the verify container runs:
                # the engine's layer work for this run is done by then, and the app's start hides it.
                record.checks = verify_image(
                    project,
                    built.image_id,
                    defer=lambda remove: meanwhile.submit(_reported(project, remove)),
                    on_running=listing,
                )
                _raise_on_failed(record.checks, "the built image")
                detail.append(f"{len(record.checks)} checks passed")
        except BaseException as exc:
            if app_build is not None:
                app_build.cancel()
            if early is not None:
                early.cancel()
            if stream is not None:
                stream.cancel()
            for upload in uploads:
                upload.cancel()
            if built is not None:
                built.cleanup()  # what the export spooled (docker save's layers) is not needed any more
                image.release_held(built.image_id)
            if isinstance(exc, Exception):  # a failed run tidies too (a killed one cannot)
                listing()
            raise
        # Verified: the app's older images go while the image is pushed (the push does not use the engine).
        cfg = project.loaded.config
        pruning = meanwhile.submit(
            _prune, cfg.app.name, cfg.build.keep_images, built.image_id, project.registry.repository(), listing()
        )
        try:
            if uploading is None:
                st.skip("push", "--no-push")
            else:
                _push(project, st, record, bp, built, uploading, tag, stream, uploaded_before)
        finally:
            built.cleanup()
            image.release_held(built.image_id)
            deleted = pruning.result()
            if deleted:
                project.reporter.info(
                    f"deleted {len(deleted)} older image(s) of {cfg.app.name} from the engine "
                    f"(build.keep_images: {cfg.build.keep_images}): {', '.join(d[7:19] for d in deleted)}"
                )


def _list_and_remove_abandoned() -> image.EngineImages | None:
    """The engine's images, after removing what runs killed on this host left there (preloaded model
    layers, push tags); None when the engine could not be asked. Best effort: nothing here may hide how
    the run ended (the next run tries again)."""
    try:
        found = image.engine_images()
    except Exception:  # noqa: BLE001 - the next run tries again
        return None
    with suppress(Exception):
        image.remove_abandoned_preloads(found)
    with suppress(Exception):
        staging.remove_abandoned_push_tags(found)
    return found


def _prune(
    app: str, keep_images: int, current: str, repository: str, listed: Future[image.EngineImages | None]
) -> list[str]:
    """:func:`shipway.image.prune_app_images` from the run's listing; the IDs deleted (best effort)."""
    try:
        found = listed.result()
        return image.prune_app_images(app, keep_images, current, repository, found) if found is not None else []
    except Exception:  # noqa: BLE001 - the next run tries again
        return []


def _reported(project: Project, remove: Callable[[], None]) -> Callable[[], None]:
    """The verify container's removal, saying if it fails (the run's outcome stands)."""

    def removing() -> None:
        try:
            remove()
        except Exception as exc:  # noqa: BLE001 - reported, not raised: it runs beside the push
            project.reporter.info(f"could not remove the verify container (label io.shipway.verify): {exc}")

    return removing


def _push(
    project: Project,
    st: Stages,
    record: BuildRecord,
    bp: builder.BuildPlan,
    built: builder.BuiltImage,
    uploading: _BlobUpload,
    tag: str,
    stream: model_stream.ModelStream | None,
    uploaded_before: int,
) -> None:
    cfg = project.loaded.config
    registry = project.registry
    with st.stage("push") as detail:
        uploading.wait(project.reporter)
        final = built.assembly.image
        human = _free_tag(project, tag, final.digest, cfg.build.existing_tag)
        tags = [human]
        # Lookup tags, each put only where free (a tag never moves): the model tag tells the next run on
        # any runner that the registry holds this model layer; the inputs tag, last, is what the next run
        # with these inputs finds.
        lookups = [inputs.model_tag(built.model_key)] if built.model_key else []
        for lookup in [*lookups, inputs.tag(bp.inputs)]:
            existing = registry.find(lookup)
            if existing is None or existing.digest == final.digest:
                tags.append(lookup)
        pushed = registry.push_image(final, tags)
        record.image = ImageRef(repository=pushed.repository, tag=human, digest=pushed.digest)
        record.uploaded_bytes = registry.bytes_uploaded - uploaded_before  # the stream's, the blobs', the manifests'
        said = stream.describe() if stream is not None else ""
        detail.append(f"{record.image} ({record.uploaded_bytes / 1e6:.1f} MB uploaded{'; ' + said if said else ''})")


class _BlobUpload:
    """Uploads an image's missing blobs in a thread while it is verified; cancelled if verify fails.

    ``after``: the model layer's early upload, waited for first (the registry may hold the layer then).
    """

    def __init__(self, registry: Registry, image: Image, after: model_stream.ModelStream | None = None) -> None:
        self._after = after
        self._cancelled = threading.Event()
        self._error: BaseException | None = None
        self.streamed = 0
        """Bytes read from the layers so far (blobs the registry already holds are never read)."""
        self.readable = sum(b.size for b in image.layers if b.opener is not None)
        self._registry = registry
        guarded = Image(
            config=image.config,
            layers=tuple(replace(b, opener=self._guard(b.opener)) for b in image.layers),
            local_id=image.local_id,
        )
        self._thread = threading.Thread(target=self._run, args=(guarded,), daemon=True, name="shipway-upload")
        self._thread.start()

    def _guard(self, opener: Callable[[], Iterable[bytes]] | None) -> Callable[[], Iterable[bytes]] | None:
        if opener is None:
            return None
        cancelled = self._cancelled

        def chunks() -> Iterator[bytes]:
            for chunk in opener():
                if cancelled.is_set():
                    raise BackendError("upload cancelled: the image failed verification")
                self.streamed += len(chunk)
                yield chunk

        return chunks

    def _run(self, image: Image) -> None:
        while self._after is not None and not self._after.wait(0.1):
            if self._cancelled.is_set():
                return
        try:
            self._registry.upload_blobs(image)
        except BaseException as exc:  # noqa: BLE001 - re-raised in wait()
            self._error = exc

    def cancel(self) -> None:
        self._cancelled.set()
        self._thread.join(timeout=30)

    def wait(self, reporter: Reporter) -> None:
        """Wait for the upload, with a byte progress bar on a terminal while it still runs."""
        if self._thread.is_alive():
            with reporter.bytes("push layers", self.readable, summary=False) as bar:
                shown = 0
                while self._thread.is_alive():
                    self._thread.join(0.1)
                    now = self.streamed
                    bar.advance(now - shown)
                    shown = now
        self._thread.join()
        if self._error is not None:
            raise self._error


def _free_tag(project: Project, tag: str, digest: str, policy: str) -> str:
    """``tag`` if it is free (or already names ``digest``); else ``tag.2``, ``tag.3``... or refuse."""
    registry = project.registry
    for n in range(1, 100):
        candidate = tag if n == 1 else f"{tag}.{n}"[:128]
        found = registry.find(candidate)
        if found is None or found.digest == digest:
            return candidate
        if policy == "refuse":
            raise TagExists(
                f"{registry.repository()}:{candidate} already names {found.digest}, and this build is {digest}: "
                "shipway never moves a tag (build.existing_tag: suffix pushes under a new tag instead)"
            )
    raise TagExists(f"{registry.repository()}: tags {tag} to {tag}.99 are all taken")


def image_tag(record: BuildRecord) -> str:
    """``<commit12>-m<model version>``; dirty trees get a timestamp so no tag is overwritten."""
    assert record.model is not None
    commit = record.source.commit[:12] if record.source.commit != "unknown" else "nogit"
    tag = f"{commit}-m{record.model.version}"
    if record.source.dirty:
        tag += "-dirty." + record.created.strftime("%Y%m%d%H%M%S")
    return tag[:128]


def _run_tests(project: Project) -> None:
    test = project.loaded.config.test
    assert test is not None
    cwd = project.loaded.context / test.cwd
    try:
        proc = subprocess.run(test.command, cwd=cwd, timeout=test.timeout)
    except FileNotFoundError:
        raise TestsFailed(f"test command not found: {test.command[0]!r} (in {cwd})") from None
    except subprocess.TimeoutExpired:
        raise TestsFailed(f"tests did not finish within {test.timeout:.0f}s") from None
    if proc.returncode != 0:
        raise TestsFailed(f"tests failed (exit {proc.returncode}): {' '.join(test.command)}")


def verify_image(
    project: Project,
    image_id: str,
    defer: Callable[[Callable[[], None]], object] | None = None,
    on_running: Callable[[], object] | None = None,
) -> list[CheckResult]:
    """The verify stage's work: run the built image and its checks (:mod:`shipway.imagecheck`)."""
    return verify_built_image(project.loaded, image_id, project.context.cache_dir, defer, on_running)


def _raise_on_failed(results: list[CheckResult], target: str) -> None:
    failed = [r for r in results if not r.ok]
    if failed:
        lines = "\n".join(f"  {r.check}: {r.detail}" for r in failed)
        raise VerifyFailed(f"{len(failed)} of {len(results)} verify checks failed against {target}:\n{lines}")


def _finish_run(project: Project, record: BuildRecord, outputs: Outputs) -> None:
    name = f"{record.created.strftime(RECORD_TIME)}-{record.source.commit[:12]}.json"
    write_record(record.model_dump(mode="json"), project.records_dir / "builds" / name, outputs.json)
    if outputs.junit:
        junit.write(outputs.junit, "shipway.run", record.stages, record.checks, record.error)
    project.host.hook.shipway_run_finished(record=record)


def write_record(data: dict[str, Any], path: Path, output: Path | None) -> None:
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    for target in (path, output):
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)


# -- release ----------------------------------------------------------------------


def newest_build(project: Project) -> tuple[ImageRef, dict[str, str]]:
    builds = project.registry.builds(project.app)
    if not builds:
        raise NotFound(
            f"no verified build of {project.app!r} in {project.registry.describe()}: run `shipway run` first"
        )
    return builds[0]


def pick_image(project: Project, image: str | None) -> tuple[ImageRef, dict[str, str]]:
    if image is None:
        return newest_build(project)
    ref = ImageRef.parse(image)
    if ref.digest is None:
        ref = project.registry.resolve(ref.tag or "latest")
    return ref, project.registry.labels(ref)


def make_release(project: Project, ref: ImageRef, image_labels: dict[str, str]) -> Release:
    cfg = project.loaded.config
    return Release(
        app=cfg.app.name,
        environment=cfg.release.environment,
        image=ref,
        port=cfg.app.port,
        health=cfg.app.health,
        replicas=cfg.release.replicas,
        env=cfg.app.env,
        secrets=cfg.app.secrets,
        labels={k: v for k, v in image_labels.items() if k in labels.TRACE},
    )


def release(project: Project, image: str | None = None, outputs: Outputs = Outputs()) -> ReleaseRecord:
    """Deploy the newest verified build (or ``image``); a no-op if its digest is live."""
    stages: list[StageResult] = []
    st = Stages(project, "release", stages)
    record = ReleaseRecord(app=project.app, environment=project.environment, image=None, action="failed")
    with _recorded(project, record, stages, outputs):
        with st.stage("pick") as detail:
            ref, image_labels = pick_image(project, image)
            record.image = ref
            current = project.orchestrator.status(project.app, project.environment)
            record.previous = current.image
            detail.append(f"{ref} ({_describe_labels(image_labels)})")
        unfinished = journal.unfinished(project.context.cache_dir, project.app, project.environment)
        if unfinished is not None:
            with project.orchestrator.lock(project.app, project.environment):
                current = _recover(project, st, record, current, unfinished)
        failed = project.orchestrator.failed_digests(project.app, project.environment)
        if current.digest == ref.digest and current.state == "healthy" and ref.digest not in failed:
            record.action = "noop"
            record.message = f"{ref.digest} is already live and healthy: nothing to do"
            project.reporter.info(record.message)
        elif image is None and ref.digest in failed:
            record.action = "skipped"
            record.message = (
                f"the newest build {ref} already failed its release to {project.environment} "
                f"({failed[ref.digest]}); not retrying it. `shipway release --image {ref.pinned}` forces a retry"
            )
            project.reporter.info(record.message)
        else:
            with project.orchestrator.lock(project.app, project.environment):
                note = journal.begin(
                    project.context.cache_dir, project.app, project.environment, ref.pinned, _pinned(current.image)
                )
                try:
                    _deploy_and_check(project, st, record, ref, image_labels)
                except (KeyboardInterrupt, SystemExit):
                    raise  # interrupted (Ctrl-C, a CI cancel): the note stays, as after a kill
                except BaseException:
                    journal.end(note)
                    raise
                journal.end(note)  # a killed process skips this: the next release or status sees it
    return record


def _pinned(ref: ImageRef | None) -> str | None:
    return ref.pinned if ref is not None else None


def _recover(
    project: Project, st: Stages, record: ReleaseRecord, current: Deployment, unfinished: journal.Unfinished
) -> Deployment:
    """Finish what a killed release left: check what is live; roll back if it fails its checks.

    Returns the state to go on from. What is live when it is not healthy is left
    to the release that follows (it deploys again).
    """
    project.reporter.info(f"{unfinished.describe()}: what is live ({current.image}, {current.state}) is checked first")
    if current.state == "healthy":
        try:
            _check_live(project, st, record, f"the live release {current.image} (left unchecked by a killed release)")
        except (BackendError, VerifyFailed) as exc:
            if current.previous_image is None:
                # Nothing to roll back to: remember the failure and let this release deploy its image.
                reason = str(exc).splitlines()[0]
                project.orchestrator.mark_failed(project.app, project.environment, current.digest or "", reason)
                journal.clear(project.context.cache_dir, project.app, project.environment)
                project.reporter.info(f"  {current.image} fails its checks, no earlier release exists: marked failed")
                return project.orchestrator.status(project.app, project.environment)
            try:
                restored = _mark_failed_and_roll_back(project, st, current.digest, exc, current.previous_image)
            finally:
                journal.clear(project.context.cache_dir, project.app, project.environment)
            record.image, record.previous, record.action = current.image, current.image, "rolled_back"
            raise RolledBack(
                f"{unfinished.describe()}; it left {current.image} live, which fails its checks: "
                f"rolled back to {restored.image}: {exc}"
            ) from exc
    journal.clear(project.context.cache_dir, project.app, project.environment)
    return project.orchestrator.status(project.app, project.environment)


@contextmanager
def _recorded(project: Project, record: ReleaseRecord, stages: list[StageResult], outputs: Outputs) -> Iterator[None]:
    """Write the release record (and report) whether the block succeeds or raises."""
    try:
        yield
    except ShipwayError as exc:
        record.error = str(exc)
        raise
    finally:
        record.stages = stages
        name = f"{record.created.strftime(RECORD_TIME)}-{record.environment}.json"
        write_record(record.model_dump(mode="json"), project.records_dir / "releases" / name, outputs.json)
        if outputs.junit:
            junit.write(outputs.junit, "shipway.release", record.stages, record.checks, record.error)
        project.host.hook.shipway_release_finished(record=record)


def _check_live(project: Project, st: Stages, record: ReleaseRecord, what: str) -> None:
    """The ``check`` stage: the verify checks against the live endpoint."""
    with st.stage("check") as detail:
        url = project.orchestrator.endpoint(project.app, project.environment)
        record.checks = run_checks(url, project.loaded.config.verify, project.loaded.context)
        _raise_on_failed(record.checks, what)
        detail.append(f"{len(record.checks)} checks passed")


def _deploy_and_check(
    project: Project, st: Stages, record: ReleaseRecord, ref: ImageRef, image_labels: dict[str, str]
) -> None:
    orch = project.orchestrator
    try:
        with st.stage("deploy") as detail:
            deployment = orch.deploy(make_release(project, ref, image_labels), auth=project.registry.credentials())
            detail.append(f"revision {deployment.revision} {deployment.state}")
        _check_live(project, st, record, "the live release")
        record.action = "deployed"
    except (BackendError, VerifyFailed) as exc:
        _mark_failed_and_roll_back(project, st, ref.digest, exc, record.previous)
        record.action = "rolled_back"
        raise RolledBack(f"release of {ref} failed and was rolled back to {record.previous}: {exc}") from exc


def _mark_failed_and_roll_back(
    project: Project, st: Stages, digest: str | None, exc: ShipwayError, previous: ImageRef | None
) -> Deployment:
    """Remember ``digest`` as failed (no nightly release retries it) and restore the previous revision.

    Re-raises ``exc`` when there is nothing to roll back to.
    """
    orch = project.orchestrator
    orch.mark_failed(project.app, project.environment, digest or "", str(exc).splitlines()[0])
    if previous is None:
        raise exc
    with st.stage("rollback") as detail:
        restored = orch.rollback(project.app, project.environment)
        detail.append(f"{restored.image} {restored.state}")
    return restored


def _describe_labels(found: dict[str, str]) -> str:
    commit = found.get(labels.REVISION, "?")[:12]
    return f"commit {commit}, model {found.get(labels.MODEL_NAME, '?')}:{found.get(labels.MODEL_VERSION, '?')}"


def rollback(project: Project, outputs: Outputs = Outputs()) -> ReleaseRecord:
    """Restore the previous revision on demand, then run the verify checks against it."""
    stages: list[StageResult] = []
    st = Stages(project, "rollback", stages)
    current = project.orchestrator.status(project.app, project.environment)
    record = ReleaseRecord(
        app=project.app, environment=project.environment, image=None, previous=current.image, action="failed"
    )
    with _recorded(project, record, stages, outputs), project.orchestrator.lock(project.app, project.environment):
        with st.stage("rollback") as detail:
            restored = project.orchestrator.rollback(project.app, project.environment)
            record.image = restored.image
            detail.append(f"{restored.image} {restored.state}")
        _check_live(project, st, record, "the restored release")
        record.action = "rolled_back"
        journal.clear(project.context.cache_dir, project.app, project.environment)
    return record


# -- status and plan ----------------------------------------------------------------


def status(project: Project) -> Deployment:
    """What the orchestrator reports, and whether a release killed on this host left it unchecked."""
    dep = project.orchestrator.status(project.app, project.environment)
    unfinished = journal.unfinished(project.context.cache_dir, project.app, project.environment)
    if unfinished is None:
        return dep
    why = (
        f"{unfinished.describe()}: what is live was not checked by it; "
        "`shipway release` checks it, then finishes the release or rolls back"
    )
    return dep.model_copy(update={"message": why + (f" ({dep.message})" if dep.message else "")})


def plan(project: Project) -> dict[str, Any]:
    """What `run` and `release` would do now, without doing it."""
    cfg = project.loaded.config
    model = project.store.resolve(cfg.model.ref)
    source = source_info(project.loaded.context)
    draft = BuildRecord(app=cfg.app.name, source=source, model=model, model_digest=model.digest, created=utcnow())
    out: dict[str, Any] = {
        "model": {"ref": str(cfg.model.ref), "version": model.version, "digest": model.digest, "bytes": model.size},
        "source": source.model_dump(mode="json"),
        "image": f"{project.registry.repository()}:{image_tag(draft)}",
    }
    current = project.orchestrator.status(project.app, project.environment)
    out["live"] = {"image": str(current.image) if current.image else None, "state": current.state}
    try:
        newest, found = newest_build(project)
        out["newest_build"] = {"image": str(newest), "created": found.get(labels.CREATED)}
        out["release"] = (
            "no-op (already live)"
            if newest.digest == current.digest and current.state == "healthy"
            else f"deploy {newest.pinned}"
        )
    except NotFound:
        out["newest_build"] = None
        out["release"] = "nothing to release yet"
    return out
