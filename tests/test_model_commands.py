"""`shipway model publish/list/alias` read only the model_store section of the config file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipway.cli import main


def write(folder: Path, config: str) -> Path:
    path = folder / "shipway.yaml"
    path.write_text(config)
    (folder / "model").mkdir()
    (folder / "model" / "weights.bin").write_bytes(b"w" * 1000)
    return path


def test_a_file_with_only_a_model_store_is_enough(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path, "model_store:\n  kind: local\n  path: store\n")
    model = str(tmp_path / "model")
    assert main(["-c", str(config), "model", "publish", model, "--name", "m", "--meta", "run=1"]) == 0
    assert main(["-c", str(config), "model", "alias", "m", "production", "1"]) == 0
    capsys.readouterr()
    assert main(["-c", str(config), "model", "list", "m", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [v["version"] for v in listed["versions"]] == ["1"]
    assert listed["aliases"] == {"production": "1"}
    assert (tmp_path / "store" / "m" / "versions" / "1" / "manifest.json").is_file()  # relative to the file


def test_variables_only_other_sections_read_need_not_be_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SW_TEST_REGISTRY_PASSWORD", raising=False)
    config = write(
        tmp_path,
        "app: {name: a}\nmodel: {name: m}\n"
        "model_store: {kind: local, path: store}\n"
        "registry: {kind: oci, address: h, repository: r, password: '${SW_TEST_REGISTRY_PASSWORD}'}\n",
    )
    assert main(["-c", str(config), "model", "publish", str(tmp_path / "model"), "--name", "m"]) == 0
    assert "published m:1" in capsys.readouterr().out


def test_a_variable_the_model_store_reads_must_be_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SW_TEST_STORE_PATH", raising=False)
    config = write(tmp_path, "model_store: {kind: local, path: '${SW_TEST_STORE_PATH}'}\n")
    assert main(["-c", str(config), "model", "list", "m"]) == 2
    assert "environment variable SW_TEST_STORE_PATH is not set" in capsys.readouterr().err


def test_the_model_store_section_is_still_validated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path, "model_store:\n  kind: local\n  paht: store\n")
    assert main(["-c", str(config), "model", "list", "m"]) == 2
    err = capsys.readouterr().err
    assert "model_store.paht: unknown key" in err
    assert "shipway.yaml:3" in err


def test_an_unknown_store_kind_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path, "model_store: {kind: nosuch}\n")
    assert main(["-c", str(config), "model", "list", "m"]) == 2
    assert "model_store 'nosuch' is not available" in capsys.readouterr().err


def test_no_model_store_section_means_the_local_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path, "app: {name: a}\n")
    assert main(["-c", str(config), "model", "publish", str(tmp_path / "model"), "--name", "m"]) == 0
    assert (tmp_path / ".shipway" / "models" / "m" / "versions" / "1").is_dir()
