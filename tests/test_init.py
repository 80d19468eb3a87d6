"""`shipway init`: files that validate, CI files that pass the official schemas, prompts, no overwrite."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipway import config, plugins
from shipway.cli import main
from shipway.scaffold import AZURE_PIPELINE, GITHUB_WORKFLOW
from shipway.scaffold.answers import PRESETS

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Presets whose plugin the test environment declares (tox.ini deps); each must then validate.
TOX_DEPS = (REPO / "tox.ini").read_text()
PRESET_LIST = [p for p in sorted(PRESETS) if p == "local" or f"-e plugins/{p}" in TOX_DEPS]


def make_app(folder: Path) -> Path:
    """An app that is not the example: its own package, port, health path and model files."""
    (folder / "scorer").mkdir(parents=True)
    (folder / "scorer" / "__init__.py").write_text("")
    (folder / "requirements.txt").write_text("gunicorn==23.0.0\n")
    return folder


def init(folder: Path, *args: str) -> int:
    return main(["init", "--dir", str(folder), "-y", *args])


@pytest.fixture(scope="module")
def host() -> plugins.PluginHost:
    return plugins.load()


def _check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    # The vendored Azure Pipelines schema has patterns only Python's re accepts.
    cmd = [str(BIN / "check-jsonschema"), "--regex-variant", "python", "--builtin-schema", schema, str(path)]
    return subprocess.run(cmd, capture_output=True, text=True)


@pytest.mark.parametrize("preset", PRESET_LIST)
def test_generated_config_validates(preset: str, tmp_path: Path, host: plugins.PluginHost) -> None:
    assert init(make_app(tmp_path), "--backends", preset, "--name", "scorer-svc", "--port", "9090") == 0
    env = {
        "ACR_LOGIN_SERVER": "contoso.azurecr.io",
        "AZURE_SUBSCRIPTION_ID": "sub",
        "AKS_RESOURCE_GROUP": "rg",
        "AKS_CLUSTER": "aks",
        "AZURE_STORAGE_ACCOUNT_URL": "https://m.blob.core.windows.net",
        "S3_BUCKET": "ml-models",
        "AWS_ACCOUNT_ID": "123456789012",
        "AWS_REGION": "eu-west-1",
        "EKS_CLUSTER": "ml-eks",
    }
    loaded = config.load(tmp_path / "shipway.yaml", host, env)
    assert (loaded.model_store.kind, loaded.registry.kind, loaded.orchestrator.kind) == PRESETS[preset]


def test_generated_config_carries_the_answers(tmp_path: Path, host: plugins.PluginHost) -> None:
    args = ["--name", "scorer-svc", "--port", "9090", "--health", "/ready", "--model", "tiny-weights"]
    assert init(make_app(tmp_path), *args, "--model-into", "weights") == 0
    cfg = config.load(tmp_path / "shipway.yaml", host, {}).config
    assert (cfg.app.name, cfg.app.port, cfg.app.health, cfg.model.name, cfg.model.into) == (
        "scorer-svc",
        9090,
        "/ready",
        "tiny-weights",
        "weights/",
    )


def test_dockerfile_copies_deps_then_code_and_leaves_the_model_to_shipway(tmp_path: Path) -> None:
    init(make_app(tmp_path), "--port", "9090", "--model-into", "weights/")
    lines = [ln for ln in (tmp_path / "Dockerfile").read_text().splitlines() if ln.startswith(("FROM", "COPY"))]
    assert lines == [
        "FROM ${BASE_IMAGE}",
        "COPY requirements.txt /tmp/requirements.txt",
        "COPY wheels/ /tmp/wheels/",
        "COPY scorer/ /app/scorer/",
    ]
    assert "model_layer: shipway" in (tmp_path / "shipway.yaml").read_text()


def test_dockerignore_keeps_records_and_git_out(tmp_path: Path) -> None:
    init(make_app(tmp_path))
    ignored = (tmp_path / ".dockerignore").read_text().splitlines()
    assert {".git", ".shipway/", ".venv/"} <= set(ignored)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_github_workflow_passes_the_official_schema(preset: str, tmp_path: Path) -> None:
    init(make_app(tmp_path), "--backends", preset, "--ci", "github")
    found = _check_jsonschema("vendor.github-workflows", tmp_path / GITHUB_WORKFLOW)
    assert found.returncode == 0, found.stdout + found.stderr


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_azure_pipeline_passes_the_official_schema(preset: str, tmp_path: Path) -> None:
    init(make_app(tmp_path), "--backends", preset, "--ci", "azure-pipelines")
    found = _check_jsonschema("vendor.azure-pipelines", tmp_path / AZURE_PIPELINE)
    assert found.returncode == 0, found.stdout + found.stderr


def test_schema_check_can_fail(tmp_path: Path) -> None:
    init(make_app(tmp_path), "--ci", "github")
    path = tmp_path / GITHUB_WORKFLOW
    data = yaml.safe_load(path.read_text())
    data["jobs"]["run"]["runs-on"] = {"not": "a runner"}
    path.write_text(yaml.safe_dump(data))
    assert _check_jsonschema("vendor.github-workflows", path).returncode == 1


def _workflow(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / GITHUB_WORKFLOW).read_text())  # type: ignore[no-any-return]


def _runs(job: dict[str, Any]) -> list[str]:
    return [s["run"] for s in job["steps"] if "run" in s]


def _uses(job: dict[str, Any]) -> list[str]:
    return [s["uses"].split("@")[0] for s in job["steps"] if "uses" in s]


def test_github_workflow_runs_on_push_and_releases_nightly(tmp_path: Path) -> None:
    init(make_app(tmp_path), "--ci", "github")
    wf = _workflow(tmp_path)
    triggers = wf[True]  # YAML 1.1 reads the key `on` as a boolean
    assert (triggers["push"]["branches"], triggers["schedule"][0]["cron"]) == (["main"], "0 2 * * *")
    assert any(r.startswith("shipway run ") for r in _runs(wf["jobs"]["run"]))
    assert any(r.startswith("shipway release ") for r in _runs(wf["jobs"]["release"]))
    assert "schedule" in wf["jobs"]["release"]["if"]


def test_github_workflow_uploads_record_and_junit(tmp_path: Path) -> None:
    init(make_app(tmp_path), "--ci", "github")
    upload = next(s for s in _workflow(tmp_path)["jobs"]["run"]["steps"] if "upload-artifact" in s.get("uses", ""))
    assert {"shipway-build.json", "shipway-run.xml"} <= set(upload["with"]["path"].split())
    assert upload["if"] == "always()"


def test_github_workflow_signs_in_to_azure_with_oidc(tmp_path: Path) -> None:
    init(make_app(tmp_path), "--backends", "azure", "--ci", "github")
    wf = _workflow(tmp_path)
    assert "azure/login" in _uses(wf["jobs"]["release"])
    assert wf["permissions"]["id-token"] == "write"


def test_github_workflow_signs_in_to_aws_with_oidc(tmp_path: Path) -> None:
    init(make_app(tmp_path), "--backends", "aws", "--ci", "github")
    step = next(s for s in _workflow(tmp_path)["jobs"]["run"]["steps"] if "configure-aws" in s.get("uses", ""))
    assert step["with"]["role-to-assume"] == "${{ secrets.AWS_ROLE_ARN }}"


def test_github_workflow_takes_registry_password_from_secrets(tmp_path: Path) -> None:
    init(make_app(tmp_path), "--ci", "github")
    assert _workflow(tmp_path)["env"]["SHIPWAY_REGISTRY_PASSWORD"] == "${{ secrets.SHIPWAY_REGISTRY_PASSWORD }}"


def test_azure_pipeline_builds_on_commits_and_releases_on_schedule(tmp_path: Path) -> None:
    init(make_app(tmp_path), "--backends", "azure", "--ci", "azure-pipelines")
    data = yaml.safe_load((tmp_path / AZURE_PIPELINE).read_text())
    stages = {s["stage"]: s for s in data["stages"]}
    assert (data["trigger"]["branches"]["include"], data["schedules"][0]["cron"]) == (["main"], "0 2 * * *")
    assert stages["release"]["condition"] == "eq(variables['Build.Reason'], 'Schedule')"
    assert stages["build"]["condition"] == "ne(variables['Build.Reason'], 'Schedule')"
    release_steps = stages["release"]["jobs"][0]["steps"]
    cli_step = next(s for s in release_steps if s.get("task") == "AzureCLI@2")
    assert cli_step["inputs"]["azureSubscription"] == "${{ variables.aksConnection }}"
    assert cli_step["inputs"]["inlineScript"].startswith("shipway release ")


def test_init_never_overwrites_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_app(tmp_path)
    (tmp_path / "Dockerfile").write_text("FROM mine\n")
    assert init(tmp_path) == 2
    assert "Dockerfile" in capsys.readouterr().err
    assert (tmp_path / "Dockerfile").read_text() == "FROM mine\n"
    assert not (tmp_path / "shipway.yaml").exists()
    assert not (tmp_path / ".gitignore").exists()


def test_init_force_overwrites(tmp_path: Path) -> None:
    make_app(tmp_path)
    (tmp_path / "Dockerfile").write_text("FROM mine\n")
    assert init(tmp_path, "--force") == 0
    written = (tmp_path / "Dockerfile").read_text()
    assert "shipway\n# writes the model version" in written
    assert "COPY model" not in written


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """git with no user or system settings: no excludes file of the machine's may hide a missing line."""
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
    cmd = ["git", "-c", "core.excludesFile=/dev/null", "-C", str(folder), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def test_init_makes_git_ignore_records_models_and_reports(tmp_path: Path) -> None:
    """With the default local store the model versions live under .shipway/: a `git add .` must not take them."""
    make_app(tmp_path)
    assert _git(tmp_path, "init", "-q").returncode == 0
    assert init(tmp_path, "--ci", "github") == 0
    leftovers = [
        ".shipway/models/tiny/1/weights.bin",
        ".shipway/builds/run.json",
        "scorer/__pycache__/app.cpython-311.pyc",
        ".pytest_cache/v/cache/lastfailed",
        "shipway-build.json",
        "shipway-run.xml",
        "shipway-run.html",
    ]
    for name in leftovers:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    untracked = _git(tmp_path, "status", "--porcelain", "--untracked-files=all").stdout.split("\n")
    listed = {line[3:] for line in untracked if line}
    assert listed.isdisjoint(leftovers), listed & set(leftovers)
    assert {"shipway.yaml", "Dockerfile", ".dockerignore", ".gitignore", "scorer/__init__.py"} <= listed


def test_init_only_adds_the_missing_lines_to_a_gitignore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_app(tmp_path)
    mine = "# mine\n/.shipway\n**/__pycache__/\n!shipway-*.html\n*.log"  # no newline at the end
    (tmp_path / ".gitignore").write_text(mine)
    assert init(tmp_path) == 0
    text = (tmp_path / ".gitignore").read_text()
    assert text.startswith(mine + "\n")
    added = [line for line in text[len(mine) :].splitlines() if line and not line.startswith("#")]
    assert added == [".pytest_cache/", "shipway-*.json", "shipway-*.xml"]  # a negation is the project's choice
    assert "added to" in capsys.readouterr().out
    assert init(tmp_path, "--force") == 0  # everything is there now: the file stays as it is
    assert (tmp_path / ".gitignore").read_text() == text
    assert "added to" not in capsys.readouterr().out


def test_init_appends_in_the_files_own_line_ending(tmp_path: Path) -> None:
    make_app(tmp_path)
    mine = b"# mine\r\n.shipway/\r\ncaf\xe9/\r\n"  # CRLF, and a name that is not UTF-8
    (tmp_path / ".gitignore").write_bytes(mine)
    assert init(tmp_path) == 0
    data = (tmp_path / ".gitignore").read_bytes()
    assert data.startswith(mine + b"\r\n# shipway")
    assert data.count(b"\n") == data.count(b"\r\n")


def test_init_adds_what_a_narrower_line_leaves_to_git(tmp_path: Path) -> None:
    """`/__pycache__/` holds for the root only and ` .shipway/` (a leading blank) for another name: both
    patterns are still added; a `!` line a pattern would overturn keeps that pattern out."""
    make_app(tmp_path)
    assert _git(tmp_path, "init", "-q").returncode == 0
    (tmp_path / ".gitignore").write_text("/__pycache__/\n .shipway/\n!shipway-release.json\n")
    assert init(tmp_path) == 0
    added = (tmp_path / ".gitignore").read_text().split("# shipway:", 1)[1].splitlines()[1:]
    assert added == [".shipway/", "__pycache__/", ".pytest_cache/", "shipway-*.xml", "shipway-*.html"]
    for name in ("scorer/__pycache__/a.pyc", ".shipway/x", "shipway-release.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    ignored = _git(tmp_path, "check-ignore", "--no-index", "scorer/__pycache__/a.pyc", ".shipway/x")
    assert ignored.stdout.split() == ["scorer/__pycache__/a.pyc", ".shipway/x"]
    assert _git(tmp_path, "check-ignore", "-q", "--no-index", "shipway-release.json").returncode == 1


def test_init_says_what_to_ignore_when_it_cannot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_app(tmp_path)
    (tmp_path / ".gitignore").mkdir()
    assert init(tmp_path) == 0  # the project's files are written: init does not fail over .gitignore
    out = capsys.readouterr().out
    assert "could not add to" in out
    assert ".shipway/ __pycache__/" in out
    assert (tmp_path / "shipway.yaml").is_file()


def test_bad_answer_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert init(make_app(tmp_path), "--name", "Not_A_Dns_Name") == 2
    assert "Not_A_Dns_Name" in capsys.readouterr().err


def test_prompts_on_a_terminal(tmp_path: Path) -> None:
    """Run `shipway init` on a real pseudo-terminal and answer its questions."""
    make_app(tmp_path)
    answers = b"scorer-tty\n9191\n/alive\nweights-tty\nlocal\nazure-pipelines\n"
    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen(
        [str(BIN / "shipway"), "init", "--dir", str(tmp_path)],
        stdin=child_fd,
        stdout=child_fd,
        stderr=child_fd,
        env={**os.environ, "TERM": "dumb"},
    )
    os.close(child_fd)
    os.write(main_fd, answers)
    out = b""
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([main_fd], [], [], 0.2)
        if ready:
            try:
                out += os.read(main_fd, 4096)
            except OSError:
                break
    proc.wait(timeout=10)
    os.close(main_fd)
    assert proc.returncode == 0, out.decode(errors="replace")
    text = (tmp_path / "shipway.yaml").read_text()
    assert ("name: scorer-tty" in text, "port: 9191" in text, '"/alive"' in text) == (True, True, True)
    assert (tmp_path / AZURE_PIPELINE).is_file()
    assert not (tmp_path / GITHUB_WORKFLOW).exists()
