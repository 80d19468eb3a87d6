"""The example app through the whole pipeline, on the real engine and a real registry with auth.

Each test stands alone: it copies the app into a folder of its own, with its
own model store, cache, registry repository, release environment and port,
publishes the models it needs and builds and releases what it needs. What the
tests share is read-only input: the two trained models (good and scrambled)
and the wheelhouse download, both keyed by their content.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import requests

from shipway import dockerutil, journal
from shipway.testing.project import AppProject, project_env
from shipway.testing.services import RegistryService, ensure_tiny_image, free_port

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "flask_app"
BASE_IMAGE = os.environ.get("SHIPWAY_BASE_IMAGE", "shipway-base:bookworm")
EXIT = {"ok": 0, "config": 2, "tests": 3, "build": 4, "verify": 5, "rolled_back": 6, "backend": 7, "model": 8}


class Example(AppProject):
    """The flask example as an AppProject pushing to a registry repository of its own."""

    repository: str = "digits-api"

    def score(self, sample: str) -> Any:
        return self.post_json_file("/score", f"tests/data/{sample}")

    def publish(self, model: Path, *args: str) -> None:
        pub = self.shipway("model", "publish", str(model), "--name", "digits", *args)
        assert pub.returncode == 0, pub.stderr

    def run_ok(self, out: Path, *args: str) -> Any:
        """``shipway run ARGS -o out``, which must succeed; its build record."""
        run = self.shipway("run", *args, "-o", str(out))
        assert run.returncode == EXIT["ok"], run.stderr
        return self.record(out)

    def release_ok(self, out: Path, *args: str) -> Any:
        rel = self.shipway("release", *args, "-o", str(out))
        assert rel.returncode == EXIT["ok"], rel.stderr
        return self.record(out)

    def live(self) -> Any:
        return json.loads(self.shipway("status", "--json").stdout)


@pytest.fixture(scope="module")
def base_image(shipway_docker: None) -> str:
    try:
        dockerutil.client().images.get(BASE_IMAGE)
    except Exception:  # noqa: BLE001
        pytest.fail(f"base image {BASE_IMAGE} is missing: run scripts/services.sh", pytrace=False)
    return BASE_IMAGE


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The good model and a scrambled one (permuted classes), trained once: tests publish them, never change them."""
    out = tmp_path_factory.mktemp("models")
    for name, extra in (("good", []), ("bad", ["--scramble"])):
        cmd = [sys.executable, "train.py", "--out", str(out / name), *extra]
        subprocess.run(cmd, cwd=EXAMPLE, check=True, capture_output=True)
    return {"good": out / "good", "bad": out / "bad"}


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One wheelhouse download for the module (keyed by the requirements' hash, so no test sees another's change)."""
    return tmp_path_factory.mktemp("wheelhouse")


@pytest.fixture
def example(tmp_path: Path, shipway_registry: RegistryService, base_image: str, wheelhouse: Path) -> Iterator[Example]:
    """A fresh copy of the example with a store, cache, repository, environment and port of its own."""
    work = tmp_path / "work"
    (work / "cache").mkdir(parents=True)
    (work / "cache" / "wheelhouse").symlink_to(wheelhouse)
    port = free_port()
    env = project_env(
        work,
        shipway_registry,
        drop=("DIGITS_", "MODEL_SELECT", "BASE_IMAGE"),
        DIGITS_PORT=str(port),
        BASE_IMAGE=base_image,
    )
    ex = Example.copy(EXAMPLE, work / "app", env, port)
    # A repository of its own: no test finds (and reuses) a build another test pushed.
    ex.repository = f"digits-api-{uuid.uuid4().hex[:8]}"
    config = ex.root / "shipway.yaml"
    config.write_text(config.read_text().replace("  repository: digits-api\n", f"  repository: {ex.repository}\n"))
    ex.commit("a repository of its own")
    yield ex
    ex.shipway("down")


@pytest.fixture
def released(example: Example, models: dict[str, Path], tmp_path: Path) -> Any:
    """The good model published (alias production), built, pushed and live: the build record."""
    example.publish(models["good"], "--alias", "production")
    build = example.run_ok(tmp_path / "first.json", "--skip-tests")
    assert example.release_ok(tmp_path / "first-release.json")["action"] == "deployed"
    return build


def _tags(reg: RegistryService, repository: str) -> list[str]:
    resp = requests.get(f"http://{reg.address}/v2/{repository}/tags/list", auth=(reg.username, reg.password), timeout=5)
    if resp.status_code == 404:
        return []
    resp.raise_for_status()
    return sorted(resp.json().get("tags") or [])


def _verify_containers(image_id: str) -> list[str]:
    """The verify containers of ``image_id`` the engine holds, running or not."""
    filters = {"label": "io.shipway.verify=digits-api", "ancestor": image_id}
    return [str(c.id) for c in dockerutil.client().containers.list(all=True, filters=filters)]


def _abandoned_push_tag() -> str:
    """A staging push tag as a run of this host that was killed leaves it."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"127.0.0.1:1/shipway-staging/digits-api:build-{journal.tag_host()}-{dead.pid}-0badc0de"
    dockerutil.client().api.tag(ensure_tiny_image(), *name.rsplit(":", 1))
    return name


