"""Runs killed with SIGKILL at chosen points, and what the next run makes of what they left.

A real ``shipway`` process is killed (no handler, no ``finally`` runs) the moment
the test sees, in files or on the services, that it reached the point:

- a fetch, while a model blob is being copied into the cache (``*.partial``);
- a push, while a layer is being uploaded (the registry's upload folder grows);
- a ``model publish``, while the files are copied into the store's staging folder;
- a ``release``, once the new revision runs but before its checks (docker), or
  while the new revision starts (Kubernetes, where the previous one must keep serving).

The scorer app (tests/apps/scorer: port 9090, ``/ready``, model in
``artifacts/model``, ``/model`` answers each model file's sha256) runs the
pipeline scenario in order, on the real engine and the real registry with auth;
the release-only projects of ``release_projects.py`` cover a killed release
whose image fails its checks (docker) and a killed release on Kubernetes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from release_projects import in_progress, names, push_images, release_project, status, version, version_within

from shipway import dockerutil
from shipway.backends.base import BackendContext
from shipway.backends.docker_orchestrator import DockerOrchestrator, DockerOrchestratorSettings
from shipway.domain import ImageRef, Release
from shipway.testing.contracts import unique
from shipway.testing.interrupt import kill_when, spawn
from shipway.testing.load import Load
from shipway.testing.project import AppProject, project_env
from shipway.testing.services import RegistryService, free_port

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "tests" / "apps" / "scorer"
BASE_IMAGE = os.environ.get("SHIPWAY_BASE_IMAGE", "shipway-base:bookworm")
MODEL_BYTES = 64 << 20
ROLLED_BACK = 6


class Scorer(AppProject):
    """The scorer app on its own repository, environment and store."""

    repository: str = ""

    @property
    def cache(self) -> Path:
        return Path(self.env["SHIPWAY_CACHE_DIR"])

    @property
    def store(self) -> Path:
        return Path(self.env["SHIPWAY_MODEL_STORE"]) / "scorer-model"

    def model_folder(self, tmp: Path, label: str) -> tuple[Path, dict[str, str]]:
        """A model (random weights, labels.txt) and the sha256 of each file, as /model reports them."""
        folder = tmp / f"model-{uuid.uuid4().hex[:6]}"
        (folder / "weights").mkdir(parents=True)
        (folder / "weights" / "layer1.bin").write_bytes(os.urandom(MODEL_BYTES))
        (folder / "labels.txt").write_text(f"{label}\nother\n")
        files = {"weights/layer1.bin": folder / "weights" / "layer1.bin", "labels.txt": folder / "labels.txt"}
        return folder, {rel: hashlib.sha256(p.read_bytes()).hexdigest() for rel, p in files.items()}

    def run_record(self, tmp: Path) -> dict[str, Any]:
        out = tmp / f"run-{uuid.uuid4().hex[:6]}.json"
        proc = self.shipway("run", "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        return dict(json.loads(out.read_text()))

    def live_model(self) -> dict[str, str]:
        return dict(requests.get(self.url("/model"), timeout=5).json()["files"])


@pytest.fixture(scope="module")
def scorer(
    tmp_path_factory: pytest.TempPathFactory, shipway_registry: RegistryService, shipway_docker: None
) -> Iterator[Scorer]:
    try:
        dockerutil.client().images.get(BASE_IMAGE)
    except Exception:  # noqa: BLE001
        pytest.fail(f"base image {BASE_IMAGE} is missing: run scripts/services.sh", pytrace=False)
    work = tmp_path_factory.mktemp("killed")
    port = free_port()
    env = project_env(
        work,
        shipway_registry,
        drop=("MODEL_SELECT", "SOURCE_DATE_EPOCH"),
        SCORER_PORT=str(port),
        RUNTIME_IMAGE=BASE_IMAGE,
    )
    app = Scorer.copy(APP, work / "app", env, port)
    app.repository = f"killed/scorer-{uuid.uuid4().hex[:6]}"  # a repository of its own: no other test's builds
    config = app.root / "shipway.yaml"
    config.write_text(config.read_text().replace("repository: team/scorer", f"repository: {app.repository}"))
    app.commit("own repository")
    yield app
    app.shipway("down")


def _tags(reg: RegistryService, repository: str) -> list[str]:
    resp = requests.get(f"http://{reg.address}/v2/{repository}/tags/list", auth=(reg.username, reg.password), timeout=5)
    return sorted(resp.json().get("tags") or []) if resp.status_code == 200 else []


def _uploading(reg: RegistryService, repository: str, at_least: int) -> bool:
    uploads = reg.root / "data" / "docker" / "registry" / "v2" / "repositories" / repository / "_uploads"
    return any(data.stat().st_size >= at_least for data in uploads.glob("*/data"))


def test_01_killed_fetch_leaves_nothing_the_next_run_trusts(scorer: Scorer, tmp_path: Path) -> None:
    folder, files = scorer.model_folder(tmp_path, "cat")
    assert scorer.shipway("model", "publish", str(folder), "--name", "scorer-model").returncode == 0

    def partials() -> list[Path]:
        return [p for p in scorer.cache.rglob("*.partial") if p.stat().st_size > 0]

    kill_when(spawn(scorer, "run"), lambda: bool(partials()), timeout=120)
    left = partials()
    assert left, "the kill did not land during the fetch"
    assert list(scorer.cache.rglob(f"blobs/sha256/{files['weights/layer1.bin']}")) == []  # nothing verified yet
    for partial in left:  # whatever the killed copy wrote, the next run (test_02) must not take it as the model
        partial.write_bytes(b"\0" * partial.stat().st_size)


def test_02_killed_push_never_tags_a_partial_image_and_the_next_run_completes_it(
    scorer: Scorer, tmp_path: Path, shipway_registry: RegistryService
) -> None:
    published = json.loads(scorer.shipway("model", "list", "scorer-model", "--json").stdout)["versions"][-1]
    expected = {f["path"]: f["sha256"] for f in published["files"]}
    proc = spawn(scorer, "run")

    def pushing_the_image() -> bool:
        # The model layer may have gone up while the model downloaded; the image's own layers go up
        # once the app image has left the engine (into a spool, on this cache's first build).
        spool = scorer.cache / "spool"
        return spool.is_dir() and any(spool.iterdir()) and _uploading(shipway_registry, scorer.repository, 8 << 20)

    kill_when(proc, pushing_the_image, timeout=300)
    assert _tags(shipway_registry, scorer.repository) == []  # no tag names a partial image
    # The killed run was the cache's first build: its layers left the engine by docker save, into a
    # spool folder of its own that nobody removed.
    assert list((scorer.cache / "spool").iterdir()), "the killed run left no docker save spool"

    record = scorer.run_record(tmp_path)
    assert record["action"] == "built"
    head = scorer.git("rev-parse", "HEAD")
    assert record["image"]["tag"] == f"{head[:12]}-m1"
    assert record["image"]["tag"] in _tags(shipway_registry, scorer.repository)
    assert list((scorer.cache / "spool").iterdir()) == []  # the next run removed the killed run's spool
    # the run fetched again: the zeroed partial of test_01 never reached the image
    rel = scorer.shipway("release")
    assert rel.returncode == 0, rel.stderr
    assert scorer.live_model() == expected
    assert status(scorer)["image"]["digest"] == record["image"]["digest"]


def test_03_killed_publish_never_shows_a_half_written_version(scorer: Scorer, tmp_path: Path) -> None:
    folder, files = scorer.model_folder(tmp_path, "dog")

    def staged() -> bool:
        return any(p.is_file() and p.stat().st_size > 0 for p in scorer.store.glob(".staging-*/files/weights/*"))

    kill_when(spawn(scorer, "model", "publish", str(folder), "--name", "scorer-model"), staged, timeout=60)
    assert list(scorer.store.glob(".staging-*")), "the kill did not land while the files were copied"
    listed = json.loads(scorer.shipway("model", "list", "scorer-model", "--json").stdout)
    assert [v["version"] for v in listed["versions"]] == ["1"]

    pub = scorer.shipway("model", "publish", str(folder), "--name", "scorer-model")
    assert pub.returncode == 0, pub.stderr
    assert "published scorer-model:2" in pub.stdout
    assert list(scorer.store.glob(".staging-*")) == []  # the killed publish's staging folder was removed
    listed = json.loads(scorer.shipway("model", "list", "scorer-model", "--json").stdout)
    assert [v["version"] for v in listed["versions"]] == ["1", "2"]
    assert {f["path"]: f["sha256"] for f in listed["versions"][-1]["files"]} == files


def test_04_killed_docker_release_is_explained_then_checked_and_finished_by_the_next(
    scorer: Scorer, tmp_path: Path
) -> None:
    before = status(scorer)
    record = scorer.run_record(tmp_path)  # model version 2
    assert record["model"]["version"] == "2"
    app, environment = "scorer", scorer.env["SHIPWAY_ENVIRONMENT"]
    name = f"shipway-{app}-{environment}-r{before['revision'] + 1}"

    def new_revision_runs() -> bool:
        found = dockerutil.client().containers.list(filters={"name": name})
        return any(c.name == name and c.status == "running" for c in found)

    kill_when(spawn(scorer, "release"), new_revision_runs, timeout=120)
    explained = status(scorer)
    print(f"[status after the kill] {explained['state']}: {explained['message']}")
    assert "did not finish" in explained["message"]
    assert "`shipway release` checks it" in explained["message"]
    plain = scorer.shipway("status").stdout
    assert "note:" in plain
    assert "did not finish" in plain

    out = tmp_path / "next.json"
    rel = scorer.shipway("release", "-o", str(out))
    assert rel.returncode == 0, rel.stderr
    assert "did not finish" in rel.stderr
    stages = [(s["name"], s["status"]) for s in scorer.record(out)["stages"]]
    assert ("check", "ok") in stages  # what the killed release left live was checked
    after = status(scorer)
    assert after["image"]["digest"] == record["image"]["digest"]
    assert after["state"] == "healthy"
    assert "did not finish" not in after["message"]
    published = json.loads(scorer.shipway("model", "list", "scorer-model", "--json").stdout)["versions"][-1]
    assert scorer.live_model() == {f["path"]: f["sha256"] for f in published["files"]}


# -- release-only projects: an unchecked image left live; Kubernetes keeps the previous revision ----


@pytest.fixture
def images(shipway_contract_registry: Any, shipway_tiny_image: Any) -> dict[str, ImageRef]:
    return push_images(shipway_contract_registry, shipway_tiny_image)


def docker_release(
    tmp_path: Path, shipway_registry: RegistryService, shipway_contract_registry: Any
) -> tuple[AppProject, str, Callable[[int], bool]]:
    """A release-only project on the docker orchestrator: (project, its URL, whether revision N's container runs)."""
    port = free_port()
    orchestrator = {"kind": "docker", "host_port": port, "stop_timeout": 2, "deadline": 20}
    project = release_project(tmp_path / "p", shipway_registry, shipway_contract_registry, orchestrator)
    app, environment = names(project)

    def revision_runs(revision: int) -> bool:
        name = f"shipway-{app}-{environment}-r{revision}"
        return any(c.name == name for c in dockerutil.client().containers.list(filters={"name": name}))

    return project, f"http://127.0.0.1:{port}", revision_runs


def test_killed_release_left_an_image_that_fails_its_checks_the_next_release_rolls_it_back(
    tmp_path: Path,
    images: dict[str, ImageRef],
    shipway_registry: RegistryService,
    shipway_contract_registry: Any,
    shipway_docker: None,
) -> None:
    project, url, revision_runs = docker_release(tmp_path, shipway_registry, shipway_contract_registry)

    def revision_2_runs() -> bool:
        return revision_runs(2)

    try:
        assert project.shipway("release", "--image", images["v1"].pinned).returncode == 0
        # Killed once the new container runs, a second before it serves: its checks never run.
        kill_when(spawn(project, "release", "--image", images["wrong"].pinned), revision_2_runs, timeout=60)
        assert version_within(url, "wrong") == "wrong"  # live, healthy, and never checked
        assert in_progress(project).exists()

        rel = project.shipway("release", "--image", images["wrong"].pinned)
        assert rel.returncode == ROLLED_BACK, rel.stderr
        assert "did not finish" in rel.stderr
        assert "which fails its checks: rolled back to" in rel.stderr
        assert version(url) == "v1"
        live = status(project)
        assert live["image"]["digest"] == images["v1"].digest
        assert "did not finish" not in live["message"]
        again = project.shipway("release", "--image", images["v1"].pinned, "-o", str(tmp_path / "noop.json"))
        assert again.returncode == 0, again.stderr
        assert project.record(tmp_path / "noop.json")["action"] == "noop"
    finally:
        project.shipway("down")


def test_a_killed_first_release_whose_image_fails_its_checks_does_not_block_the_next(
    tmp_path: Path,
    images: dict[str, ImageRef],
    shipway_registry: RegistryService,
    shipway_contract_registry: Any,
    shipway_docker: None,
) -> None:
    """Nothing to roll back to: the unchecked image is marked failed and the next release deploys its own."""
    project, url, revision_runs = docker_release(tmp_path, shipway_registry, shipway_contract_registry)

    def revision_1_runs() -> bool:
        return revision_runs(1)

    try:
        kill_when(spawn(project, "release", "--image", images["wrong"].pinned), revision_1_runs, timeout=60)
        assert version_within(url, "wrong") == "wrong"  # live, healthy, never checked, and nothing before it
        assert in_progress(project).exists()
        rel = project.shipway("release", "--image", images["v1"].pinned, "-o", str(tmp_path / "next.json"))
        assert rel.returncode == 0, rel.stderr
        assert "no earlier release exists: marked failed" in rel.stderr
        assert project.record(tmp_path / "next.json")["action"] == "deployed"
        assert version(url) == "v1"
        assert not in_progress(project).exists()
        live = status(project)
        assert live["image"]["digest"] == images["v1"].digest
        assert "did not finish" not in live["message"]
    finally:
        project.shipway("down")


def test_docker_rollback_after_a_release_redone_with_the_same_image_restores_the_image_before(
    tmp_path: Path, images: dict[str, ImageRef], shipway_contract_registry: Any, shipway_docker: None
) -> None:
    """What a release redone after an interrupted one leaves: two revisions of one image; rollback skips both."""
    settings = DockerOrchestratorSettings(kind="docker", host_port=free_port(), stop_timeout=1, deadline=20)
    orch = DockerOrchestrator(settings, BackendContext(root=tmp_path, cache_dir=tmp_path / "cache"))
    app, auth = unique("redo"), shipway_contract_registry.credentials()

    def release(image: ImageRef) -> Release:
        return Release(app=app, image=image, port=8000, health="/healthz")

    try:
        orch.deploy(release(images["v1"]), auth=auth)
        orch.deploy(release(images["v2"]), auth=auth)
        redone = orch.deploy(release(images["v2"]), auth=auth)
        assert redone.revision == 3
        assert redone.previous_image is not None
        assert redone.previous_image.digest == images["v1"].digest
        back = orch.rollback(app)
        assert back.digest == images["v1"].digest
        assert version(f"http://127.0.0.1:{settings.host_port}") == "v1"
    finally:
        orch.remove(app)


def test_killed_kubernetes_release_leaves_the_previous_revision_serving_and_the_next_recovers(
    tmp_path: Path,
    images: dict[str, ImageRef],
    shipway_registry: RegistryService,
    shipway_contract_registry: Any,
    shipway_fake_k8s: Any,
) -> None:
    kubeconfig = shipway_fake_k8s.write_kubeconfig(tmp_path / "kubeconfig")
    orchestrator = {"kind": "kubernetes", "kubeconfig": str(kubeconfig), "deadline": 20, "lease_seconds": 3}
    project = release_project(tmp_path / "p", shipway_registry, shipway_contract_registry, orchestrator)
    config = json.loads((project.root / "shipway.yaml").read_text())
    service = f"{config['app']['name']}-{config['release']['environment']}"
    url = f"{shipway_fake_k8s.url}/api/v1/namespaces/default/services/{service}:80/proxy/version"
    bearer = {"Authorization": f"Bearer {shipway_fake_k8s.token}"}
    unhealthy = images["unhealthy"].pinned

    def template_is_new() -> bool:
        found = [o for k, o in list(shipway_fake_k8s.objects.items()) if k[0] == "deployments"]
        return any(unhealthy in json.dumps(o["spec"]["template"]) for o in found)

    try:
        assert project.shipway("release", "--image", images["v1"].pinned).returncode == 0
        with Load(url, headers=bearer, seconds=120) as load:
            time.sleep(0.5)
            kill_when(spawn(project, "release", "--image", unhealthy), template_is_new, timeout=60)
            time.sleep(2)
            explained = status(project)
            time.sleep(1.5)  # now past the killed holder's 3 s lease
            rel = project.shipway("release", "--image", images["v2"].pinned)
            time.sleep(1)
        load.report("[kubernetes] release killed mid-rollout, then the next release")
        print(f"[status after the kill] {explained['state']}: {explained['message']}")
        assert explained["state"] == "progressing"
        assert "did not finish" in explained["message"]
        assert rel.returncode == 0, rel.stderr
        assert "did not finish" in rel.stderr
        assert dict(load.failed) == {}  # the previous revision served throughout
        assert set(load.bodies) == {"v1", "v2"}
        assert load.total > 50
        assert status(project)["image"]["digest"] == images["v2"].digest
    finally:
        project.shipway("down")
