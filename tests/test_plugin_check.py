"""`shipway plugins --check KIND` runs the contract tests a plugin ships, and reports pass or fail."""

from __future__ import annotations

import importlib
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipway.cli import main

LEAKY_PLUGIN = """
from shipway.backends.local_store import LocalModelStore
from shipway.hookspecs import hookimpl

SHIPWAY_CONTRACT_VERSION = 2
SHIPWAY_CONTRACT_TESTS = "fake_leaky_contract"


class LeakyStore(LocalModelStore):
    kind = "leaky"

    def publish(self, path, name, version=None, aliases=(), metadata=None):
        return super().publish(path, name, version=version, aliases=aliases)  # drops the metadata


@hookimpl
def shipway_register_model_stores(register):
    register(LeakyStore)
"""

LEAKY_CONTRACT = """
import pytest

from fake_leaky import LeakyStore
from shipway.backends.base import BackendContext
from shipway.backends.local_store import LocalStoreSettings
from shipway.testing import local_contract


class TestLeakyStore(local_contract.TestLocalStore):
    @pytest.fixture
    def store(self, tmp_path):
        settings = LocalStoreSettings(kind="local", path=str(tmp_path / "store"))
        return LeakyStore(settings, BackendContext(cache_dir=tmp_path / "cache"))
"""


@pytest.fixture
def leaky(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A third-party plugin (``shipway-leaky``) whose store drops metadata, with the contract tests it ships."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "fake_leaky.py").write_text(textwrap.dedent(LEAKY_PLUGIN))
    (site / "fake_leaky_contract.py").write_text(textwrap.dedent(LEAKY_CONTRACT))
    info = site / "shipway_leaky-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shipway-leaky\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[shipway]\nfake_leaky = fake_leaky\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))  # the check's pytest runs in a subprocess
    monkeypatch.delenv("SHIPWAY_PLUGINS", raising=False)
    importlib.invalidate_caches()
    yield site
    for name in [m for m in sys.modules if m.startswith("fake_leaky")]:
        del sys.modules[name]


def test_a_store_that_passes_its_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--check", "local", "-q"]) == 0
    out = capsys.readouterr().out
    assert "model_store local (local_store, contract v2 tests in shipway.testing.local_contract): passed" in out


def test_a_store_that_fails_its_contract(leaky: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--check", "leaky"]) == 3
    captured = capsys.readouterr()
    assert "TestLeakyStore::test_metadata_round_trips_exactly" in captured.out  # pytest's report, shown
    result = "model_store leaky (fake_leaky, contract v2 tests in fake_leaky_contract): FAILED: "
    assert re.search(re.escape(result) + r"\d+ failed, \d+ passed", captured.err)


def test_declaring_a_contract_is_not_passing_it(leaky: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    assert "fake_leaky (shipway-leaky 1.0, declares contract v2)" in capsys.readouterr().out


def test_a_plugin_without_contract_tests_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--check", "docker"]) == 2
    assert 'plugin "docker_orchestrator" ships no contract tests' in capsys.readouterr().err


def test_an_unknown_kind_lists_the_installed_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--check", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "no installed plugin provides kind 'nosuch'" in err
    assert "local" in err
