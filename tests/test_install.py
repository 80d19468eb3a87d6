"""The install commands README.md gives work as written, in a fresh venv with Debian's own pip (23.x)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = Path("/usr/bin/python3")
BLOCK = re.compile(r"<!-- install-commands -->\s*```bash\n(.*?)```", re.S)


def install_commands() -> list[str]:
    """The `pip install` lines of README's install-commands block, comments stripped."""
    found = BLOCK.search((REPO / "README.md").read_text())
    assert found, "README.md has no <!-- install-commands --> block"
    lines = [line.split("#", 1)[0].strip() for line in found.group(1).splitlines()]
    return [line for line in lines if line.startswith("pip install")]


def test_readme_has_install_commands() -> None:
    assert len(install_commands()) >= 2


@pytest.mark.parametrize("command", install_commands())
def test_install_command_works_in_a_fresh_venv_with_system_pip(command: str, tmp_path: Path) -> None:
    if not SYSTEM_PYTHON.is_file():
        pytest.fail("Debian's /usr/bin/python3 is missing: scripts/bootstrap.sh installs python3-venv")
    venv = tmp_path / "venv"
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", str(venv)], check=True)
    pip_version = subprocess.run([venv / "bin" / "pip", "--version"], capture_output=True, text=True, check=True)
    assert pip_version.stdout.startswith("pip 23."), pip_version.stdout
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    proc = subprocess.run(
        ["bash", "-c", command + " -q"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"
    listed = subprocess.run(
        [venv / "bin" / "shipway", "plugins", "--json"], env=env, capture_output=True, text=True, check=True
    )
    names = {p["name"] for p in json.loads(listed.stdout)}
    expected = {part.split("/")[-1] for part in shlex.split(command) if part.startswith("plugins/")}
    assert expected <= names, f"{command}: plugins listed {sorted(names)}"


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