def test_publish_run_release_serves_the_model(example: Example, models: dict[str, Path], tmp_path: Path) -> None:
    pub = example.shipway("model", "publish", str(models["good"]), "--name", "digits", "--alias", "production")
    assert pub.returncode == 0
    assert "published digits:1" in pub.stdout

    record = example.run_ok(tmp_path / "build.json")
    head = example.git("rev-parse", "HEAD")
    assert record["status"] == "ok"
    assert record["source"]["commit"] == head
    assert record["source"]["dirty"] is False
    assert record["model"]["version"] == "1"
    assert record["model_digest"].startswith("sha256:")
    assert [s["name"] for s in record["stages"]] == ["test", "find", "model", "build", "verify", "push"]
    assert record["action"] == "built"
    assert all(c["ok"] for c in record["checks"])
    assert len(record["checks"]) == 5
    assert _verify_containers(record["local_image_id"]) == []  # removed beside the push, before the run ended
    digest = record["image"]["digest"]
    assert record["image"]["tag"] == f"{head[:12]}-m1"

    labels = dockerutil.client().images.get(record["local_image_id"]).labels
    assert labels["org.opencontainers.image.revision"] == head
    assert labels["io.shipway.model.version"] == "1"
    assert labels["io.shipway.model.digest"] == record["model_digest"]

    assert example.release_ok(tmp_path / "release.json")["action"] == "deployed"
    assert example.score("seven.json")["label"] == 7
    assert example.score("heldout.json")["labels"] == list(range(10))
    version = requests.get(example.url("/version"), timeout=5).json()
    assert version["commit"] == head
    assert version["model"]["version"] == "1"

    assert example.release_ok(tmp_path / "again.json")["action"] == "noop"
    live = example.live()
    assert live["state"] == "healthy"
    assert live["image"]["digest"] == digest
    assert live["labels"]["org.opencontainers.image.revision"] == head

    plan = json.loads(example.shipway("plan", "--json").stdout)
    assert plan["model"]["version"] == "1"
    assert plan["release"] == "no-op (already live)"
    assert plan["image"].endswith(f"/{example.repository}:{head[:12]}-m1")
    listed = json.loads(example.shipway("model", "list", "digits", "--json").stdout)
    assert listed["aliases"] == {"production": "1"}
    assert [v["version"] for v in listed["versions"]] == ["1"]


