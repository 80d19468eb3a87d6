"""The example app through the whole pipeline, on the real engine and a real registry with auth.

One scenario, in order: publish a trained model; run (test, model, build,
verify, push); release; a code-only change reuses the model layer; a bad model
version is stopped by verify before push; a release that fails its live checks
rolls back while the previous container keeps serving; on-demand rollback;
registry auth failure; a corrupted model file stops the run before the build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from shipway import dockerutil
from shipway.testing.project import AppProject
from shipway.testing.services import RegistryService, free_port

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "flask_app"
BASE_IMAGE = os.environ.get("SHIPWAY_BASE_IMAGE", "shipway-base:bookworm")
EXIT = {"ok": 0, "config": 2, "tests": 3, "verify": 5, "rolled_back": 6, "backend": 7, "model": 8}


class Example(AppProject):
    """The flask example as an AppProject, with its training script and samples."""

    def train(self, out: Path, scramble: bool = False) -> Path:
        cmd = [sys.executable, "train.py", "--out", str(out)] + (["--scramble"] if scramble else [])
        subprocess.run(cmd, cwd=self.root, check=True, capture_output=True)
        return out

    def score(self, sample: str) -> dict:
        return self.post_json_file("/score", f"tests/data/{sample}")


@pytest.fixture(scope="module")
def example(
    tmp_path_factory: pytest.TempPathFactory, shipway_registry: RegistryService, shipway_docker: None
) -> Iterator[Example]:
    client = dockerutil.client()
    try:
        client.images.get(BASE_IMAGE)
    except Exception:  # noqa: BLE001
        pytest.fail(f"base image {BASE_IMAGE} is missing: run scripts/services.sh", pytrace=False)
    work = tmp_path_factory.mktemp("pipeline")
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SHIPWAY_", "DIGITS_", "MODEL_SELECT", "BASE_IMAGE"))
    }
    env.update(
        SHIPWAY_REGISTRY=shipway_registry.address,
        SHIPWAY_REGISTRY_USERNAME=shipway_registry.username,
        SHIPWAY_REGISTRY_PASSWORD=shipway_registry.password,
        SHIPWAY_MODEL_STORE=str(work / "store"),
        SHIPWAY_CACHE_DIR=str(work / "cache"),
        DIGITS_PORT=str(port),
        SHIPWAY_ENVIRONMENT=f"test-{uuid.uuid4().hex[:8]}",  # never touch a developer's own release
        BASE_IMAGE=BASE_IMAGE,
        DOCKER_BUILDKIT="0",
    )
    ex = Example.copy(EXAMPLE, work / "app", env, port)
    yield ex
    ex.shipway("down")


def test_01_publish_run_release_serves_the_model(example: Example, tmp_path: Path) -> None:
    model = example.train(tmp_path / "model")
    pub = example.shipway("model", "publish", str(model), "--name", "digits", "--alias", "production")
    assert pub.returncode == 0
    assert "published digits:1" in pub.stdout

    run = example.shipway("run", "-o", str(tmp_path / "build.json"))
    assert run.returncode == EXIT["ok"], run.stderr
    record = example.record(tmp_path / "build.json")
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
    digest = record["image"]["digest"]
    assert record["image"]["tag"] == f"{head[:12]}-m1"

    labels = dockerutil.client().images.get(record["local_image_id"]).labels
    assert labels["org.opencontainers.image.revision"] == head
    assert labels["io.shipway.model.version"] == "1"
    assert labels["io.shipway.model.digest"] == record["model_digest"]

    rel = example.shipway("release", "-o", str(tmp_path / "release.json"))
    assert rel.returncode == EXIT["ok"], rel.stderr
    assert example.record(tmp_path / "release.json")["action"] == "deployed"
    assert example.score("seven.json")["label"] == 7
    assert example.score("heldout.json")["labels"] == list(range(10))
    version = requests.get(example.url("/version"), timeout=5).json()
    assert version["commit"] == head
    assert version["model"]["version"] == "1"

    again = example.shipway("release", "-o", str(tmp_path / "again.json"))
    assert again.returncode == EXIT["ok"]
    assert example.record(tmp_path / "again.json")["action"] == "noop"
    status = example.shipway("status", "--json")
    live = json.loads(status.stdout)
    assert live["state"] == "healthy"
    assert live["image"]["digest"] == digest
    assert live["labels"]["org.opencontainers.image.revision"] == head

    plan = json.loads(example.shipway("plan", "--json").stdout)
    assert plan["model"]["version"] == "1"
    assert plan["release"] == "no-op (already live)"
    assert plan["image"].endswith(f"/digits-api:{head[:12]}-m1")
    listed = json.loads(example.shipway("model", "list", "digits", "--json").stdout)
    assert listed["aliases"] == {"production": "1"}
    assert [v["version"] for v in listed["versions"]] == ["1"]


def test_02_code_only_change_reuses_the_model_layer(example: Example, tmp_path: Path) -> None:
    first = json.loads(sorted((example.root / ".shipway" / "builds").glob("*.json"))[-1].read_text())
    base_layers = dockerutil.client().images.get(BASE_IMAGE).attrs["RootFS"]["Layers"]
    above_base = len(base_layers)
    # The model layer sits right above the base image's layers, below the dependencies and the code.
    assert first["layers"][:above_base] == base_layers
    assert first["layers"][above_base] == first["model_layer"]

    app_py = example.root / "digits_api" / "app.py"
    app_py.write_text(app_py.read_text() + "\n# a code-only change\n")
    example.commit("code-only change")
    run = example.shipway("run", "--skip-tests", "-o", str(tmp_path / "code.json"))
    assert run.returncode == EXIT["ok"], run.stderr
    second = example.record(tmp_path / "code.json")
    assert second["image"]["digest"] != first["image"]["digest"]
    assert second["model_layer"] == first["model_layer"]
    assert second["uploaded_bytes"] < 1_000_000
    # Base, model and the dependency layers (requirements, wheels, venv) are shared; the code is not.
    assert second["layers"][: above_base + 4] == first["layers"][: above_base + 4]
    assert second["layers"][-1] != first["layers"][-1]

    # A model change (here: a bad version, stopped by verify) replaces the model layer and keeps the dependencies.
    bad = example.train(tmp_path / "bad", scramble=True)
    assert example.shipway("model", "publish", str(bad), "--name", "digits").returncode == 0
    model_run = example.shipway("run", "--skip-tests", "-o", str(tmp_path / "model.json"))
    assert model_run.returncode == EXIT["verify"]
    third = example.record(tmp_path / "model.json")
    assert third["model_layer"] != first["model_layer"]
    assert third["layers"][above_base] == third["model_layer"]
    assert third["layers"][above_base + 1 : above_base + 4] == first["layers"][above_base + 1 : above_base + 4]


def test_03_failing_verify_blocks_the_push(example: Example, tmp_path: Path, shipway_registry: RegistryService) -> None:
    tags_before = _tags(shipway_registry)
    run = example.shipway("run", "--skip-tests", "-o", str(tmp_path / "bad.json"))
    assert run.returncode == EXIT["verify"]
    assert "verify checks failed against the built image" in run.stderr
    assert "$.label: expected 7, got 8" in run.stderr
    record = example.record(tmp_path / "bad.json")
    assert record["status"] == "failed"
    assert record["image"] is None
    assert [s["name"] for s in record["stages"]][-1] == "verify"
    assert _tags(shipway_registry) == tags_before
    assert example.score("seven.json")["label"] == 7  # the live release is untouched


def test_04_release_failing_live_checks_rolls_back(example: Example, tmp_path: Path) -> None:
    live_before = json.loads(example.shipway("status", "--json").stdout)["image"]["digest"]
    # A build whose (weaker) smoke test let a bad model through...
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
    live = json.loads(example.shipway("status", "--json").stdout)
    assert live["state"] == "healthy"
    assert live["image"]["digest"] == live_before
    assert example.score("seven.json")["label"] == 7
    # The nightly release that follows does not retry the build that failed: exit 0, nothing changes.
    again = example.shipway("release", "-o", str(tmp_path / "again.json"))
    assert again.returncode == EXIT["ok"], again.stderr
    skipped = example.record(tmp_path / "again.json")
    assert skipped["action"] == "skipped"
    assert "already failed its release" in skipped["message"]
    assert [s["name"] for s in skipped["stages"]] == ["pick"]
    assert json.loads(example.shipway("status", "--json").stdout)["image"]["digest"] == live_before


def test_05_rollback_on_demand(example: Example, tmp_path: Path) -> None:
    # Release the code-only build of test_02 by its tag, then roll back to the first release.
    builds = sorted((example.root / ".shipway" / "builds").glob("*.json"))
    records = [json.loads(p.read_text()) for p in builds]
    ok = [r for r in records if r["status"] == "ok" and r["checks"] and len(r["checks"]) == 5]
    first, code_only = ok[0], ok[1]
    rel = example.shipway("release", "--image", f"{code_only['image']['repository']}:{code_only['image']['tag']}")
    assert rel.returncode == EXIT["ok"], rel.stderr
    assert json.loads(example.shipway("status", "--json").stdout)["image"]["digest"] == code_only["image"]["digest"]
    back = example.shipway("rollback", "-o", str(tmp_path / "rb.json"))
    assert back.returncode == EXIT["ok"], back.stderr
    live = json.loads(example.shipway("status", "--json").stdout)
    assert live["image"]["digest"] == first["image"]["digest"]
    assert example.score("seven.json")["label"] == 7


def test_06_wrong_registry_password_is_a_clear_error(example: Example) -> None:
    run = example.shipway("run", env={"SHIPWAY_REGISTRY_PASSWORD": "not-the-password"})
    assert run.returncode == EXIT["backend"]
    assert "rejected user 'shipway' (registry.username/password)" in run.stderr
    assert "not-the-password" not in run.stderr + run.stdout
    assert "Traceback" not in run.stderr
    # It fails before the tests and the build: no stage ran.
    assert "build" not in run.stderr


def test_07_corrupted_model_file_stops_the_run_before_the_build(example: Example, tmp_path: Path) -> None:
    store = Path(example.env["SHIPWAY_MODEL_STORE"]) / "digits" / "versions" / "1" / "files" / "weights.npz"
    original = store.read_bytes()
    data = bytearray(original)
    data[100] ^= 0xFF
    store.write_bytes(bytes(data))
    cache = Path(example.env["SHIPWAY_CACHE_DIR"])
    for blob in (cache / "blobs").rglob("*"):  # a fresh runner: nothing cached
        if blob.is_file():
            blob.unlink()
    try:
        run = example.shipway("run", "--skip-tests", "-o", str(tmp_path / "corrupt.json"), env={"MODEL_SELECT": "1"})
    finally:
        store.write_bytes(original)
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


def test_08_no_secret_in_records_or_images(example: Example, shipway_registry: RegistryService) -> None:
    password = shipway_registry.password
    for path in (example.root / ".shipway").rglob("*.json"):
        assert password not in path.read_text(), path
    client = dockerutil.client()
    images = client.images.list(name="shipway/digits-api")
    assert images
    for image in images:
        assert password not in json.dumps(image.attrs)
        assert password not in json.dumps(client.api.history(image.id))


def test_09_failing_tests_stop_the_run_and_are_reported(example: Example, tmp_path: Path) -> None:
    test_file = example.root / "tests" / "unit" / "test_app.py"
    original = test_file.read_text()
    test_file.write_text(original + "\n\ndef test_broken():\n    assert 1 == 2\n")
    try:
        run = example.shipway(
            "run",
            "-o",
            str(tmp_path / "r.json"),
            "--junit",
            str(tmp_path / "r.xml"),
            env={"MODEL_SELECT": "@production"},
        )
    finally:
        test_file.write_text(original)
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


def test_10_lifecycle_hooks_observe_run_and_release(example: Example, tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "observer_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "observer_plugin.py").write_text(OBSERVER)
    (site / "observer_plugin-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: observer-plugin\nVersion: 1.0\n"
    )
    (site / "observer_plugin-1.0.dist-info" / "entry_points.txt").write_text("[shipway]\nobserver = observer_plugin\n")
    log = tmp_path / "events.jsonl"
    env = {"PYTHONPATH": str(site), "OBSERVER_LOG": str(log), "MODEL_SELECT": "@production"}
    run = example.shipway("run", "--skip-tests", "--no-push", "-o", str(tmp_path / "r.json"), env=env)
    assert run.returncode == EXIT["ok"], run.stderr
    live = json.loads(example.shipway("status", "--json").stdout)["image"]
    rel = example.shipway("release", "--image", f"{live['repository']}@{live['digest']}", env=env)
    assert rel.returncode == EXIT["ok"], rel.stderr
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["name"], e["status"]) for e in events if e.get("command") == "run"] == [
        ("test", "skipped"),
        ("find", "ok"),
        ("model", "ok"),
        ("build", "ok"),
        ("verify", "ok"),
        ("push", "skipped"),
    ]
    assert {"hook": "run", "status": "ok", "model": "1"} in events
    assert [e["name"] for e in events if e.get("command") == "release"] == ["pick"]
    assert events[-1] == {"hook": "release", "action": "noop"}
    image_id = example.record(tmp_path / "r.json")["local_image_id"]
    assert dockerutil.client().images.get(image_id).labels["org.example.built-by"] == "observer"


def _tags(reg: RegistryService) -> list[str]:
    resp = requests.get(f"http://{reg.address}/v2/digits-api/tags/list", auth=(reg.username, reg.password), timeout=5)
    return sorted(resp.json().get("tags") or [])
