"""`shipway run` (the CLI, in a subprocess) against a registry behind the kit's fault proxy.

Bursts of 503 and an upload cut mid-body are retried and the run pushes its
image; a registry answering 503 for good ends the run in its preflight with exit
code 7 and one line naming the registry and the endpoint, no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from shipway import dockerutil
from shipway.testing.faults import FaultProxy
from shipway.testing.project import AppProject, project_env
from shipway.testing.services import RegistryService, free_port

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "flask_app"
BASE_IMAGE = os.environ.get("SHIPWAY_BASE_IMAGE", "shipway-base:bookworm")
RETRIES = "  retries: {attempts: 4, max_seconds: 30, backoff: 0.1, max_backoff: 0.5}\n"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "good"
    subprocess.run([sys.executable, "train.py", "--out", str(out)], cwd=EXAMPLE, check=True, capture_output=True)
    return out


@pytest.fixture
def proxy(shipway_registry: RegistryService, shipway_fault_proxy: Callable[..., FaultProxy]) -> FaultProxy:
    return shipway_fault_proxy(shipway_registry.address)


@pytest.fixture
def app(tmp_path: Path, shipway_docker: None, shipway_registry: RegistryService, proxy: FaultProxy) -> AppProject:
    """The flask example pushing through the proxy to a repository of its own, with quick retries."""
    try:
        dockerutil.client().images.get(BASE_IMAGE)
    except Exception:  # noqa: BLE001
        pytest.fail(f"base image {BASE_IMAGE} is missing: run scripts/services.sh", pytrace=False)
    work = tmp_path / "work"
    (work / "cache").mkdir(parents=True)
    env = project_env(
        work,
        shipway_registry,
        drop=("DIGITS_", "MODEL_SELECT", "BASE_IMAGE"),
        registry_address=proxy.address,
        DIGITS_PORT=str(free_port()),
        BASE_IMAGE=BASE_IMAGE,
    )
    project = AppProject.copy(EXAMPLE, work / "app", env, int(env["DIGITS_PORT"]))
    config = project.root / "shipway.yaml"
    repository = f"faults-{uuid.uuid4().hex[:8]}"
    text = config.read_text().replace("  repository: digits-api\n", f"  repository: {repository}\n{RETRIES}")
    assert RETRIES in text
    config.write_text(text)
    project.commit("through the fault proxy")
    return project


def test_run_survives_503_bursts_and_a_cut_upload(
    app: AppProject, proxy: FaultProxy, model: Path, shipway_registry: RegistryService, tmp_path: Path
) -> None:
    assert app.shipway("model", "publish", str(model), "--name", "digits").returncode == 0
    proxy.fail(503, times=3)  # the preflight
    proxy.fail(503, times=2, method="PUT", path="/manifests/")
    proxy.reset(after_bytes=200_000, direction="request", method="PUT", path="/blobs/uploads/")
    run = app.shipway("run", "--skip-tests", "-o", str(tmp_path / "build.json"))
    assert run.returncode == 0, run.stderr
    assert proxy.count("fail") == 5
    assert proxy.count("reset", method="PUT") == 1
    record = app.record(tmp_path / "build.json")
    image = record["image"]
    repository, tag = image["repository"].split("/", 1)[1], image["tag"]
    direct = requests.head(
        f"http://{shipway_registry.address}/v2/{repository}/manifests/{tag}",
        auth=(shipway_registry.username, shipway_registry.password),
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=10,
    )
    assert direct.headers["Docker-Content-Digest"] == image["digest"]  # the whole image, under its tag


def test_persistent_503_exits_7_with_one_line(app: AppProject, proxy: FaultProxy) -> None:
    proxy.fail(503, times=None)
    started = time.monotonic()
    run = app.shipway("run", "--skip-tests")
    elapsed = time.monotonic() - started
    assert run.returncode == 7
    lines = run.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: registry {proxy.address}: GET http://{proxy.address}/v2/: answered 503")
    assert "(4 tries" in lines[-1]
    assert "Traceback" not in run.stderr
    assert [line for line in lines if line.startswith("error:")] == [lines[-1]]
    assert elapsed < 20  # preflight: before the tests, the model and the build
    assert proxy.count("fail") == 4
