"""Keep the plugin system honest: every hook is documented and every hook is tested.

(After datasette's tests/test_docs.py and tests/test_plugins.py.)
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from shipway import hookspecs

REPO = Path(__file__).resolve().parents[1]
HOOKS = sorted(n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("shipway_"))
TEST_DIRS = [REPO / "tests", *REPO.glob("plugins/*/tests"), *REPO.glob("examples/*/tests")]
TEST_SOURCES = {p: p.read_text() for d in TEST_DIRS for p in d.rglob("test_*.py") if p.name != Path(__file__).name}


def test_hooks_are_found() -> None:
    assert len(HOOKS) >= 7


@pytest.mark.parametrize("hook", HOOKS)
def test_hookspec_docstring_names_every_parameter(hook: str) -> None:
    func = getattr(hookspecs, hook)
    doc = inspect.getdoc(func) or ""
    assert "Called" in doc, f"{hook}: say when it is called"
    for param in inspect.signature(func).parameters:
        assert f":param {param}:" in doc, f"{hook}: document :param {param}:"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_in_plugins_guide(hook: str) -> None:
    guide = (REPO / "docs" / "plugins.md").read_text()
    assert re.search(rf"^### {hook}$", guide, re.M), f"docs/plugins.md needs a '### {hook}' section"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test_implementing_it(hook: str) -> None:
    implementing = [p.name for p, text in TEST_SOURCES.items() if re.search(rf"def {hook}\(", text)]
    assert implementing, f"no test implements {hook}: add one that shows it being called"


def test_documented_hooks_all_exist() -> None:
    guide = (REPO / "docs" / "plugins.md").read_text()
    assert sorted(re.findall(r"^### (shipway_\w+)$", guide, re.M)) == HOOKS


def _kit_fixtures() -> dict[str, list[str]]:
    """Fixture names each shipway pytest plugin (entry point group ``pytest11``) adds to every session."""
    from importlib import import_module
    from importlib.metadata import entry_points

    from _pytest.fixtures import getfixturemarker

    found: dict[str, list[str]] = {}
    for ep in entry_points(group="pytest11"):
        if ep.dist is not None and ep.dist.name.startswith("shipway"):
            module = import_module(ep.value)
            found[ep.value] = [name for name, obj in vars(module).items() if getfixturemarker(obj) is not None]
    return found


def test_kit_fixtures_start_with_shipway() -> None:
    """The kits load wherever shipway is installed: a fixture named like a user's would shadow it."""
    found = _kit_fixtures()
    assert {"shipway.testing.plugin", "shipway_kubernetes.testing.plugin", "shipway_aws.testing.plugin"} <= set(found)
    assert all(found.values()), found
    unprefixed = {module: [n for n in names if not n.startswith("shipway_")] for module, names in found.items()}
    assert not any(unprefixed.values()), unprefixed
