"""The example app through `run` → `release` → `rollback` on the real swarm, by the CLI, under bounded load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from shipway.testing.project import AppProject, project_env
from shipway.testing.services import RegistryService, free_port

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "flask_app"
BASE_IMAGE = os.environ.get("SHIPWAY_BASE_IMAGE", "shipway-base:bookworm")


def model_version(body: str) -> str:
    return "model " + str(json.loads(body)["model"]["version"])


def test_example_run_release_rollback_on_swarm(
    swarm: None, shipway_registry: RegistryService, tmp_path: Path, load: Any
) -> None:
    environment = f"swarm-{uuid.uuid4().hex[:6]}"
    port = free_port()
    env = project_env(
        tmp_path,
        shipway_registry,
        drop=("DIGITS_", "SWARM_", "MODEL_SELECT"),
        SHIPWAY_ENVIRONMENT=environment,
        DIGITS_PORT=str(port),
        SWARM_MONITOR="1",
        SWARM_DEADLINE="120",
        BASE_IMAGE=BASE_IMAGE,
    )
    app = AppProject.copy(EXAMPLE, tmp_path / "app", env, port)
    cfg = ("-c", "shipway.swarm.yaml")

    def publish(folder: str) -> None:
        assert app.shipway(*cfg, "model", "publish", str(tmp_path / folder), "--name", "digits").returncode == 0

    def build(config: tuple[str, ...] = cfg) -> str:
        out = tmp_path / f"build-{uuid.uuid4().hex[:6]}.json"
        run = app.shipway(*config, "run", "--skip-tests", "-o", str(out))
        assert run.returncode == 0, run.stderr
        return str(app.record(out)["image"]["digest"])

    def live() -> dict[str, Any]:
        return dict(json.loads(app.shipway(*cfg, "status", "--json").stdout))

    try:
        for out, extra in ((tmp_path / "good", []), (tmp_path / "bad", ["--scramble"])):
            subprocess.run([sys.executable, "train.py", "--out", str(out), *extra], cwd=app.root, check=True)
        publish("good")
        first = build()
        rel = app.shipway(*cfg, "release", "-o", str(tmp_path / "rel1.json"))
        assert rel.returncode == 0, rel.stderr
        assert app.record(tmp_path / "rel1.json")["action"] == "deployed"
        assert app.post_json_file("/score", "tests/data/seven.json")["label"] == 7
        status = live()
        assert status["state"] == "healthy"
        assert status["image"]["digest"] == first
        assert status["running_digests"] == [first]
        assert status["labels"]["io.shipway.model.version"] == "1"
        noop = app.shipway(*cfg, "release", "-o", str(tmp_path / "noop.json"))
        assert noop.returncode == 0
        assert app.record(tmp_path / "noop.json")["action"] == "noop"

        # Model version 2 (the same good weights, re-published): released and rolled back under load.
        publish("good")
        second = build()
        with load(port, key=model_version) as during_release:
            rel2 = app.shipway(*cfg, "release", "-o", str(tmp_path / "rel2.json"))
        during_release.report("example app release model 1 -> 2 through the CLI")
        assert rel2.returncode == 0, rel2.stderr
        assert live()["image"]["digest"] == second
        assert dict(during_release.failed) == {}
        assert set(during_release.bodies) == {"model 1", "model 2"}
        with load(port, key=model_version) as during_rollback:
            back = app.shipway(*cfg, "rollback", "-o", str(tmp_path / "back.json"))
        during_rollback.report("example app `shipway rollback` model 2 -> 1 through the CLI")
        assert back.returncode == 0, back.stderr
        assert app.record(tmp_path / "back.json")["action"] == "rolled_back"
        assert live()["image"]["digest"] == first
        assert dict(during_rollback.failed) == {}

        # A bad model a weaker smoke test let through: it is healthy, so Swarm completes the update;
        # the live verify checks fail, shipway rolls back and exits 6.
        publish("bad")
        weak = (app.root / "shipway.swarm.yaml").read_text().split("verify:")[0]
        weak += "verify:\n  - {request: GET /healthz}\n"
        (app.root / "shipway.weak.yaml").write_text(weak)
        bad = build(("-c", "shipway.weak.yaml"))
        with load(port, key=model_version) as during_bad:
            rel3 = app.shipway(*cfg, "release", "-o", str(tmp_path / "rel3.json"))
        during_bad.report("example app bad model 3: verify fails after convergence, shipway rolls back")
        assert rel3.returncode == 6, rel3.stderr
        assert "was rolled back" in rel3.stderr
        assert "$.label: expected 7, got" in rel3.stderr
        assert app.record(tmp_path / "rel3.json")["action"] == "rolled_back"
        assert dict(during_bad.failed) == {}
        status = live()
        assert status["state"] == "healthy"
        assert status["image"]["digest"] == first
        assert app.post_json_file("/score", "tests/data/seven.json")["label"] == 7
        # The failed digest is kept in the swarm and not retried.
        again = app.shipway(*cfg, "release", "-o", str(tmp_path / "rel4.json"))
        assert again.returncode == 0
        assert app.record(tmp_path / "rel4.json")["action"] == "skipped"
        assert bad in app.record(tmp_path / "rel4.json")["message"]
        assert app.shipway(*cfg, "down").returncode == 0
        assert live()["state"] == "absent"
    finally:
        app.shipway(*cfg, "down")
