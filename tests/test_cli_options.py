"""Global options before and after the subcommand, and click's shell completion in bash, zsh and fish."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shipway import cli
from shipway.errors import ConfigError

CONFIG = """\
version: 1
app: {name: options-app, port: 9123, health: /ready}
model: {name: weights}
registry: {kind: oci, address: 127.0.0.1:5000, repository: options-app}
"""
SHIPWAY = Path(sys.executable).with_name("shipway")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "custom.yaml"
    path.write_text(CONFIG)
    return path


def test_config_after_the_subcommand(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", "-c", str(config)]) == 0
    assert f"{config}: ok" in capsys.readouterr().out


def test_config_before_the_subcommand(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--config", str(config), "validate"]) == 0
    assert f"{config}: ok" in capsys.readouterr().out


def test_config_after_wins_over_before(config: Path, tmp_path: Path) -> None:
    assert cli.main(["-c", str(tmp_path / "missing.yaml"), "validate", "-c", str(config)]) == 0


def test_config_after_a_nested_subcommand(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["model", "list", "weights", "--config", str(config)]) == 0
    assert capsys.readouterr().err == ""


def test_missing_config_after_the_subcommand_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert cli.main(["validate", "-c", str(missing)]) == 2
    assert f"{missing}: file not found" in capsys.readouterr().err


def test_debug_after_the_subcommand_shows_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", "-c", str(tmp_path / "nope.yaml"), "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["-q", "validate"], ["validate", "-q"], ["validate", "--quiet"]])
def test_quiet_in_either_place_reaches_the_reporter(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []

    def loaded(self: cli.State) -> None:
        seen.append(self.reporter.quiet)
        raise ConfigError("stop here")

    monkeypatch.setattr(cli.State, "loaded", loaded)
    assert cli.main(argv) == 2
    assert seen == [True]


# -- shell completion ----------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{SHIPWAY.parent}:{env['PATH']}"
    return env


def _shell(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: scripts/bootstrap.sh installs it (Debian package {name})")
    return found


def _source(shell: str) -> str:
    env = {**_env(), "_SHIPWAY_COMPLETE": f"{shell}_source"}
    return subprocess.run([str(SHIPWAY)], env=env, capture_output=True, text=True, check=True).stdout


def test_bash_completion_completes_a_subcommand_and_a_global_option() -> None:
    complete = '_shipway_completion shipway; echo "${COMPREPLY[*]}"; COMPREPLY=()\n'
    script = _source("bash") + (
        f"COMP_WORDS=(shipway val); COMP_CWORD=1; {complete}"
        f"COMP_WORDS=(shipway validate --con); COMP_CWORD=2; {complete}"
    )
    out = subprocess.run([_shell("bash"), "-c", script], env=_env(), capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["validate", "--config"]


def test_zsh_completion_completes_a_subcommand() -> None:
    # Outside a completion widget zsh has no compadd/_describe: stand-ins print what would be offered.
    stubs = 'compdef() { :; }; _describe() { print -l -- "${(@P)3}"; }; compadd() { print -l -- "${(@P)${@[-1]}}"; }\n'
    script = stubs + _source("zsh") + "words=(shipway model p); CURRENT=3; _shipway_completion\n"
    out = subprocess.run([_shell("zsh"), "-f", "-c", script], env=_env(), capture_output=True, text=True, check=True)
    assert out.stdout.startswith("publish:Publish the file or folder PATH")


def test_fish_completion_completes_a_subcommand(tmp_path: Path) -> None:
    script = tmp_path / "shipway.fish"
    script.write_text(_source("fish"))
    command = f"source {script}; complete -C 'shipway sta'"
    out = subprocess.run([_shell("fish"), "-c", command], env=_env(), capture_output=True, text=True, check=True)
    assert out.stdout.split("\t")[0] == "status"
