"""`shipway init`: the files a new project needs, from a few answers.

shipway.yaml (commented, validated before init returns), a Dockerfile in the
layer order shipway needs, a .dockerignore, and CI files for GitHub Actions
and/or Azure Pipelines. Existing files are never overwritten without --force.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipway.errors import ConfigError
from shipway.scaffold import ci, project
from shipway.scaffold.answers import Answers

GITHUB_WORKFLOW = Path(".github/workflows/shipway.yml")
AZURE_PIPELINE = Path("azure-pipelines.yml")

__all__ = ["AZURE_PIPELINE", "GITHUB_WORKFLOW", "Answers", "files", "validate", "write"]


def files(a: Answers) -> dict[Path, str]:
    """Relative path → content of every file init writes for ``a``."""
    out = {
        Path("shipway.yaml"): project.shipway_yaml(a),
        Path("Dockerfile"): project.dockerfile(a),
        Path(".dockerignore"): project.dockerignore(a),
    }
    if "github" in a.ci:
        out[GITHUB_WORKFLOW] = ci.github_workflow(a)
    if "azure-pipelines" in a.ci:
        out[AZURE_PIPELINE] = ci.azure_pipeline(a)
    return out


def write(folder: Path, a: Answers, force: bool = False) -> list[Path]:
    """Write the files into ``folder``; refuse (ConfigError naming them) to overwrite unless ``force``."""
    planned = files(a.check())
    existing = [p for p in planned if (folder / p).exists()]
    if existing and not force:
        names = ", ".join(str(p) for p in existing)
        raise ConfigError(f"{names}: already exist(s); nothing was written (--force overwrites)")
    for rel, text in planned.items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return list(planned)


class _WithSamples(Mapping[str, str]):
    """The environment, with sample values for the variables CI provides later."""

    def __init__(self, base: Mapping[str, str]) -> None:
        self._data = {**project.SAMPLE_ENV, **base}

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Any:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def validate(path: Path, host: Any, environ: Mapping[str, str] | None = None) -> list[str]:
    """Load ``path`` as `shipway validate` does; return the sample variables it needed (to set in CI)."""
    from shipway import config

    env = os.environ if environ is None else environ
    config.load(path, host, _WithSamples(env))
    text = path.read_text()
    return sorted(k for k in project.SAMPLE_ENV if k not in env and ("${" + k + "}" in text or "${" + k + ":-" in text))
