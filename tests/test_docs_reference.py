"""docs/reference/ matches the code (pydantic models, click commands); the guides' links resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shipway import config, docgen
from shipway.cli import cli

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "docs" / "reference"
FIX = "regenerate it: .venv/bin/python -m shipway.docgen docs/reference"


@pytest.mark.parametrize("name", sorted(docgen.FILES))
def test_reference_is_in_sync_with_the_code(name: str) -> None:
    path = REFERENCE / name
    assert path.is_file(), f"{path} is missing: {FIX}"
    assert path.read_text() == docgen.FILES[name](), f"{path} is out of date: {FIX}"


def test_configuration_reference_has_every_top_level_key() -> None:
    text = docgen.config_reference()
    for key in config.Config.model_fields:
        assert f"| `{key}` |" in text, key


def test_cli_reference_has_every_command() -> None:
    text = docgen.cli_reference()
    for name in cli.commands:
        assert f"## shipway {name}\n" in text, name


def test_model_table_reports_type_default_and_limits() -> None:
    row = next(line for line in docgen.model_table(config.AppConfig).splitlines() if line.startswith("| `port`"))
    assert row == "| `port` | `int` | `8000` | Port the app listens on inside the container (≥1; ≤65535) |"


@pytest.mark.parametrize("doc", ["README.md", "docs/getting-started.md"])
def test_relative_links_resolve(doc: str) -> None:
    path = REPO / doc
    links = re.findall(r"\]\(([^)#]+?)(?:#[^)]*)?\)", path.read_text())
    local = [link for link in links if "://" not in link]
    assert local, f"{doc} links nowhere"
    missing = [link for link in local if not (path.parent / link).exists()]
    assert missing == []


def test_readme_links_the_guides() -> None:
    text = (REPO / "README.md").read_text()
    for target in ("docs/getting-started.md", "docs/reference/configuration.md", "docs/reference/cli.md"):
        assert f"]({target}" in text, target


def test_getting_started_covers_each_platform() -> None:
    headings = re.findall(r"^## (.+)$", (REPO / "docs" / "getting-started.md").read_text(), re.M)
    for platform in ("Local quickstart", "Azure", "AWS", "Docker Swarm", "Kubernetes", "Shell completion"):
        assert any(platform in h for h in headings), platform
