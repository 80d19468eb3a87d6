"""The engine: `run` (test → model → build → verify → push) and `release`.

It owns ordering, timing, reporting, the records and which error ends a
command; backends only do what their contract says.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipway import builder, junit, labels
from shipway.backends.base import BackendContext, ModelStore, Orchestrator, Registry
from shipway.config import LoadedConfig
from shipway.domain import (
    BuildRecord,
    CheckResult,
    Deployment,
    ImageRef,
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
    TestsFailed,
    VerifyFailed,
)
from shipway.gitinfo import source_info
from shipway.imagecheck import verify_built_image
from shipway.plugins import PluginHost
from shipway.progress import Reporter
from shipway.verify import run_checks


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


def run(project: Project, skip_tests: bool = False, push: bool = True, outputs: Outputs = Outputs()) -> BuildRecord:
    """The commit pipeline. Returns the build record; raises the error that ended it."""
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
        with st.stage("model") as detail:
            model = project.store.resolve(cfg.model.ref)
            record.model, record.model_digest = model, model.digest
            model_dir = project.store.fetch(model, project.context.cache_dir / "models" / model.name / model.version)
            detail.append(f"{model.name}:{model.version} ({model.size / 1e6:.1f} MB, {model.digest[:19]})")
        with st.stage("build") as detail:
            image_labels = labels.for_build(record)
            for extra in project.host.hook.shipway_build_labels(build=record):
                image_labels = labels.merge_extra(image_labels, extra or {})
            tag = image_tag(record)
            built = builder.build(
                project.loaded,
                model,
                model_dir,
                record.source.commit,
                image_labels,
                f"shipway/{cfg.app.name}:{tag}",
                project.context.cache_dir,
                project.reporter,
            )
            record.local_image_id = built.image_id
            record.layers = built.layers
            detail.append(f"{built.image_id[:19]}, {len(built.layers)} layers")
        with st.stage("verify") as detail:
            record.checks = verify_image(project, built.image_id)
            _raise_on_failed(record.checks, "the built image")
            detail.append(f"{len(record.checks)} checks passed")
        if not push:
            st.skip("push", "--no-push")
        else:
            with st.stage("push") as detail:
                record.image = project.registry.push(built.image_id, tag)
                detail.append(str(record.image))
    except ShipwayError as exc:
        record.status, record.error = "failed", str(exc)
        record.stages = stages
        _finish_run(project, record, outputs)
        raise
    record.stages = stages
    _finish_run(project, record, outputs)
    return record


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


def verify_image(project: Project, image_id: str) -> list[CheckResult]:
    """The verify stage's work: run the built image and its checks (:mod:`shipway.imagecheck`)."""
    return verify_built_image(project.loaded, image_id, project.context.cache_dir)


def _raise_on_failed(results: list[CheckResult], target: str) -> None:
    failed = [r for r in results if not r.ok]
    if failed:
        lines = "\n".join(f"  {r.check}: {r.detail}" for r in failed)
        raise VerifyFailed(f"{len(failed)} of {len(results)} verify checks failed against {target}:\n{lines}")


def _finish_run(project: Project, record: BuildRecord, outputs: Outputs) -> None:
    name = f"{record.created.strftime('%Y%m%dT%H%M%S')}-{record.source.commit[:12]}.json"
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
        failed = project.orchestrator.failed_digests(project.app, project.environment)
        if current.digest == ref.digest and current.state == "healthy":
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
                _deploy_and_check(project, st, record, ref, image_labels)
    return record


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
        name = f"{record.created.strftime('%Y%m%dT%H%M%S')}-{record.environment}.json"
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
        orch.mark_failed(project.app, project.environment, ref.digest or "", str(exc).splitlines()[0])
        if record.previous is None:
            raise
        with st.stage("rollback") as detail:
            restored = orch.rollback(project.app, project.environment)
            detail.append(f"{restored.image} {restored.state}")
        record.action = "rolled_back"
        raise RolledBack(f"release of {ref} failed and was rolled back to {record.previous}: {exc}") from exc


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
    return record


# -- status and plan ----------------------------------------------------------------


def status(project: Project) -> Deployment:
    return project.orchestrator.status(project.app, project.environment)


def plan(project: Project) -> dict[str, Any]:
    """What `run` and `release` would do now, without doing it."""
    cfg = project.loaded.config
    model = project.store.resolve(cfg.model.ref)
    source = source_info(project.loaded.context)
    draft = BuildRecord(app=cfg.app.name, source=source, model=model, model_digest=model.digest, created=utcnow())
    out: dict[str, Any] = {
        "model": {"ref": str(cfg.model.ref), "version": model.version, "digest": model.digest, "bytes": model.size},
        "source": source.model_dump(),
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