def test_code_only_change_reuses_the_model_layer(
    example: Example, models: dict[str, Path], tmp_path: Path, shipway_registry: RegistryService
) -> None:
    # A model layer of this test's own (the good model plus a unique file): no other image in the
    # engine holds it, so the pulls below show what a node without it downloads.
    model = tmp_path / "model"
    shutil.copytree(models["good"], model)
    (model / "nonce.txt").write_text(uuid.uuid4().hex)
    example.publish(model)
    first = example.run_ok(tmp_path / "first.json", "--skip-tests")
    base_layers = dockerutil.client().images.get(BASE_IMAGE).attrs["RootFS"]["Layers"]
    above_base = len(base_layers)
    # The model layer sits right above the base image's layers, below the dependencies and the code.
    assert first["layers"][:above_base] == base_layers
    assert first["layers"][above_base] == first["model_layer"]

    app_py = example.root / "digits_api" / "app.py"
    app_py.write_text(app_py.read_text() + "\n# a code-only change\n")
    example.commit("code-only change")
    second = example.run_ok(tmp_path / "code.json", "--skip-tests")
    assert second["image"]["digest"] != first["image"]["digest"]
    assert second["model_layer"] == first["model_layer"]
    assert second["uploaded_bytes"] < 1_000_000
    # The first build on this engine took the layers with docker save, the next ones by a push to the
    # staging registry: the first push sends every layer there; from then on a code-only commit sends
    # the new code layer and the config, not the base or the venv.
    assert "export (save)" in _stage(first, "build")["detail"]
    assert "export (push)" in _stage(second, "build")["detail"]
    app_py.write_text(app_py.read_text() + "\n# another code-only change\n")
    example.commit("another code-only change")
    third = example.run_ok(tmp_path / "code2.json", "--skip-tests")
    assert "export (push)" in _stage(third, "build")["detail"]
    assert _exported_mb(third) < 1.0 < _exported_mb(second)
    assert third["uploaded_bytes"] < 1_000_000
    # Base, model and the dependency layers (requirements, wheels, venv) are shared; the code is not.
    assert second["layers"][: above_base + 4] == first["layers"][: above_base + 4]
    assert second["layers"][-1] != first["layers"][-1]

    # A node that runs the first image pulls the second without the model layer: it already has it.
    client = dockerutil.client()
    for record in (first, second, third):
        with contextlib.suppress(docker.errors.ImageNotFound):  # build.keep_images may have pruned it
            client.images.remove(record["local_image_id"], force=True)
    auth = {"username": shipway_registry.username, "password": shipway_registry.password}
    pulled = {}
    for name, record in (("first", first), ("second", second)):
        ref = f"{record['image']['repository']}@{record['image']['digest']}"
        events = client.api.pull(ref, auth_config=auth, stream=True, decode=True)
        pulled[name] = {e["id"]: e["status"] for e in events if "id" in e and "status" in e}
    model_layer = first["model_layer"].split(":")[1][:12]
    assert pulled["first"][model_layer] == "Pull complete"
    assert pulled["second"][model_layer] == "Already exists"
    assert pulled["second"][second["layers"][-1].split(":")[1][:12]] == "Pull complete"


def _base_layers() -> list[str]:
    return list(dockerutil.client().images.get(BASE_IMAGE).attrs["RootFS"]["Layers"])


def _stage(record: Any, name: str) -> Any:
    return next(s for s in record["stages"] if s["name"] == name)


def _exported_mb(record: Any) -> float:
    detail = _stage(record, "build")["detail"]
    return float(detail.split(" MB out of the engine")[0].rsplit(" ", 1)[1])


