"""`shipway doctor` against the real local engine, registry (with auth) and store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from shipway import cli, dockerutil, doctor
from shipway.backends.base import Registry
from shipway.backends.local_store import LocalModelStore, LocalStoreSettings
from shipway.doctor import DoctorCheck
from shipway.domain import ImageRef, Release
from shipway.hookspecs import hookimpl
from shipway.plugins import PluginHost
from shipway.testing.contracts import unique
from shipway.testing.services import free_port

BASE_IMAGE = os.environ.get("SHIPWAY_BASE_IMAGE", "shipway-base:bookworm")
SHIPWAY_HOME = Path(os.environ.get("SHIPWAY_HOME", Path.home() / ".local/share/shipway-dev"))


def _registry_env() -> dict[str, str]:
    path = SHIPWAY_HOME / "registry.env"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run scripts/services.sh", pytrace=False)
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def write_config(folder: Path, store_kind: str = "local", store_path: str = "models", base: str = BASE_IMAGE) -> Path:
    path = folder / "shipway.yaml"
    path.write_text(
        f"""\
version: 1
app: {{name: {unique("doc")}, port: 7070, health: /up}}
model: {{name: weights}}
build: {{base_image: {base}}}
model_store: {{kind: {store_kind}, path: {store_path}}}
registry:
  kind: oci
  address: 127.0.0.1:5000
  repository: doctor-check
  username: ${{SHIPWAY_REGISTRY_USERNAME}}
  password: ${{SHIPWAY_REGISTRY_PASSWORD}}
"""
    )
    return path


@pytest.fixture
def registry_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    found = _registry_env()
    for key, value in found.items():
        monkeypatch.setenv(key, value)
    return found


def _publish(config: Path, tmp_path: Path) -> None:
    files = tmp_path / "w"
    files.mkdir()
    (files / "w.bin").write_bytes(b"weights")
    assert cli.main(["model", "publish", str(files), "--name", "weights", "-c", str(config)]) == 0


def _lines(out: str) -> dict[str, str]:
    return {line[6:21].strip(): line for line in out.splitlines()}


def test_everything_ready_exits_zero(
    tmp_path: Path, registry_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    _publish(config, tmp_path)
    capsys.readouterr()
    assert cli.main(["doctor", "-c", str(config)]) == 0
    lines = _lines(capsys.readouterr().out)
    expected = ["config", "docker", "base image", "store read", "model", "store write", "registry", "registry push"]
    assert list(lines) == [*expected, "orchestrator"]
    assert all(line.startswith("ok ") for line in lines.values())


def test_missing_model_fails_with_the_publish_command(
    tmp_path: Path, registry_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["doctor", "-c", str(write_config(tmp_path))]) == 7
    line = _lines(capsys.readouterr().out)["model"]
    assert line.startswith("FAIL")
    assert "fix: publish one: `shipway model publish PATH --name weights`" in line


def test_wrong_registry_password_fails_and_skips_push(
    tmp_path: Path, registry_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SHIPWAY_REGISTRY_PASSWORD", "not-the-password")
    assert cli.main(["doctor", "-c", str(write_config(tmp_path))]) == 7
    lines = _lines(capsys.readouterr().out)
    assert lines["registry"].startswith("FAIL")
    assert "SHIPWAY_REGISTRY_USERNAME/PASSWORD" in lines["registry"]
    assert "registry push" not in lines


def test_no_secret_is_printed(tmp_path: Path, registry_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["doctor", "--json", "-c", str(write_config(tmp_path))])
    assert registry_env["SHIPWAY_REGISTRY_PASSWORD"] not in capsys.readouterr().out


def test_missing_base_image_names_it(
    tmp_path: Path, registry_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, base="shipway-doctor-missing:never")
    assert cli.main(["doctor", "-c", str(config)]) == 7
    line = _lines(capsys.readouterr().out)["base image"]
    assert ("FAIL" in line, "shipway-doctor-missing:never is not in the local engine" in line) == (True, True)


def test_unwritable_store_fails(
    tmp_path: Path, registry_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # /proc refuses new files even to root, which ignores permission bits.
    cli.main(["doctor", "-c", str(write_config(tmp_path, store_path="/proc/shipway-doctor-models"))])
    line = _lines(capsys.readouterr().out)["store write"]
    assert line.startswith("FAIL")


def test_unreachable_docker_fails_with_the_fix(
    tmp_path: Path, registry_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    dockerutil.client.cache_clear()  # the client is made once per process
    monkeypatch.setattr(dockerutil, "client", dockerutil.client.__wrapped__)
    assert cli.main(["doctor", "-c", str(write_config(tmp_path))]) == 7
    lines = _lines(capsys.readouterr().out)
    assert "fix: start the engine" in lines["docker"]
    assert "base image" not in lines


def test_missing_config_exits_two_and_suggests_init(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "-c", str(tmp_path / "none.yaml")]) == 2
    assert "shipway init" in capsys.readouterr().out


def test_json_output(tmp_path: Path, registry_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "--json", "-c", str(write_config(tmp_path))]) == 7
    found = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert (found["model"]["ok"], found["registry"]["ok"]) == (False, True)
    assert found["model"]["fix"].startswith("publish one")


class CheckedStore(LocalModelStore):
    """A store with a backend-specific doctor check (the optional doctor_checks method)."""

    kind = "checked"

    class Settings(LocalStoreSettings):
        kind: str = "checked"

    def doctor_checks(self) -> list[DoctorCheck]:
        return [DoctorCheck("quota", False, "3 of 3 versions used", fix="delete an old version")]


class Plugin:
    @staticmethod
    @hookimpl
    def shipway_register_model_stores(register: object) -> None:
        register(CheckedStore)  # type: ignore[operator]


def test_backend_doctor_checks_are_added(
    tmp_path: Path, registry_env: dict[str, str], shipway_register_plugin: object
) -> None:
    host: PluginHost = shipway_register_plugin(Plugin(), "checked")  # type: ignore[operator]
    state = cli.State(write_config(tmp_path, store_kind="checked"), debug=False, quiet=True)
    state._host = host
    checks = {c.name: c for c in doctor.run(state)}
    assert checks["quota"] == DoctorCheck("quota", False, "3 of 3 versions used", "delete an old version")
    assert doctor.exit_code(list(checks.values())) == 7


@pytest.mark.parametrize(("health", "expected"), [("/version", "ok"), ("/not-served", "FAIL")])
def test_a_live_release_must_answer_its_health_path(
    tmp_path: Path,
    registry_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    shipway_contract_images: dict[str, ImageRef],
    shipway_contract_registry: Registry,
    health: str,
    expected: str,
) -> None:
    config = write_config(tmp_path)
    text = config.read_text().replace("port: 7070, health: /up", f"port: 8000, health: {health}")
    config.write_text(text + f"orchestrator: {{kind: docker, host_port: {free_port()}}}\n")  # 8000 may be taken
    _publish(config, tmp_path)
    project = cli.State(config, debug=False, quiet=True).project()
    release = Release(app=project.app, image=shipway_contract_images["good"], port=8000, health="/version")
    project.orchestrator.deploy(release, auth=shipway_contract_registry.credentials())
    try:
        capsys.readouterr()
        assert cli.main(["doctor", "-c", str(config)]) == (0 if expected == "ok" else 7)
        line = _lines(capsys.readouterr().out)["live health"]
        assert line.startswith(expected)
        assert f"{health}: 200 in" in line if expected == "ok" else f"{health} answered 404" in line
    finally:
        project.orchestrator.remove(project.app)
