"""The build context as sent to the engine: the app folder filtered by ``.dockerignore``.

Nothing is copied: the context is a deterministic tar streamed straight from
the app folder (plus the wheelhouse, and the model on the Dockerfile path),
so a large file that ``.dockerignore`` excludes is never read, and the
context's digest is a fair part of a build's inputs.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from docker.utils.build import exclude_paths

from shipway.layers import DIR_MODE, EXEC_MODE, FILE_MODE, Entry, sort_key, tar_chunks, with_parents

ALWAYS_SKIPPED = (".git", ".shipway", "__pycache__", ".pytest_cache", ".venv", ".tox")


def _ignore_patterns(context: Path, extra: list[str]) -> list[str]:
    path = context / ".dockerignore"
    patterns: list[str] = []
    if path.is_file():
        lines = [line.strip() for line in path.read_text().splitlines()]
        patterns = [line for line in lines if line and not line.startswith("#")]
    patterns += [f"**/{name}" for name in ALWAYS_SKIPPED]
    patterns += [p.strip("/") for p in extra]
    return patterns


def app_entries(context: Path, dockerfile: str, exclude: list[str]) -> list[Entry]:
    """Entries for the files of ``context`` that Docker would send, minus ``exclude`` (relative folders).

    Modes are normalised the way git stores them (0755 when any execute bit is
    set, else 0644; folders 0755), so two checkouts of a commit give one context.
    """
    keep = exclude_paths(str(context), _ignore_patterns(context, exclude), dockerfile=dockerfile)
    entries: list[Entry] = []
    for rel in keep:
        path = context / rel
        name = Path(rel).as_posix()
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            entries.append(Entry(name=name, kind="symlink", mode=0o777, linkname=os.readlink(path)))
        elif stat.S_ISDIR(st.st_mode):
            entries.append(Entry(name=name, kind="dir", mode=DIR_MODE))
        elif stat.S_ISREG(st.st_mode):
            mode = EXEC_MODE if st.st_mode & 0o111 else FILE_MODE
            entries.append(Entry(name=name, size=st.st_size, mode=mode, source=path))
    return entries


def tree_entries(folder: Path, under: str) -> list[Entry]:
    """Entries for every regular file of ``folder``, placed under ``under`` (relative) in the context."""
    out = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            name = f"{under.strip('/')}/{path.relative_to(folder).as_posix()}"
            out.append(Entry(name=name, size=path.stat().st_size, mode=FILE_MODE, source=path))
    return out


def merge(*groups: list[Entry]) -> list[Entry]:
    """One sorted list of entries, with every parent folder present once."""
    seen: dict[str, Entry] = {}
    for group in groups:
        for e in group:
            seen.setdefault(e.name, e)
    files = [e for e in seen.values() if e.kind != "dir"]
    dirs = {e.name for e in seen.values() if e.kind == "dir"}
    out = with_parents(files)
    names = {e.name for e in out}
    out += [Entry(name=d, kind="dir", mode=DIR_MODE) for d in dirs if d not in names]
    return sorted(out, key=lambda e: sort_key(e.name))


def digest(entries: list[Entry], mtime: int) -> str:
    """sha256 of the tar these entries stream as."""
    h = hashlib.sha256()
    for chunk in tar_chunks(entries, mtime):
        h.update(chunk)
    return "sha256:" + h.hexdigest()