def test_export_by_push_and_by_save_give_the_same_image(
    example: Example, models: dict[str, Path], tmp_path: Path, shipway_registry: RegistryService
) -> None:
    example.publish(models["good"])
    config = example.root / "shipway.yaml"
    text = config.read_text()
    records = {}
    for how in ("save", "push"):
        # Both runs build the same (uncommitted) tree with one source date: the same labels and config.
        config.write_text(text.replace("\nbuild:\n", f"\nbuild:\n  export: {how}\n"))
        out = tmp_path / f"{how}.json"
        run = example.shipway("run", "--skip-tests", "-o", str(out), env={"SOURCE_DATE_EPOCH": "1767225600"})
        assert run.returncode == EXIT["ok"], run.stderr
        records[how] = example.record(out)
        assert f"export ({how})" in _stage(records[how], "build")["detail"]
    save, push = records["save"], records["push"]
    assert push["local_image_id"] == save["local_image_id"]
    assert push["layers"][: len(_base_layers())] == save["layers"][: len(_base_layers())] == _base_layers()
    assert push["model_layer"] == save["model_layer"]
    assert len(push["layers"]) == len(save["layers"])
    # The push build's manifest is whole: the registry holds every blob it names, config = the engine's image.
    auth = (shipway_registry.username, shipway_registry.password)
    base = f"http://{shipway_registry.address}/v2/{example.repository}"
    manifest = requests.get(
        f"{base}/manifests/{push['image']['digest']}",
        auth=auth,
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=10,
    ).json()
    assert manifest["config"]["digest"] == push["local_image_id"]
    assert [layer["digest"] for layer in manifest["layers"]] == push["layers"]
    for layer in manifest["layers"]:
        head = requests.head(f"{base}/blobs/{layer['digest']}", auth=auth, timeout=10)
        assert (head.status_code, int(head.headers["Content-Length"])) == (200, layer["size"])

    # A staging registry that cannot start: auto falls back to docker save and says so; push is an error.
    staging_root = Path(example.env["SHIPWAY_CACHE_DIR"]) / "staging"
    shutil.rmtree(staging_root / "blobs")
    (staging_root / "blobs").write_text("not a folder")
    config.write_text(text)
    run = example.shipway("run", "--skip-tests", "--rebuild", "-o", str(tmp_path / "auto.json"))
    assert run.returncode == EXIT["ok"], run.stderr
    assert "taking the layers with docker save (now and from now on" in run.stdout + run.stderr
    assert "export (save)" in _stage(example.record(tmp_path / "auto.json"), "build")["detail"]
    (staging_root / "blobs").unlink()  # the staging registry could start again, but this engine is not asked
    run = example.shipway("run", "--skip-tests", "--rebuild", "-o", str(tmp_path / "auto2.json"))
    assert run.returncode == EXIT["ok"], run.stderr
    assert "export (save)" in _stage(example.record(tmp_path / "auto2.json"), "build")["detail"]
    assert "taking the layers" not in run.stdout + run.stderr
    (staging_root / "blobs").write_text("not a folder")
    config.write_text(text.replace("\nbuild:\n", "\nbuild:\n  export: push\n"))
    run = example.shipway("run", "--skip-tests", "--rebuild")
    assert run.returncode == EXIT["build"], run.stderr
    assert "build.export push: cannot start the staging registry" in run.stderr


def test_failing_verify_blocks_the_push(
    example: Example, released: Any, models: dict[str, Path], tmp_path: Path, shipway_registry: RegistryService
) -> None:
    tags_before = _tags(shipway_registry, example.repository)
    assert tags_before  # the released build is there
    example.publish(models["bad"])
    abandoned = _abandoned_push_tag()
    run = example.shipway("run", "--skip-tests", "-o", str(tmp_path / "bad.json"))
    assert run.returncode == EXIT["verify"]
    assert "verify checks failed against the built image" in run.stderr
    assert "$.label: expected 7, got 8" in run.stderr
    record = example.record(tmp_path / "bad.json")
    assert record["status"] == "failed"
    assert record["image"] is None
    assert [s["name"] for s in record["stages"]][-1] == "verify"
    assert _tags(shipway_registry, example.repository) == tags_before
    assert _verify_containers(record["local_image_id"]) == []
    assert abandoned not in dockerutil.client().images.get(ensure_tiny_image()).tags  # a failed run tidies too
    assert example.score("seven.json")["label"] == 7  # the live release is untouched
    # A model change replaces the model layer and keeps the dependency layers.
    above_base = len(dockerutil.client().images.get(BASE_IMAGE).attrs["RootFS"]["Layers"])
    assert record["model_layer"] != released["model_layer"]
    assert record["layers"][above_base] == record["model_layer"]
    assert record["layers"][above_base + 1 : above_base + 4] == released["layers"][above_base + 1 : above_base + 4]


