"""`shipway init`: the files a new project needs, from a few answers.

shipway.yaml (commented, validated before init returns), a Dockerfile in the
layer order shipway needs, a .dockerignore, and CI files for GitHub Actions
and/or Azure Pipelines. Existing files are never overwritten without --force.
The project's .gitignore is only ever added to: the lines shipway needs that
it lacks, below a comment.
"""

from __future__ import annotations

import fnmatch
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
_AT_ROOT = {".shipway/", ".pytest_cache/", "shipway-*.json", "shipway-*.xml", "shipway-*.html"}
"""The patterns for what only ever appears at the project's root, so an anchored line (``/x``) holds too."""

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
    """Append to ``folder``'s .gitignore (made if missing) the :data:`GIT_IGNORED` patterns it lacks; returns them.

    A pattern is present when a line says the same to git (``x/`` also as
    ``x`` or ``**/x/``; ``/x`` only for what lives at the root). A negated
    line the pattern would cover (``!shipway-release.json``) is the
    project's choice, which a later line would overturn: that pattern is
    not added. Nothing the file holds is changed; its line ending is kept.
    """
    path = folder / GITIGNORE
    data = path.read_bytes() if path.exists() else b""
    text = data.decode("utf-8", errors="surrogateescape")
    lines = [line.rstrip() for line in text.splitlines()]
    kept = {line for line in lines if not line.startswith("!")}
    negated = [line[1:].lstrip("/") for line in lines if line.startswith("!")]
    missing = [p for p in GIT_IGNORED if not _variants(p) & kept and not any(_covers(p, n) for n in negated)]
    if missing:
        eol = "\r\n" if "\r\n" in text else "\n"
        lead = eol if text and not text.endswith("\n") else ""
        gap = eol if text.strip() and not text.rstrip(" \t").endswith(("\n\n", "\r\n\r\n")) else ""
        block = ["# shipway: records, cache, local model store, test leftovers, CI reports", *missing]
        with path.open("ab") as f:
            f.write((lead + gap + eol.join(block) + eol).encode("utf-8", errors="surrogateescape"))
    return missing


def _variants(pattern: str) -> set[str]:
    """The lines that ignore what ``pattern`` ignores, for the places it occurs."""
    names = {pattern, pattern.rstrip("/")}
    out = names | {"**/" + n for n in names}
    if pattern in _AT_ROOT:
        out |= {"/" + n for n in names}
    return out


def _covers(pattern: str, path: str) -> bool:
    """Whether ``pattern`` ignores ``path`` (a negated line's) or a folder holding it: it has no ``/`` but
    a trailing one, so git matches it against every part of a path."""
    return any(fnmatch.fnmatchcase(part, pattern.rstrip("/")) for part in path.rstrip("/").split("/"))


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
