"""The example app released to Kubernetes (the fake API server, real containers as pods) by the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from shipway import dockerutil
from shipway.testing.project import AppProject, project_env
from shipway.testing.services import RegistryService, free_port
from shipway_kubernetes.testing import FakeApiServer

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "flask_app"
BASE_IMAGE = os.environ.get("SHIPWAY_BASE_IMAGE", "shipway-base:bookworm")


def score(fake: FakeApiServer, app: AppProject, service: str, sample: str) -> dict:
    body = json.loads((app.root / "tests" / "data" / sample).read_text())
    url = f"{fake.url}/api/v1/namespaces/default/services/{service}:80/proxy/score"
    return requests.post(url, json=body, headers={"Authorization": f"Bearer {fake.token}"}, timeout=10).json()


def test_release_to_kubernetes_then_a_failing_release_rolls_back(
    shipway_registry: RegistryService, shipway_fake_k8s: FakeApiServer, shipway_kubeconfig: Path, tmp_path: Path
) -> None:
    try:
        dockerutil.client().images.get(BASE_IMAGE)
    except Exception:  # noqa: BLE001
        pytest.fail(f"base image {BASE_IMAGE} is missing: run scripts/services.sh", pytrace=False)
    environment = f"k8s-{uuid.uuid4().hex[:6]}"
    env = project_env(
        tmp_path,
        shipway_registry,
        drop=("KUBECONFIG", "K8S_"),
        SHIPWAY_ENVIRONMENT=environment,
        KUBECONFIG=str(shipway_kubeconfig),
        K8S_DEADLINE="20",
        BASE_IMAGE=BASE_IMAGE,
    )
    app = AppProject.copy(EXAMPLE, tmp_path / "app", env, free_port())
    cfg = ("-c", "shipway.k8s.yaml")
    service = f"digits-api-{environment}"
    try:
        for out, extra in ((tmp_path / "good", []), (tmp_path / "bad", ["--scramble"])):
            subprocess.run([sys.executable, "train.py", "--out", str(out), *extra], cwd=app.root, check=True)
        assert app.shipway(*cfg, "model", "publish", str(tmp_path / "good"), "--name", "digits").returncode == 0
        run = app.shipway(*cfg, "run", "--skip-tests", "-o", str(tmp_path / "good.json"))
        assert run.returncode == 0, run.stderr
        good = app.record(tmp_path / "good.json")["image"]["digest"]

        rel = app.shipway(*cfg, "release", "-o", str(tmp_path / "rel1.json"))
        assert rel.returncode == 0, rel.stderr
        assert "successfully rolled out" in rel.stderr
        assert score(shipway_fake_k8s, app, service, "seven.json")["label"] == 7
        status = json.loads(app.shipway(*cfg, "status", "--json").stdout)
        assert status["state"] == "healthy"
        assert status["image"]["digest"] == good
        assert status["labels"]["io.shipway.model.version"] == "1"
        assert app.shipway(*cfg, "release", "-o", str(tmp_path / "noop.json")).returncode == 0
        assert app.record(tmp_path / "noop.json")["action"] == "noop"

        # A bad model version that a weaker smoke test let through: live checks fail, rollback.
        assert app.shipway(*cfg, "model", "publish", str(tmp_path / "bad"), "--name", "digits").returncode == 0
        weak = (app.root / "shipway.k8s.yaml").read_text().split("verify:")[
            0
        ] + "verify:\n  - {request: GET /healthz}\n"
        (app.root / "shipway.weak.yaml").write_text(weak)
        assert app.shipway("-c", "shipway.weak.yaml", "run", "--skip-tests").returncode == 0
        bad_release = app.shipway(*cfg, "release", "-o", str(tmp_path / "rel2.json"))
        assert bad_release.returncode == 6, bad_release.stderr
        assert "was rolled back" in bad_release.stderr
        assert "$.label: expected 7, got 8" in bad_release.stderr
        assert app.record(tmp_path / "rel2.json")["action"] == "rolled_back"
        status = json.loads(app.shipway(*cfg, "status", "--json").stdout)
        assert status["state"] == "healthy"
        assert status["image"]["digest"] == good
        assert score(shipway_fake_k8s, app, service, "seven.json")["label"] == 7
        # The failed digest is remembered in the cluster (any runner sees it) and not retried.
        again = app.shipway(*cfg, "release", "-o", str(tmp_path / "rel3.json"))
        assert again.returncode == 0
        assert app.record(tmp_path / "rel3.json")["action"] == "skipped"
        annotations = shipway_fake_k8s.objects[("deployments", "default", service)]["metadata"]["annotations"]
        bad = app.record(tmp_path / "rel2.json")["image"]["digest"]
        assert bad in json.loads(annotations["shipway.io/failed-digests"])
        assert "shipway.io/commit" in annotations  # shipway's own annotations survive the state patch
    finally:
        app.shipway(*cfg, "down")
