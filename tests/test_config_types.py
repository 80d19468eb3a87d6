"""YAML types that used to reach Python errors, or to be converted silently, get clean answers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shipway import config, plugins
from shipway.cli import main

VALID = """\
version: 1
app:
  name: digits-api
model:
  name: digits
  select: latest
registry:
  kind: oci
  address: 127.0.0.1:5000
  repository: digits-api
"""


def _app(extra: str) -> str:
    return VALID.replace("  name: digits-api\n", f"  name: digits-api\n{extra}", 1)


# (id, yaml text, line of the error, fragment)
ERRORS = [
    ("build timeout inf", VALID + "build: {timeout: .inf}\n", 11, "build.timeout: Input should be a finite number"),
    ("build timeout nan", VALID + "build: {timeout: .NaN}\n", 11, "build.timeout: Input should be a finite number"),
    (
        "backend deadline inf",
        VALID + "orchestrator: {kind: docker, deadline: .inf}\n",
        11,
        "orchestrator.deadline: Input should be a finite number",
    ),
    (
        "build timeout from env inf",
        VALID + "build: {timeout: '${BT}'}\n",
        11,
        "build.timeout: Input should be a finite",
    ),
    ("deadline -inf", VALID + "release: {deadline: -.inf}\n", 11, "release.deadline: Input should be a finite"),
    (
        "test timeout too long",
        VALID + "test: {command: [x], timeout: 1e9}\n",
        11,
        "test.timeout: Input should be less than or equal to 21600",
    ),
    (
        "verify timeout inf",
        VALID + "verify: [{request: GET /x, timeout: .inf}]\n",
        11,
        "verify[0].timeout: Input should be a finite number",
    ),
    ("kind is a list", VALID.replace("kind: oci", "kind: [oci]"), 8, "registry.kind: kind must be a string"),
    ("kind is a number", VALID.replace("kind: oci", "kind: 5"), 8, "registry.kind: kind must be a string"),
    ("nested reference", VALID.replace("name: digits\n", "name: ${A:-${B}}\n"), 5, "model.name: nested reference"),
    ("binary", VALID.replace("name: digits\n", "name: !!binary ZGlnaXRz\n"), 5, "YAML tag !!binary is not supported"),
    ("explicit timestamp", VALID.replace("select: latest", "select: !!timestamp 2024-01-01"), 6, "!!timestamp"),
    ("set", _app("  env: !!set {a, b}\n"), 4, "app.env: YAML tag !!set is not supported"),
    ("omap", _app("  env: !!omap [{a: b}]\n"), 4, "app.env: YAML tag !!omap is not supported"),
    ("python tag", VALID.replace("name: digits\n", "name: !!python/name:os.system x\n"), 5, "!!python/name:os.system"),
    ("local tag", VALID.replace("name: digits\n", "name: !vault x\n"), 5, "model.name: YAML tag !vault"),
    ("tagged key", _app("  env: {!!binary eA==: y}\n"), 4, "YAML tag !!binary"),
    ("bad explicit int", VALID.replace("name: digits\n", "name: !!int many\n"), 5, "'many' is not a valid !!int"),
    ("bool for a number", VALID + "release: {replicas: true}\n", 11, "release.replicas: expected a number, got true"),
    ("bool for a port", _app("  port: false\n"), 4, "app.port: expected a number, got false"),
    ("bool for the version", VALID.replace("version: 1", "version: true"), 1, "version: true is not a valid value"),
    ("50-digit integer", _app("  port: " + "9" * 50 + "\n"), 4, "app.port: integer with more than 40 digits"),
    ("5000-digit integer", _app("  port: " + "9" * 5000 + "\n"), 4, "integer with more than 40 digits"),
    ("bool in env", _app("  env: {DEBUG: true}\n"), 4, "app.env.DEBUG: Input should be a valid string (got true)"),
    ("float in env", _app("  env: {RATIO: 0.5}\n"), 4, "app.env.RATIO: Input should be a valid string (got 0.5)"),
    (
        "null in command",
        VALID + "test: {command: [python, null]}\n",
        11,
        "test.command[1]: Input should be a valid str",
    ),
    ("null verify item", VALID + "verify: [null]\n", 11, "verify[0]: Input should be a valid dictionary"),
    ("float select", VALID.replace("select: latest", "select: 1.5"), 6, "model.select: Input should be a valid string"),
    (
        "list select",
        VALID.replace("select: latest", "select: [latest]"),
        6,
        "model.select: Input should be a valid str",
    ),
    ("date-like bad select", VALID.replace("select: latest", "select: 2024-01-01 10:00"), 6, "model.select: "),
    ("null registry", VALID.split("registry:")[0] + "registry:\n", 7, "registry: Input should be a valid dictionary"),
]


@pytest.mark.parametrize(("name", "text", "line", "fragment"), ERRORS, ids=[e[0] for e in ERRORS])
def test_odd_yaml_types_get_a_clean_positioned_error(
    name: str,
    text: str,
    line: int,
    fragment: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BT", "inf")
    monkeypatch.delenv("A", raising=False)
    monkeypatch.setenv("B", "b")
    path = tmp_path / "shipway.yaml"
    path.write_text(text)
    code = main(["-c", str(path), "validate"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert re.search(rf"{re.escape(str(path))}:{line}:\d+: .*{re.escape(fragment)}", err), err


def _load(tmp_path: Path, text: str) -> config.LoadedConfig:
    path = tmp_path / "shipway.yaml"
    path.write_text(text)
    return config.load(path, plugins.load())


def test_a_date_is_the_version_name_that_was_written(tmp_path: Path) -> None:
    loaded = _load(tmp_path, VALID.replace("select: latest", "select: 2024-01-01"))
    assert loaded.config.model.select == "2024-01-01"


def test_env_values_are_read_as_written(tmp_path: Path) -> None:
    env = "  env: {FLAG: yes, OFF: no, PORT: 8000, DAY: 2024-01-01, AT: '1:30', MODE: 0755, SEXA: 1:30}\n"
    loaded = _load(tmp_path, _app(env))
    assert loaded.config.app.env == {
        "FLAG": "yes",
        "OFF": "no",
        "PORT": "8000",
        "DAY": "2024-01-01",
        "AT": "1:30",
        "MODE": "0755",
        "SEXA": "1:30",
    }


def test_core_scalars_keep_their_types(tmp_path: Path) -> None:
    loaded = _load(
        tmp_path,
        VALID + "release: {replicas: 0x3, deadline: 1.5e2}\nverify: [{request: GET /x, body: {a: ~, b: TRUE}}]\n",
    )
    assert (loaded.config.release.replicas, loaded.config.release.deadline) == (3, 150.0)
    assert loaded.config.verify[0].body == {"a": None, "b": True}


def test_upper_bounds_leave_room_for_slow_builds(tmp_path: Path) -> None:
    loaded = _load(tmp_path, VALID + "build: {timeout: 21600}\nrelease: {deadline: 3600}\n")
    assert loaded.config.build.timeout == 21600
