"""`shipway init`: the files a new project needs, from a few answers.

shipway.yaml (commented, validated before init returns), a Dockerfile in the
layer order shipway needs, a .dockerignore, and CI files for GitHub Actions
and/or Azure Pipelines. Existing files are never overwritten without --force.
The project's .gitignore is only ever added to: the lines shipway needs that
it lacks, below a comment.
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

GITIGNORE = Path(".gitignore")
GIT_IGNORED = (".shipway/", "__pycache__/", ".pytest_cache/", "shipway-*.json", "shipway-*.xml", "shipway-*.html")
"""What a project must not commit: shipway's records, cache and (by default) local model store, what the test
stage leaves next to the code, and the records and reports the CI files write."""

__all__ = [
    "AZURE_PIPELINE",
    "GITHUB_WORKFLOW",
    "GITIGNORE",
    "GIT_IGNORED",
    "Answers",
    "files",
    "ignore_in_git",
    "validate",
    "write",
]


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


def ignore_in_git(folder: Path) -> list[str]:
    """Add to ``folder``'s .gitignore (made if missing) the :data:`GIT_IGNORED` patterns it lacks; returns them.

    A line counts as present whatever its leading ``/`` or ``**/`` and
    trailing ``/``, and so does a negated one (``!``: the project's own
    choice, which a later line would overturn); nothing the file holds is
    changed or reordered.
    """
    path = folder / GITIGNORE
    text = path.read_text() if path.is_file() else ""
    have = {_pattern(line) for line in text.splitlines()}
    missing = [line for line in GIT_IGNORED if _pattern(line) not in have]
    if missing:
        lead = "\n" if text and not text.endswith("\n") else ""
        gap = "\n" if text.strip() else ""
        block = "# shipway: records, cache, local model store, test leftovers, CI reports\n" + "\n".join(missing)
        path.write_text(f"{text}{lead}{gap}{block}\n")
    return missing


def _pattern(line: str) -> str:
    """A .gitignore line as compared: no surrounding blanks, ``!``, leading ``/`` or ``**/``, or trailing ``/``."""
    line = line.strip().removeprefix("!")
    for prefix in ("**/", "/"):
        line = line.removeprefix(prefix)
    return line.rstrip("/")


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
