"""Every configuration error names file:line:col and the key, exits 2, and shows no traceback."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from shipway.cli import main

VALID = """\
version: 1
app:
  name: digits-api
  port: 8000
model:
  name: digits
  select: latest
registry:
  kind: oci
  address: 127.0.0.1:5000
  repository: digits-api
  username: shipway
  password: ${REG_PASSWORD}
orchestrator:
  kind: docker
verify:
  - {request: GET /healthz}
"""

# (name, yaml text, line the error must point at, fragment the message must contain)
CASES = [
    ("unknown top-level key", VALID + "extra: 1\n", 18, "extra: unknown key"),
    ("misspelled app key", VALID.replace("  port: 8000", "  prot: 8000"), 4, "app.prot: unknown key"),
    ("missing app name", VALID.replace("  name: digits-api\n", ""), 2, "app.name: field required"),
    (
        "missing model section",
        VALID.replace("model:\n  name: digits\n  select: latest\n", ""),
        1,
        "model: field required",
    ),
    ("port is not a number", VALID.replace("port: 8000", "port: eighty"), 4, "app.port:"),
    (
        "port out of range",
        VALID.replace("port: 8000", "port: 70000"),
        4,
        "app.port: Input should be less than or equal to 65535",
    ),
    ("bad app name", VALID.replace("name: digits-api", "name: Digits_API"), 3, "app.name: String should match pattern"),
    ("bad model selector", VALID.replace("select: latest", "select: '@@prod'"), 7, "model.select:"),
    ("bad version", VALID.replace("version: 1\napp", "version: 2\napp"), 1, "version: Input should be 1"),
    (
        "unknown registry kind",
        VALID.replace("kind: oci", "kind: quay"),
        9,
        "registry.kind: registry 'quay' is not available",
    ),
    ("registry kind missing", VALID.replace("  kind: oci\n", ""), 8, "registry: field 'kind' is required"),
    (
        "registry option misspelled",
        VALID.replace("repository: digits-api", "repo: digits-api"),
        11,
        "registry.repo: unknown key",
    ),
    (
        "registry repository missing",
        VALID.replace("  repository: digits-api\n", ""),
        8,
        "registry.repository: field required",
    ),
    (
        "literal password",
        VALID.replace("${REG_PASSWORD}", "hunter2"),
        13,
        "registry.password: a secret must be exactly one ${VARIABLE}",
    ),
    (
        "unset variable",
        VALID.replace("${REG_PASSWORD}", "${NOT_SET_ANYWHERE}"),
        13,
        "environment variable NOT_SET_ANYWHERE is not set",
    ),
    ("bad variable syntax", VALID.replace("${REG_PASSWORD}", "${1X}"), 13, "bad variable reference"),
    (
        "duplicate key",
        VALID.replace("  port: 8000\n", "  port: 8000\n  port: 9000\n"),
        5,
        "app.port: duplicate key (first defined at line 4)",
    ),
    ("tab indentation", VALID.replace("  port: 8000", "\tport: 8000"), 4, "YAML syntax error"),
    (
        "unclosed bracket",
        VALID.replace("{request: GET /healthz}", "{request: GET /healthz"),
        17,
        "YAML syntax error: a flow mapping is never closed: expected ',' or '}', but got '<stream end>' at line 18",
    ),
    ("top level is a list", "- a\n- b\n", 1, "the top level must be a mapping"),
    ("empty file", "", 1, "the file is empty"),
    ("verify request malformed", VALID.replace("GET /healthz", "FETCH /healthz"), 17, "verify[0].request:"),
    (
        "verify unknown key",
        VALID.replace("{request: GET /healthz}", "{request: GET /healthz, expect: 200}"),
        17,
        "verify[0].expect: unknown key",
    ),
    (
        "verify body and body_file",
        VALID.replace("{request: GET /healthz}", "{request: POST /s, body: {}, body_file: x.json}"),
        17,
        "verify[0]: give body or body_file",
    ),
    (
        "orchestrator option wrong type",
        VALID.replace("  kind: docker\n", "  kind: docker\n  host_port: [1]\n"),
        16,
        "orchestrator.host_port:",
    ),
    (
        "store kind unknown",
        VALID + "model_store: {kind: gcs, bucket: b}\n",
        18,
        "model_store.kind: model_store 'gcs' is not available (plugin may not be installed)",
    ),
    (
        "model into escapes",
        VALID.replace("select: latest", "select: latest\n  into: ../outside"),
        8,
        "model.into: must be a relative folder",
    ),
    ("release replicas zero", VALID + "release: {replicas: 0}\n", 18, "release.replicas:"),
    ("merge keys", VALID + "x: &a {k: 1}\ny:\n  <<: *a\n", 20, "merge keys"),
    (
        "context missing",
        VALID.replace("  port: 8000", "  port: 8000\n  context: no/such/dir"),
        5,
        "app.context: folder",
    ),
]


@pytest.mark.parametrize(("name", "text", "line", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_config_error_names_file_line_and_key(
    name: str, text: str, line: int, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setenv("REG_PASSWORD", "s3cret-value")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    path = tmp_path / "shipway.yaml"
    path.write_text(text)
    code = main(["-c", str(path), "validate"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    # Several errors may be reported, one per line: the expected one must be there, positioned.
    lines = list(re.finditer(rf"{re.escape(str(path))}:(\d+):(\d+): (.*)", err))
    assert lines, err
    assert any(int(m.group(1)) == line and fragment in m.group(0) for m in lines), err
    assert "s3cret-value" not in err


def test_the_valid_file_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("REG_PASSWORD", "s3cret-value")
    path = tmp_path / "shipway.yaml"
    path.write_text(VALID)
    assert main(["-c", str(path), "validate"]) == 0
    out = capsys.readouterr()
    assert "ok (model_store local, registry oci, orchestrator docker)" in out.out
    assert "s3cret-value" not in out.out + out.err


def test_missing_file_is_a_config_error(tmp_path: Path, capsys) -> None:
    assert main(["-c", str(tmp_path / "nope.yaml"), "validate"]) == 2
    assert "nope.yaml: file not found" in capsys.readouterr().err


def test_no_traceback_from_the_real_console_script(tmp_path: Path) -> None:
    path = tmp_path / "shipway.yaml"
    path.write_text(VALID.replace("port: 8000", "port: [8000]"))
    proc = subprocess.run(
        [sys.executable, "-m", "shipway.cli", "-c", str(path), "validate"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "REG_PASSWORD": "x"},
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {path}:4:3: app.port:"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_schema_lists_every_installed_kind(capsys) -> None:
    import json

    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    kinds = [opt["properties"]["kind"]["const"] for opt in schema["properties"]["registry"]["oneOf"]]
    assert "oci" in kinds
    assert "app" in schema["required"]
