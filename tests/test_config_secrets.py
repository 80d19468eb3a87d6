"""Secrets in shipway.yaml: only ever one ``${VAR}``, delivered through app.secrets, never in env or build args."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shipway import config, plugins
from shipway.cli import main
from shipway.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "flask_app"

BASE = """\
version: 1
app:
  name: digits-api
model:
  name: digits
registry:
  kind: oci
  address: 127.0.0.1:5000
  repository: digits-api
  password: {password}
"""
PASSWORD_LINE = 10
SECRET = "hunter2-do-not-echo"


def _run(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    path = tmp_path / "shipway.yaml"
    path.write_text(text)
    code = main(["-c", str(path), "validate"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REG_PASSWORD", SECRET)
    monkeypatch.setenv("EMPTY", "")
    monkeypatch.setenv("DB_PW", SECRET)
    monkeypatch.setenv("GITHUB_TOKEN", SECRET)
    monkeypatch.setenv("PIP_API_KEY", SECRET)
    monkeypatch.setenv("REG_PW", SECRET)
    monkeypatch.delenv("UNSET", raising=False)


# --- item 6: a secret field is exactly one ${VAR} ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("${UNSET:-hunter2}", "UNSET"),
        ("${REG_PASSWORD:-hunter2}", "REG_PASSWORD"),
        ('"hunter2${EMPTY:-}"', "EMPTY"),
        ('"x${REG_PASSWORD}"', "REG_PASSWORD"),
        ('"${REG_PASSWORD}x"', "REG_PASSWORD"),
        ('"${REG_PASSWORD}${REG_PASSWORD}"', "REG_PASSWORD"),
        ('"$${REG_PASSWORD}"', "${VARIABLE}"),
        ("hunter2", "${VARIABLE}"),
    ],
    ids=["default", "default-when-set", "literal-before-empty", "prefix", "suffix", "two-refs", "escaped", "literal"],
)
def test_a_secret_field_refuses_anything_but_one_reference(
    value: str, names: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run(tmp_path, BASE.format(password=value), capsys)
    assert code == 2, err
    assert re.search(rf"shipway\.yaml:{PASSWORD_LINE}:\d+: registry\.password: ", err), err
    assert "exactly one ${VARIABLE}" in err
    assert names in err
    assert "hunter2" not in err
    assert SECRET not in err


@pytest.mark.parametrize("value", ["${REG_PASSWORD}", '"${REG_PASSWORD}"', "${UNSET:-}"])
def test_a_secret_field_accepts_one_reference(value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(tmp_path, BASE.format(password=value), capsys)
    assert code == 0, out
    assert SECRET not in out


def test_the_secret_value_comes_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "shipway.yaml"
    path.write_text(BASE.format(password="${REG_PASSWORD}"))
    loaded = config.load(path, plugins.load())
    assert loaded.registry.password.get_secret_value() == SECRET


# --- item 7: app.secrets, and no secrets in app.env or build.args ------------------------------------------


def _with(section: str) -> str:
    return BASE.format(password="${REG_PASSWORD}") + section


def test_app_secrets_are_loaded_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "shipway.yaml"
    text = _with("").replace("  name: digits-api\n", "  name: digits-api\n  secrets:\n    db_password: ${DB_PW}\n")
    path.write_text(text)
    loaded = config.load(path, plugins.load())
    assert loaded.config.app.secrets["db_password"].get_secret_value() == SECRET


def test_app_secrets_are_not_shown_by_repr(tmp_path: Path) -> None:
    path = tmp_path / "shipway.yaml"
    path.write_text(_with("").replace("  name: digits-api\n", "  name: digits-api\n  secrets: {db: '${DB_PW}'}\n"))
    loaded = config.load(path, plugins.load())
    assert SECRET not in repr(loaded.config)


@pytest.mark.parametrize(
    ("secrets", "fragment"),
    [
        ("{db: hunter2}", "app.secrets.db: a secret must be exactly one ${VARIABLE}"),
        ("{db: '${UNSET:-hunter2}'}", "app.secrets.db: a secret must be exactly one ${VARIABLE}"),
        ("{db: '${UNSET:-}'}", "app.secrets.db: "),
        ("{'../etc/passwd': '${DB_PW}'}", "app.secrets: secret name '../etc/passwd'"),
        ("{'a b': '${DB_PW}'}", "app.secrets: secret name 'a b'"),
        ("{db: [1]}", "app.secrets.db:"),
    ],
    ids=["literal", "default", "empty", "traversal-name", "space-name", "not-a-string"],
)
def test_bad_app_secrets_are_refused(
    secrets: str, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _with("").replace("  name: digits-api\n", f"  name: digits-api\n  secrets: {secrets}\n")
    code, err = _run(tmp_path, text, capsys)
    assert code == 2, err
    assert re.search(r"shipway\.yaml:4:\d+: ", err), err
    assert fragment in err
    assert "hunter2" not in err


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ("GITHUB_TOKEN: ${GITHUB_TOKEN}", "GITHUB_TOKEN"),
        ("DB_PASSWORD: hunter2", "DB_PASSWORD"),
        ("apiKey: hunter2", "apiKey"),
        ("AWS_SECRET_ACCESS_KEY: hunter2", "AWS_SECRET_ACCESS_KEY"),
        ("INDEX: ${PIP_API_KEY}", "INDEX"),
    ],
    ids=["token-from-env", "password-literal", "camel-api-key", "aws-secret", "value-from-secret-variable"],
)
def test_secret_looking_build_args_are_refused(
    entry: str, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run(tmp_path, _with(f"build:\n  args:\n    {entry}\n"), capsys)
    assert code == 2, err
    assert re.search(rf"shipway\.yaml:13:5: build\.args\.{key}: ", err), err
    assert "image history" in err
    assert "app.secrets" in err
    assert SECRET not in err
    assert "hunter2" not in err


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ("DB_PASSWORD: hunter2", "DB_PASSWORD"),
        ("HF_TOKEN: ${GITHUB_TOKEN}", "HF_TOKEN"),
        ("client-secret: hunter2", "client-secret"),
        ("CREDENTIALS: hunter2", "CREDENTIALS"),
        ("UPSTREAM: ${PIP_API_KEY}", "UPSTREAM"),
        ("REG: ${REG_PW}", "REG"),
    ],
)
def test_secret_looking_app_env_is_refused(
    entry: str, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _with("").replace("  name: digits-api\n", f"  name: digits-api\n  env:\n    {entry}\n")
    text = text.replace("${REG_PASSWORD}", "${REG_PW}")  # a variable whose name says nothing, read by a secret
    code, err = _run(tmp_path, text, capsys)
    assert code == 2, err
    assert re.search(rf"shipway\.yaml:5:5: app\.env\.{key}: ", err), err
    assert "app.secrets" in err
    assert SECRET not in err
    assert "hunter2" not in err


def test_ordinary_env_and_build_args_that_merely_mention_tokens_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = "  env: {TOKENIZERS_PARALLELISM: 'false', MAX_TOKENS: '512', PASSWORD_FILE: /run/secrets/db, PWD: /app}\n"
    text = _with("build:\n  args: {KEYBOARD: us, PIP_INDEX_URL: 'http://127.0.0.1:3141/simple'}\n").replace(
        "  name: digits-api\n", "  name: digits-api\n" + env
    )
    code, out = _run(tmp_path, text, capsys)
    assert code == 0, out


@pytest.mark.parametrize("name", ["shipway.yaml", "shipway.k8s.yaml", "shipway.azure.yaml"])
def test_the_examples_stay_valid(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACR_LOGIN_SERVER", "example.azurecr.io")
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000000")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true")
    try:
        loaded = config.load(EXAMPLES / name, plugins.load())
    except ConfigError as exc:
        pytest.fail(f"{name}: {exc}")
    assert loaded.config.app.name == "digits-api"


def test_a_value_read_from_a_variable_is_named_not_quoted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = _with("").replace("  name: digits-api\n", "  name: digits-api\n  port: ${DB_PW}\n")
    code, err = _run(tmp_path, text, capsys)
    assert code == 2, err
    assert "app.port: " in err
    assert "(the value comes from ${DB_PW})" in err
    assert SECRET not in err


def test_a_secret_value_is_masked_wherever_an_error_quotes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run(tmp_path, _with("").replace("kind: oci", "kind: ${REG_PASSWORD}"), capsys)
    assert code == 2, err
    assert "registry.kind: registry '***' is not available" in err
    assert SECRET not in err
