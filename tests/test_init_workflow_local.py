"""The generated GitHub workflow's shipway commands, run locally on a new app against the local backends.

The app is not the example: the one docs/getting-started.md walks through, its own package served
by gunicorn on port 9090, readiness on /ready, a model of two small files under weights/. Backends:
the local store, the registry scripts/services.sh runs on 127.0.0.1:5000 (credentials from
registry.env, as the workflow's secrets), the Docker engine.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from browser import render

from shipway import dockerutil
from shipway.scaffold import GITHUB_WORKFLOW
from shipway.testing.contracts import unique
from shipway.testing.services import free_port

BIN = Path(sys.executable).parent
BASE_IMAGE = os.environ.get("SHIPWAY_BASE_IMAGE", "shipway-base:bookworm")
SHIPWAY_HOME = Path(os.environ.get("SHIPWAY_HOME", Path.home() / ".local/share/shipway-dev"))
EXPR = re.compile(r"\$\{\{\s*(secrets|vars)\.([A-Z0-9_]+)\s*\}\}")

DOC = Path(__file__).resolve().parents[1] / "docs" / "getting-started.md"


def quickstart_app() -> str:
    """The app docs/getting-started.md tells a newcomer to write (so the doc and this test cannot drift)."""
    found = re.search(r"<!-- quickstart-app -->\s*```python\n(.*?)```", DOC.read_text(), re.S)
    assert found, "docs/getting-started.md has no <!-- quickstart-app --> python block"
    return found.group(1)


def _registry_env() -> dict[str, str]:
    path = SHIPWAY_HOME / "registry.env"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run scripts/services.sh", pytrace=False)
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    try:
        dockerutil.client().images.get(BASE_IMAGE)
    except Exception:  # noqa: BLE001 - any failure here means the setup is incomplete
        pytest.fail(f"base image {BASE_IMAGE} is missing (or Docker is down): run scripts/services.sh", pytrace=False)
    folder = tmp_path / "scorer-app"
    (folder / "scorer").mkdir(parents=True)
    (folder / "scorer" / "__init__.py").write_text(quickstart_app())
    (folder / "requirements.txt").write_text("gunicorn==23.0.0\n")
    return folder


def _git(folder: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    subprocess.run(["git", *args], cwd=folder, env=env, check=True, capture_output=True)


def _step_env(workflow: dict[str, Any], values: dict[str, str]) -> dict[str, str]:
    """The workflow's env block with ${{ secrets.X }} / ${{ vars.X }} taken from ``values``."""
    out = {}
    for key, expr in workflow.get("env", {}).items():
        out[key] = EXPR.sub(lambda m: values.get(m.group(2), ""), str(expr))
    return out


def test_generated_workflow_commands_run_and_release_a_new_app(app_dir: Path, tmp_path: Path) -> None:
    name, host_port = unique("scorer"), free_port()
    sh = BIN / "shipway"
    init = [str(sh), "init", "-y", "--dir", str(app_dir), "--name", name, "--port", "9090", "--health", "/ready"]
    init += ["--model", "tiny", "--model-into", "weights", "--command", "gunicorn -b 0.0.0.0:9090 scorer:app"]
    subprocess.run([*init, "--ci", "github", "--host-port", str(host_port)], check=True, capture_output=True)
    _git(app_dir, "init", "-q", "-b", "main")
    _git(app_dir, "add", ".")
    _git(app_dir, "commit", "-q", "-m", "a new app")

    secrets = {**_registry_env(), "SHIPWAY_REGISTRY": "127.0.0.1:5000"}
    workflow = yaml.safe_load((app_dir / GITHUB_WORKFLOW).read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPWAY_", "BASE_IMAGE"))}
    env.update(_step_env(workflow, secrets), BASE_IMAGE=BASE_IMAGE, PATH=f"{BIN}:{env['PATH']}")
    env["SHIPWAY_CACHE_DIR"] = str(tmp_path / "cache")

    model = tmp_path / "model-files"
    model.mkdir()
    (model / "weights.json").write_text(json.dumps({"best": 2}))
    (model / "labels.txt").write_text("cat dog owl\n")
    subprocess.run([str(sh), "model", "publish", str(model), "--name", "tiny"], cwd=app_dir, env=env, check=True)

    commands = [
        (job, step["run"])
        for job in ("run", "release")
        for step in workflow["jobs"][job]["steps"]
        if str(step.get("run", "")).startswith("shipway ")
    ]
    assert [job for job, _ in commands] == ["run", "release"]
    logs: dict[str, list[dict[str, Any]]] = {}
    try:
        for job, command in commands:
            proc = subprocess.run(["bash", "-c", command], cwd=app_dir, env=env, capture_output=True, text=True)
            assert proc.returncode == 0, f"{job}: {command}\n{proc.stderr[-4000:]}"
            logs[job] = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
        build = json.loads((app_dir / "shipway-build.json").read_text())
        assert (build["status"], build["model"]["name"], build["model"]["version"]) == ("ok", "tiny", "1")
        assert "<testsuite" in (app_dir / "shipway-run.xml").read_text()
        release = json.loads((app_dir / "shipway-release.json").read_text())
        assert release["action"] == "deployed"
        live = requests.get(f"http://127.0.0.1:{host_port}/predict", timeout=10).json()
        assert live == {"label": "owl", "model": "1"}
        # --log-format json: every stage and the summary as JSON lines for the CI's log collector
        assert {"stage", "summary"} <= {e["event"] for e in logs["run"]}
        assert [e["outcome"] for e in logs["release"] if e["event"] == "summary"] == ["deployed"]
        # --report: the run's HTML page, as a browser shows it
        text = render(app_dir / "shipway-run.html", tmp_path / "run-report.png", tmp_path)
        for fact in (f"shipway run: {name}", "tiny version 1", build["model_digest"], build["source"]["commit"]):
            assert fact in text, fact
        assert 'GET /ready ok status 200 {"ready": true}' in text
        release_text = render(app_dir / "shipway-release.html", tmp_path / "release-report.png", tmp_path)
        assert f"shipway release: {name} (default)" in release_text
    finally:
        subprocess.run([str(sh), "down"], cwd=app_dir, env=env, capture_output=True)