def test_release_failing_live_checks_rolls_back(
    example: Example, released: Any, models: dict[str, Path], tmp_path: Path
) -> None:
    live_before = example.live()["image"]["digest"]
    assert live_before == released["image"]["digest"]
    # A build whose (weaker) smoke test let a bad model through...
    example.publish(models["bad"])
    weak = (example.root / "shipway.yaml").read_text().split("verify:")[0]
    weak += "verify:\n  - {request: GET /healthz, expect_status: 200}\n"
    (example.root / "shipway.weak.yaml").write_text(weak)
    run = example.shipway("-c", "shipway.weak.yaml", "run", "--skip-tests", "-o", str(tmp_path / "weak.json"))
    assert run.returncode == EXIT["ok"], run.stderr
    bad_digest = example.record(tmp_path / "weak.json")["image"]["digest"]
    # ...is released with the real checks: they fail live, and the release rolls back.
    rel = example.shipway("release", "-o", str(tmp_path / "rel.json"))
    assert rel.returncode == EXIT["rolled_back"], rel.stderr
    assert "was rolled back" in rel.stderr
    assert "$.label: expected 7, got 8" in rel.stderr
    record = example.record(tmp_path / "rel.json")
    assert record["action"] == "rolled_back"
    assert record["image"]["digest"] == bad_digest
    assert [s["name"] for s in record["stages"]] == ["pick", "deploy", "check", "rollback"]
    live = example.live()
    assert live["state"] == "healthy"
    assert live["image"]["digest"] == live_before
    assert example.score("seven.json")["label"] == 7
    # The nightly release that follows does not retry the build that failed: exit 0, nothing changes.
    skipped = example.release_ok(tmp_path / "again.json")
    assert skipped["action"] == "skipped"
    assert "already failed its release" in skipped["message"]
    assert [s["name"] for s in skipped["stages"]] == ["pick"]
    assert example.live()["image"]["digest"] == live_before


def test_rollback_on_demand(example: Example, released: Any, tmp_path: Path) -> None:
    app_py = example.root / "digits_api" / "app.py"
    app_py.write_text(app_py.read_text() + "\n# a code-only change\n")
    example.commit("code-only change")
    code_only = example.run_ok(tmp_path / "code.json", "--skip-tests")
    example.release_ok(
        tmp_path / "code-release.json", "--image", f"{code_only['image']['repository']}:{code_only['image']['tag']}"
    )
    assert example.live()["image"]["digest"] == code_only["image"]["digest"]
    back = example.shipway("rollback", "-o", str(tmp_path / "rb.json"))
    assert back.returncode == EXIT["ok"], back.stderr
    assert example.live()["image"]["digest"] == released["image"]["digest"]
    assert example.score("seven.json")["label"] == 7


def test_wrong_registry_password_is_a_clear_error(example: Example) -> None:
    run = example.shipway("run", env={"SHIPWAY_REGISTRY_PASSWORD": "not-the-password"})
    assert run.returncode == EXIT["backend"]
    assert "rejected user 'shipway' (registry.username/password)" in run.stderr
    assert "not-the-password" not in run.stderr + run.stdout
    assert "Traceback" not in run.stderr
    # It fails before the tests and the build: no stage ran.
    assert "build" not in run.stderr


def test_corrupted_model_file_stops_the_run_in_the_model_stage(
    example: Example, models: dict[str, Path], tmp_path: Path
) -> None:
    example.publish(models["good"])
    stored = Path(example.env["SHIPWAY_MODEL_STORE"]) / "digits" / "versions" / "1" / "files" / "weights.npz"
    data = bytearray(stored.read_bytes())
    data[100] ^= 0xFF
    stored.write_bytes(bytes(data))
    run = example.shipway("run", "--skip-tests", "-o", str(tmp_path / "corrupt.json"), env={"MODEL_SELECT": "1"})
    assert run.returncode == EXIT["model"], run.stderr
    assert "weights.npz: sha256" in run.stderr
    assert "!= manifest" in run.stderr
    record = example.record(tmp_path / "corrupt.json")
    assert record["status"] == "failed"
    assert [(s["name"], s["status"]) for s in record["stages"]] == [
        ("test", "skipped"),
        ("find", "ok"),
        ("model", "failed"),
    ]
    assert not record.get("local_image_id")  # nothing was loaded into the engine, nothing pushed
    assert not record.get("image")


