"""Any YAML value in any place of shipway.yaml is either accepted or a ConfigError: never a Python error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipway import config, plugins
from shipway.errors import ConfigError

BASE: dict[str, Any] = {
    "version": 1,
    "app": {"name": "digits-api", "port": 8000, "env": {"A": "b"}, "secrets": {"s": "${FUZZ_SECRET}"}},
    "test": {"command": ["true"], "timeout": 60},
    "model": {"name": "digits", "select": "latest", "into": "model/"},
    "build": {"args": {"X": "y"}, "timeout": 60, "wheelhouse": {"requirements": "requirements.txt"}},
    "registry": {"kind": "oci", "address": "127.0.0.1:5000", "repository": "r", "password": "${FUZZ_SECRET}"},
    "orchestrator": {"kind": "docker", "host_port": 8080},
    "verify": [{"request": "GET /x", "headers": {"H": "v"}, "timeout": 5}],
    "release": {"replicas": 1, "deadline": 60, "environment": "default"},
}


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path] if path else []
    if isinstance(value, dict):
        out += [p for k, v in value.items() for p in _paths(v, (*path, k))]
    elif isinstance(value, list):
        out += [p for i, v in enumerate(value) for p in _paths(v, (*path, i))]
    return out


PATHS = _paths(BASE)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["${FUZZ_SECRET}", "${FUZZ_UNSET:-}", "${", "$${x}", "${A:-${B}}", "2024-01-01", "..", "/"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {**doc, head: _replace(doc[head], rest, value)}
    items = list(doc)
    items[head] = _replace(items[head], rest, value)
    return items


@pytest.fixture(scope="module")
def host() -> Any:
    return plugins.load()


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), value=VALUES)
def test_any_value_anywhere_is_accepted_or_a_config_error(
    path: tuple[Any, ...], value: Any, host: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUZZ_SECRET", "s3cret-fuzz")
    monkeypatch.setenv("B", "b")
    file = tmp_path / "shipway.yaml"
    file.write_text(yaml.safe_dump(_replace(BASE, path, value), sort_keys=False))
    message = ""
    try:
        config.load(file, host)
    except ConfigError as exc:
        message = str(exc)
    assert not message or message.startswith(f"{file}:"), message
    assert "s3cret-fuzz" not in message
