"""Plugin loading through real entry points of (fake) installed distributions."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from datetime import UTC
from pathlib import Path

import pytest

from shipway import plugins
from shipway.cli import main
from shipway.errors import PluginError

GOOD_PLUGIN = '''
from shipway.hookspecs import hookimpl
from shipway.backends.local_store import LocalModelStore, LocalStoreSettings


class MirrorSettings(LocalStoreSettings):
    kind: str = "mirror"
    region: str = "eu"


class MirrorStore(LocalModelStore):
    """A store registered by a third-party plugin."""

    kind = "mirror"
    Settings = MirrorSettings


@hookimpl
def shipway_register_model_stores(register):
    register(MirrorStore)


@hookimpl
def shipway_build_labels(build):
    return {"org.example.team": "vision", "io.shipway.app": "overridden?"}
'''


def install_fake_dist(root: Path, dist: str, module: str, source: str, entry_name: str | None = None) -> None:
    """Write ``module.py`` and a ``dist-1.0.dist-info`` with an entry point in group ``shipway``."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[shipway]\n{entry_name or module} = {module}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    yield root
    for name in [m for m in sys.modules if m.startswith("fake_")]:
        del sys.modules[name]


def test_builtins_load_through_entry_points() -> None:
    host = plugins.load(environ={})
    assert set(host.kinds("model_store")) >= {"local"}
    assert set(host.kinds("registry")) >= {"oci"}
    assert set(host.kinds("orchestrator")) >= {"docker"}
    assert all(info.builtin for info in host.plugins.values() if info.dist == "shipway")


def test_third_party_plugin_registers_a_kind(site: Path) -> None:
    install_fake_dist(site, "shipway-mirror", "fake_mirror", GOOD_PLUGIN)
    host = plugins.load(environ={})
    assert "mirror" in host.kinds("model_store")
    info = host.plugins["fake_mirror"]
    assert (info.dist, info.version, info.builtin) == ("shipway-mirror", "1.0", False)
    assert info.kinds == {"model_store": ["mirror"]}
    assert info.hooks == ["shipway_build_labels", "shipway_register_model_stores"]


def test_env_var_disables_or_selects_plugins(site: Path) -> None:
    install_fake_dist(site, "shipway-mirror", "fake_mirror", GOOD_PLUGIN)
    assert "mirror" not in plugins.load(environ={"SHIPWAY_PLUGINS": ""}).kinds("model_store")
    assert "local" in plugins.load(environ={"SHIPWAY_PLUGINS": ""}).kinds("model_store")
    assert "mirror" in plugins.load(environ={"SHIPWAY_PLUGINS": "fake_mirror"}).kinds("model_store")
    assert "mirror" in plugins.load(environ={"SHIPWAY_PLUGINS": "shipway-mirror"}).kinds("model_store")
    assert "mirror" not in plugins.load(environ={"SHIPWAY_PLUGINS": "something-else"}).kinds("model_store")


def test_broken_import_is_wrapped(site: Path) -> None:
    install_fake_dist(site, "shipway-broken", "fake_broken", "import this_module_does_not_exist\n")
    with pytest.raises(PluginError) as err:
        plugins.load(environ={})
    assert str(err.value).startswith('Error importing plugin "fake_broken": ModuleNotFoundError')


def test_broken_import_through_the_cli_has_no_traceback(site: Path, capsys, monkeypatch) -> None:
    install_fake_dist(site, "shipway-broken", "fake_broken", "raise RuntimeError('boom at import')\n")
    monkeypatch.delenv("SHIPWAY_PLUGINS", raising=False)
    assert main(["plugins"]) == 2
    err = capsys.readouterr().err
    assert 'Error importing plugin "fake_broken": RuntimeError: boom at import' in err
    assert "Traceback" not in err


def test_broken_plugin_can_be_excluded(site: Path) -> None:
    install_fake_dist(site, "shipway-broken", "fake_broken", "raise RuntimeError('boom')\n")
    assert "local" in plugins.load(environ={"SHIPWAY_PLUGINS": ""}).kinds("model_store")


def test_unknown_kind_lists_available_and_names_the_package(shipway_plugin_host) -> None:
    with pytest.raises(PluginError) as err:
        shipway_plugin_host.backend_class("model_store", "azure_blob")
    text = str(err.value)
    assert "model_store 'azure_blob' is not available (plugin may not be installed)" in text
    assert "pip install shipway-azure" in text
    assert "Available: local" in text
    with pytest.raises(PluginError, match="Available: oci"):
        shipway_plugin_host.backend_class("registry", "quay")


def test_duplicate_kind_names_both_plugins(site: Path) -> None:
    install_fake_dist(site, "shipway-mirror", "fake_mirror", GOOD_PLUGIN)
    install_fake_dist(site, "shipway-mirror2", "fake_mirror2", GOOD_PLUGIN)
    with pytest.raises(PluginError, match='"mirror" is registered by both "fake_mirror" and "fake_mirror2"'):
        plugins.load(environ={})


