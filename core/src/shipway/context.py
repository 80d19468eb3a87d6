"""The build context as sent to the engine: the app folder filtered by ``.dockerignore``.

Nothing is copied: the context is a deterministic tar streamed straight from
the app folder (plus the wheelhouse, and the model on the Dockerfile path),
so a large file that ``.dockerignore`` excludes is never read, and the
context's digest is a fair part of a build's inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from docker.utils.build import exclude_paths

from shipway.layers import DIR_MODE, EXEC_MODE, FILE_MODE, Entry, sort_key, with_parents

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


def digest(entries: list[Entry], mtime: int, cache_dir: Path | None = None) -> str:
    """sha256 over every entry's tar header and content hash: names the context as sent.

    A file's content hash is kept in ``cache_dir`` under its device, inode,
    size and times, so a large file that stays in the context is not read
    again by every run just to compute the inputs digest.
    """
    path = cache_dir / "context-hashes.json" if cache_dir else None
    known: dict[str, str] = json.loads(path.read_text()) if path and path.is_file() else {}
    used: dict[str, str] = {}
    h = hashlib.sha256()
    for e in entries:
        h.update(e.header(mtime))
        if e.kind == "file":
            h.update(_content_hash(e, known, used).encode())
    if path is not None and any(known.get(k) != v for k, v in used.items()):
        merged = {**dict(list(known.items())[-20000:]), **used}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(merged))
        tmp.replace(path)
    return "sha256:" + h.hexdigest()


def _content_hash(e: Entry, known: dict[str, str], used: dict[str, str]) -> str:
    if e.source is None:
        return hashlib.sha256(b"".join(e.chunks())).hexdigest()
    st = os.stat(e.source)
    key = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
    found = known.get(key)
    if found is None:
        found = hashlib.sha256(b"".join(e.chunks())).hexdigest() if st.st_size < 1 << 20 else _hash_file(e.source)
    used[key] = found
    return found


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
