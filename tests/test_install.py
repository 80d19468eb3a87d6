"""The install commands README.md gives work as written, in a fresh venv with Debian's own pip (23.x)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = Path("/usr/bin/python3")
UNCLONED = ("*.egg-info", "__pycache__", "build", ".shipway", "tests")
"""What a clean clone's ``core`` and ``plugins`` folders do not hold, or what an install does not need."""
BLOCK = re.compile(r"<!-- install-commands -->\s*```bash\n(.*?)```", re.S)


def install_commands() -> list[str]:
    """The `pip install` lines of README's install-commands block, comments stripped."""
    found = BLOCK.search((REPO / "README.md").read_text())
    assert found, "README.md has no <!-- install-commands --> block"
    lines = [line.split("#", 1)[0].strip() for line in found.group(1).splitlines()]
    return [line for line in lines if line.startswith("pip install")]


def test_readme_has_install_commands() -> None:
    assert len(install_commands()) >= 2


def test_install_commands_work_in_fresh_venvs_with_system_pip(tmp_path: Path) -> None:
    """Every command in its own venv, all at once: each is mostly pip waiting on files and its build
    backends, so side by side they take little more than the slowest alone."""
    if not SYSTEM_PYTHON.is_file():
        pytest.fail("Debian's /usr/bin/python3 is missing: scripts/bootstrap.sh installs python3-venv")
    commands = install_commands()
    with ThreadPoolExecutor(len(commands)) as pool:
        found = list(pool.map(_install, commands, [tmp_path / f"install-{i}" for i in range(len(commands))]))
    problems = [problem for problem in found if problem]
    assert not problems, "\n\n".join(problems)


def _install(command: str, work: Path) -> str | None:
    """Run ``command`` in a fresh venv, from a copy of the clone; what went wrong, or None.

    The copy is the command's own: setuptools writes ``*.egg-info`` into the source folder it builds,
    and two builds of one folder at once could read each other's half-written files.
    """
    clone, venv = work / "clone", work / "venv"
    for folder in ("core", "plugins"):
        shutil.copytree(REPO / folder, clone / folder, ignore=shutil.ignore_patterns(*UNCLONED))
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", str(venv)], check=True)
    pip_version = subprocess.run([venv / "bin" / "pip", "--version"], capture_output=True, text=True, check=True)
    if not pip_version.stdout.startswith("pip 23."):
        return f"{command}: the venv's pip is not Debian's 23.x: {pip_version.stdout}"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    proc = subprocess.run(
        ["bash", "-c", command + " -q"], cwd=clone, env=env, capture_output=True, text=True, timeout=900
    )
    if proc.returncode != 0:
        return f"{command}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    listed = subprocess.run(
        [venv / "bin" / "shipway", "plugins", "--json"], env=env, capture_output=True, text=True, check=True
    )
    names = {p["name"] for p in json.loads(listed.stdout)}
    expected = {part.split("/")[-1] for part in shlex.split(command) if part.startswith("plugins/")}
    if not expected <= names:
        return f"{command}: plugins listed {sorted(names)}, expected at least {sorted(expected)}"
    return None


def _pyproject(path: Path) -> dict[str, object]:
    with path.open("rb") as f:
        return tomllib.load(f)


def test_core_extras_name_every_plugin_distribution() -> None:
    core = _pyproject(REPO / "core" / "pyproject.toml")["project"]
    assert isinstance(core, dict)
    extras = core["optional-dependencies"]
    wanted = {e: f"shipway-{e}" for e in ("azure", "aws", "swarm", "kubernetes")}
    for extra, dist in wanted.items():
        assert any(req.startswith(dist) for req in extras[extra]), f"shipway[{extra}] must require {dist}"
    in_repo = {_pyproject(p)["project"]["name"] for p in REPO.glob("plugins/*/pyproject.toml")}  # type: ignore[index]
    in_all = {re.split(r"[<>=!~ ;\[]", req)[0] for req in extras["all"]}
    assert in_repo <= in_all, f"shipway[all] misses {sorted(in_repo - in_all)}"


def test_core_license_is_an_spdx_expression() -> None:
    core = _pyproject(REPO / "core" / "pyproject.toml")["project"]
    assert isinstance(core, dict)
    assert core["license"] == "Apache-2.0"
