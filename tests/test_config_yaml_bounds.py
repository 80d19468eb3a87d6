"""Hostile YAML: size, alias expansion and nesting are bounded, each a clean error (exit 2, file:line).

Each file is validated by the real console entry point in a child process with a memory cap, so a
regression shows up as a failed assert, not as a test run that eats the machine.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from shipway.yaml_source import MAX_ALIASES, MAX_BYTES, MAX_DEPTH, MAX_NODES

VALID = """\
version: 1
app:
  name: digits-api
model:
  name: digits
registry:
  kind: oci
  address: 127.0.0.1:5000
  repository: digits-api
"""
MEMORY_CAP = 1024 * 1024 * 1024


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def _validate(tmp_path: Path, text: str) -> tuple[int, str, Path]:
    path = tmp_path / "shipway.yaml"
    path.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "shipway.cli", "-c", str(path), "validate"],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_cap_memory,
        env={
            "PATH": "/usr/bin:/bin",
            **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
        },
    )
    return proc.returncode, proc.stderr, path


def _assert_clean(code: int, err: str, path: Path, line: int | str, fragment: str) -> None:
    """Exit 2, no traceback, short, and ``file:LINE:col:`` (``line="any"``; ``line=""``: the file alone)."""
    assert code == 2, err[-2000:]
    assert "Traceback" not in err
    where = {"any": r":\d+:\d+: ", "": ": "}.get(str(line), rf":{line}:\d+: ")
    where = re.escape(str(path)) + where
    assert re.search(where, err), err[-2000:]
    assert fragment in err
    assert len(err) < 2000


def test_billion_laughs_is_refused_before_it_costs_memory(tmp_path: Path) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        levels.append(f"a{i}: &a{i} [{refs}]")
    text = VALID + "verify:\n  - request: GET /x\n    body:\n" + "".join(f"      {line}\n" for line in levels)
    code, err, path = _validate(tmp_path, text)
    _assert_clean(code, err, path, "any", f"the document expands to more than {MAX_NODES} values")


def test_too_many_aliases_are_refused(tmp_path: Path) -> None:
    body = "[" + ", ".join(["*v"] * (MAX_ALIASES + 1)) + "]"
    text = VALID + f"verify:\n  - request: GET /x\n    headers: {{X: &v y}}\n    body: {body}\n"
    code, err, path = _validate(tmp_path, text)
    _assert_clean(code, err, path, 13, f"more than {MAX_ALIASES} aliases")


def test_ten_thousand_levels_of_flow_nesting_is_a_clean_error(tmp_path: Path) -> None:
    text = VALID + "verify:\n  - request: GET /x\n    body: " + "[" * 10_000 + "]" * 10_000 + "\n"
    code, err, path = _validate(tmp_path, text)
    _assert_clean(code, err, path, 12, f"nested deeper than {MAX_DEPTH} levels")


def test_deep_block_nesting_is_a_clean_error(tmp_path: Path) -> None:
    nested = "".join(f"{'  ' * (i + 2)}k{i}:\n" for i in range(MAX_DEPTH + 5))
    text = VALID + "verify:\n  - request: GET /x\n    body:\n" + nested + "  " * (MAX_DEPTH + 8) + "v: 1\n"
    code, err, path = _validate(tmp_path, text)
    _assert_clean(code, err, path, "any", f"nested deeper than {MAX_DEPTH} levels")


def test_an_alias_that_contains_itself_is_a_clean_error(tmp_path: Path) -> None:
    text = VALID + "verify:\n  - request: GET /x\n    body: &loop [1, *loop]\n"
    code, err, path = _validate(tmp_path, text)
    _assert_clean(code, err, path, 12, "nested deeper than")


def test_a_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    text = VALID + ("# padding\n" * (MAX_BYTES // 10 + 1))
    code, err, path = _validate(tmp_path, text)
    _assert_clean(code, err, path, "", "larger than 1024 KiB")


def test_a_huge_value_is_not_echoed_back(tmp_path: Path) -> None:
    huge = "Q" * 500_000
    code, err, path = _validate(tmp_path, VALID.replace("name: digits-api", f"name: {huge}"))
    _assert_clean(code, err, path, 3, "app.name: String should match pattern")
    assert "Q" * 100 not in err


def test_a_huge_bad_reference_is_not_echoed_back(tmp_path: Path) -> None:
    code, err, path = _validate(tmp_path, VALID.replace("name: digits-api", "name: ${" + "Q" * 500_000))
    _assert_clean(code, err, path, 3, "bad variable reference")
    assert "Q" * 100 not in err


def test_a_huge_kind_is_not_echoed_back(tmp_path: Path) -> None:
    code, err, path = _validate(tmp_path, VALID.replace("kind: oci", "kind: " + "Q" * 5000))
    _assert_clean(code, err, path, 7, "registry.kind: ")
    assert "Q" * 100 not in err


def test_a_plugin_validator_quoting_a_huge_value_is_cut_short(tmp_path: Path) -> None:
    memory = "Q" * 5000
    text = VALID + f"orchestrator:\n  kind: swarm\n  resources: {{limits: {{memory: {memory}}}}}\n"
    code, err, path = _validate(tmp_path, text)
    _assert_clean(code, err, path, 12, "is not a memory size")
    assert "Q" * 100 not in err


def test_an_unclosed_flow_sequence_names_where_it_starts_and_the_end(tmp_path: Path) -> None:
    text = VALID + "verify:\n  - request: GET /x\n    body: [1, 2,\n" + "# a comment\n" * 30
    code, err, path = _validate(tmp_path, text)
    _assert_clean(code, err, path, 12, "a flow sequence is never closed")
    assert "at line 43, column 1 (end of file)" in err


@pytest.mark.parametrize("cap", [MAX_ALIASES, MAX_DEPTH])
def test_bounds_leave_room_for_real_files(cap: int, tmp_path: Path) -> None:
    body = "[" * (cap - 8) + "]" * (cap - 8) if cap == MAX_DEPTH else "[" + ", ".join(["*v"] * cap) + "]"
    text = VALID + f"verify:\n  - request: GET /x\n    headers: {{X: &v y}}\n    body: {body}\n"
    code, err, _ = _validate(tmp_path, text)
    assert code == 0, err