def test_no_secret_in_records_or_images(
    example: Example, models: dict[str, Path], tmp_path: Path, shipway_registry: RegistryService
) -> None:
    example.publish(models["good"])
    record = example.run_ok(tmp_path / "build.json", "--skip-tests")
    password = shipway_registry.password
    records = list((example.root / ".shipway").rglob("*.json"))
    assert records
    for path in [*records, tmp_path / "build.json"]:
        assert password not in path.read_text(), path
    client = dockerutil.client()
    image = client.images.get(record["local_image_id"])
    assert password not in json.dumps(image.attrs)
    assert password not in json.dumps(client.api.history(image.id))


def test_failing_tests_stop_the_run_and_are_reported(example: Example, tmp_path: Path) -> None:
    test_file = example.root / "tests" / "unit" / "test_app.py"
    test_file.write_text(test_file.read_text() + "\n\ndef test_broken():\n    assert 1 == 2\n")
    run = example.shipway("run", "-o", str(tmp_path / "r.json"), "--junit", str(tmp_path / "r.xml"))
    assert run.returncode == EXIT["tests"]
    assert "tests failed (exit 1)" in run.stderr
    record = example.record(tmp_path / "r.json")
    assert record["status"] == "failed"
    assert record["model"] is None
    assert [(s["name"], s["status"]) for s in record["stages"]] == [("test", "failed")]
    import xml.etree.ElementTree as ET

    suite = ET.parse(tmp_path / "r.xml").getroot().find("testsuite")
    assert suite is not None
    assert suite.get("failures") == "1"
    case = suite.find("testcase[@name='test']")
    assert case is not None
    assert case.find("failure") is not None


OBSERVER = """
import json, os
from shipway.hookspecs import hookimpl

LOG = os.environ["OBSERVER_LOG"]

def _log(**event):
    with open(LOG, "a") as f:
        f.write(json.dumps(event) + "\\n")

@hookimpl
def shipway_stage_finished(stage, command):
    _log(hook="stage", command=command, name=stage.name, status=stage.status)

@hookimpl
def shipway_run_finished(record):
    _log(hook="run", status=record.status, model=record.model.version if record.model else None)

@hookimpl
def shipway_release_finished(record):
    _log(hook="release", action=record.action)

@hookimpl
def shipway_build_labels(build):
    return {"org.example.built-by": "observer"}
"""


def test_lifecycle_hooks_observe_run_and_release(example: Example, models: dict[str, Path], tmp_path: Path) -> None:
    example.publish(models["good"])
    site = tmp_path / "site"
    (site / "observer_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "observer_plugin.py").write_text(OBSERVER)
    (site / "observer_plugin-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: observer-plugin\nVersion: 1.0\n"
    )
    (site / "observer_plugin-1.0.dist-info" / "entry_points.txt").write_text("[shipway]\nobserver = observer_plugin\n")
    log = tmp_path / "events.jsonl"
    env = {"PYTHONPATH": str(site), "OBSERVER_LOG": str(log)}
    run = example.shipway("run", "--skip-tests", "-o", str(tmp_path / "r.json"), env=env)
    assert run.returncode == EXIT["ok"], run.stderr
    rel = example.shipway("release", env=env)
    assert rel.returncode == EXIT["ok"], rel.stderr
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["name"], e["status"]) for e in events if e.get("command") == "run"] == [
        ("test", "skipped"),
        ("find", "ok"),
        ("model", "ok"),
        ("build", "ok"),
        ("verify", "ok"),
        ("push", "ok"),
    ]
    assert {"hook": "run", "status": "ok", "model": "1"} in events
    assert [e["name"] for e in events if e.get("command") == "release"] == ["pick", "deploy", "check"]
    assert events[-1] == {"hook": "release", "action": "deployed"}
    image_id = example.record(tmp_path / "r.json")["local_image_id"]
    assert dockerutil.client().images.get(image_id).labels["org.example.built-by"] == "observer"
