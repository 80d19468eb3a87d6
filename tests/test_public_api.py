"""Plugins and examples import only what docs/plugins.md declares ("What a plugin may import").

The declared list is read from the document, so the document and this check
cannot drift apart; every other shipway module is internal.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "plugins.md"
SECTION = "## What a plugin may import"


def declared() -> set[str]:
    """The names in the first column of the section's table: modules, or ``module.name``."""
    text = DOC.read_text()
    assert SECTION in text, f"{DOC}: no section {SECTION!r}"
    body = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    names = {m.group(1) for m in re.finditer(r"^\| `(shipway[\w.]*)` \|", body, re.MULTILINE)}
    assert names, f"{DOC}: the section {SECTION!r} has no table of imports"
    return names


def is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def shipway_imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of each shipway module or name that ``path`` imports."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "shipway"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "shipway":
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def allowed(what: str, api: set[str]) -> bool:
    """A module only when declared itself; a name when it or its module is declared."""
    if what in api:
        return True
    return not is_module(what) and what.rsplit(".", 1)[0] in api


def test_the_declared_api_exists() -> None:
    for name in sorted(declared()):
        if is_module(name):
            importlib.import_module(name)
        else:
            module, attr = name.rsplit(".", 1)
            assert hasattr(importlib.import_module(module), attr), f"{DOC}: {name} does not exist"


def test_plugins_and_examples_import_only_the_declared_api() -> None:
    api = declared()
    files = [p for top in ("plugins", "examples") for p in sorted((REPO / top).rglob("*.py")) if ".venv" not in p.parts]
    imports = [(p, line, what) for p in files for line, what in shipway_imports(p)]
    assert len(imports) > 100, "the walk found too few shipway imports to mean anything"
    outside = [f"{p.relative_to(REPO)}:{line}: {what}" for p, line, what in imports if not allowed(what, api)]
    assert not outside, (
        f"imports outside the plugin API declared in {DOC.relative_to(REPO)} ({SECTION!r}); "
        "import a declared module, or declare the module deliberately:\n  " + "\n  ".join(outside)
    )


def test_the_cli_does_not_load_the_test_kit() -> None:
    """``shipway plugins`` compares contract versions without importing shipway.testing (or pytest)."""
    probe = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from shipway.cli import cli\n"
        "result = CliRunner().invoke(cli, ['plugins'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in sys.modules if m.startswith('shipway.testing') or m == 'pytest'))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