def test_registering_a_non_backend_is_refused(shipway_register_plugin) -> None:
    from shipway.hookspecs import hookimpl

    class Bad:
        @hookimpl
        def shipway_register_registries(self, register):
            register(dict)

    with pytest.raises(PluginError, match=r"not a subclass of shipway\.backends\.base\.Registry"):
        shipway_register_plugin(Bad(), name="bad")


def test_plugins_command_json(site: Path, capsys, monkeypatch) -> None:
    install_fake_dist(site, "shipway-mirror", "fake_mirror", GOOD_PLUGIN)
    monkeypatch.delenv("SHIPWAY_PLUGINS", raising=False)
    assert main(["plugins", "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert listed["fake_mirror"]["kinds"] == {"model_store": ["mirror"]}
    assert listed["fake_mirror"]["version"] == "1.0"
    assert listed["local_store"]["builtin"] is True
    assert listed["local_store"]["contract_version"] == 2


def test_plugin_settings_are_validated_with_positions(site: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    install_fake_dist(site, "shipway-mirror", "fake_mirror", GOOD_PLUGIN)
    monkeypatch.delenv("SHIPWAY_PLUGINS", raising=False)
    cfg = tmp_path / "shipway.yaml"
    cfg.write_text(
        "app: {name: a}\nmodel: {name: m}\nregistry: {kind: oci, address: h, repository: r}\n"
        "model_store:\n  kind: mirror\n  regoin: us\n"
    )
    assert main(["-c", str(cfg), "validate"]) == 2
    assert f"{cfg}:6:3: model_store.regoin: unknown key" in capsys.readouterr().err


def test_build_labels_hook_cannot_override_shipway_labels(site: Path) -> None:
    from datetime import datetime

    from shipway import labels
    from shipway.domain import BuildRecord, ModelFile, ModelVersion, SourceInfo

    install_fake_dist(site, "shipway-mirror", "fake_mirror", GOOD_PLUGIN)
    host = plugins.load(environ={})
    model = ModelVersion(
        name="m", version="1", created=datetime.now(UTC), files=(ModelFile(path="w.bin", size=0, sha256="0" * 64),)
    )
    record = BuildRecord(
        app="a", source=SourceInfo(commit="c" * 40, dirty=False), model=model, model_digest=model.digest
    )
    merged = labels.for_image(record, labels.source_date(record), host.hook)  # what the engine labels an image with
    assert merged["org.example.team"] == "vision"
    assert merged[labels.APP] == "a"


ORCHESTRATOR_PLUGIN = """
from shipway.hookspecs import hookimpl
from shipway.backends.docker_orchestrator import DockerOrchestrator, DockerOrchestratorSettings


class BlueSettings(DockerOrchestratorSettings):
    kind: str = "docker-blue"
    colour: str = "blue"


class BlueOrchestrator(DockerOrchestrator):
    kind = "docker-blue"
    Settings = BlueSettings


@hookimpl
def shipway_register_orchestrators(register):
    register(BlueOrchestrator)
"""


def test_orchestrator_plugin_is_selected_by_kind(site: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    install_fake_dist(site, "shipway-blue", "fake_blue", ORCHESTRATOR_PLUGIN)
    monkeypatch.delenv("SHIPWAY_PLUGINS", raising=False)
    cfg = tmp_path / "shipway.yaml"
    cfg.write_text(
        "app: {name: a}\nmodel: {name: m}\nregistry: {kind: oci, address: h, repository: r}\n"
        "orchestrator: {kind: docker-blue, colour: green}\n"
    )
    assert main(["-c", str(cfg), "validate"]) == 0
    assert "orchestrator docker-blue" in capsys.readouterr().out
    host = plugins.load(environ={})
    assert host.kinds("orchestrator")["docker-blue"].__name__ == "BlueOrchestrator"


def test_plugins_text_shows_declared_contract_versions(site: Path, capsys, monkeypatch) -> None:
    install_fake_dist(site, "shipway-mirror", "fake_mirror", GOOD_PLUGIN)  # declares nothing
    install_fake_dist(site, "shipway-old", "fake_old", "SHIPWAY_CONTRACT_VERSION = 0\n")
    monkeypatch.delenv("SHIPWAY_PLUGINS", raising=False)
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "local_store (built-in, declares contract v2)" in out
    assert "fake_mirror (shipway-mirror 1.0, no contract declared)" in out
    assert "fake_old (shipway-old 1.0, declares contract v0, current is v2)" in out


MISSPELLED_PLUGIN = """
from shipway.hookspecs import hookimpl

@hookimpl
def shipway_register_modelstores(register):  # a typo: no such hook
    pass
"""


def test_a_misspelled_hook_implementation_is_an_error_naming_the_plugin(site: Path) -> None:
    install_fake_dist(site, "shipway-typo", "fake_typo", MISSPELLED_PLUGIN)
    with pytest.raises(PluginError, match=r'plugin "fake_typo".*shipway_register_modelstores'):
        plugins.load(environ={})
