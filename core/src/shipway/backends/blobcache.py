"""The content-addressed cache of model files that every store's ``fetch`` shares.

A blob enters the cache only after its size and sha256 were checked against
the manifest; it is then read-only, and a stamp records what the file looked
like when it was verified (size, inode, mtime and ctime). A cached blob whose
file no longer looks like its stamp — edited in place, replaced, touched — is
hashed again before it is trusted, and dropped if it no longer matches.

Files handed out of the cache are copies (:func:`place_version`), so editing a
fetched model file can never edit the cache; and a fetch assembles a fresh
folder and renames it into place, so nothing left in an old folder reaches a
build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from shipway.backends.hoststate import file_lock
from shipway.domain import ModelFile, ModelVersion
from shipway.errors import REPUBLISH, IntegrityError, ModelError
from shipway.layers import sort_key

CHUNK = 1 << 20
FETCH_MARK = ".shipway-fetched"
"""Suffix of the marker beside a folder made by fetch: only such folders (or empty ones) are replaced."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, f: ModelFile, version: ModelVersion) -> None:
    """Raise IntegrityError unless ``path`` has the size and sha256 the manifest gives for ``f``."""
    size = path.stat().st_size
    if size != f.size:
        raise IntegrityError(
            f"{version.name}:{version.version} file {f.path}: size {size} != manifest {f.size} ({REPUBLISH})"
        )
    actual = sha256_file(path)
    if actual != f.sha256:
        raise IntegrityError(
            f"{version.name}:{version.version} file {f.path}: sha256 {actual[:12]}… != manifest {f.sha256[:12]}… "
            f"({REPUBLISH})"
        )


class BlobCache:
    """Verified, read-only model files under ``root/blobs/sha256/<hex>``."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "blobs" / "sha256"

    def path(self, sha256: str) -> Path:
        return self.dir / sha256

    def partial_path(self, sha256: str) -> Path:
        """Where a blob being downloaded grows before it is verified and renamed to :meth:`path`."""
        return self.dir / f"{sha256}.partial"

    def _stamp_path(self, sha256: str) -> Path:
        return self.dir / f"{sha256}.verified"

    @staticmethod
    def _fingerprint(path: Path) -> list[int]:
        st = path.stat()
        return [st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]

    def holds(self, f: ModelFile) -> bool:
        """Whether the cache holds ``f`` with the right bytes (re-hashed if the file changed since verified)."""
        blob = self.path(f.sha256)
        try:
            fingerprint = self._fingerprint(blob)
        except FileNotFoundError:
            return False
        try:
            stamp = json.loads(self._stamp_path(f.sha256).read_text())
        except (OSError, ValueError):
            stamp = None
        if stamp == fingerprint and fingerprint[0] == f.size:
            return True
        if fingerprint[0] == f.size and sha256_file(blob) == f.sha256:
            self._stamp(f.sha256)
            return True
        self._drop(f.sha256)
        return False

    def _stamp(self, sha256: str) -> None:
        blob = self.path(sha256)
        os.chmod(blob, 0o444)  # read-only, and readable by a non-root app user in an image
        tmp = self.dir / f".{sha256}.{uuid.uuid4().hex}.stamp"
        tmp.write_text(json.dumps(self._fingerprint(blob)))
        os.replace(tmp, self._stamp_path(sha256))

    def _drop(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)
        self._stamp_path(sha256).unlink(missing_ok=True)

    def missing(self, version: ModelVersion) -> list[ModelFile]:
        """The files of ``version`` (one per content) the cache does not hold verified."""
        return [f for f in _unique(version.files) if not self.holds(f)]

    def ensure(
        self,
        version: ModelVersion,
        download: Callable[[ModelFile, Path], None],
        missing: list[ModelFile] | None = None,
        advance: Callable[[int], None] = lambda n: None,
    ) -> dict[str, Path]:
        """Download the files the cache lacks (``missing``, default: found now), verified; return path → blob.

        One process downloads a blob at a time (a lock per blob); the others
        wait and reuse it. ``download(file, partial)`` may find the first bytes
        of an interrupted download in ``partial`` and resume after them; if the
        result does not verify, it is deleted and downloaded whole once more.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        for f in self.missing(version) if missing is None else missing:
            with file_lock(self.dir / f"{f.sha256}.lock"):
                if not self.holds(f):  # another process may have finished it meanwhile
                    self._download(version, f, download)
            advance(f.size)
        return {f.path: self.path(f.sha256) for f in version.files}

    def _download(self, version: ModelVersion, f: ModelFile, download: Callable[[ModelFile, Path], None]) -> None:
        partial = self.partial_path(f.sha256)
        resumed = partial.exists() and partial.stat().st_size > 0
        for attempt in (1, 2):
            if not partial.exists():
                partial.touch()
            download(f, partial)
            try:
                verify_file(partial, f, version)
            except IntegrityError:
                partial.unlink(missing_ok=True)  # never resume from bad bytes
                if resumed and attempt == 1:
                    continue  # the old partial may have been the bad part: once more, whole
                raise
            os.replace(partial, self.path(f.sha256))
            self._stamp(f.sha256)
            return


def _unique(files: Iterable[ModelFile]) -> list[ModelFile]:
    """One file per content, in the order the model layer's tar holds them: what reads the files as they
    arrive (:mod:`shipway.arrival`) then never waits for a file that comes later."""
    seen: dict[str, ModelFile] = {}
    for f in sorted(files, key=lambda f: sort_key(f.path)):
        seen.setdefault(f.sha256, f)
    return list(seen.values())


def place_version(version: ModelVersion, blobs: dict[str, Path], dest: Path) -> Path:
    """Copy a version's verified blobs into a fresh folder and rename it to ``dest``.

    ``dest`` is replaced only if it is empty or was made by an earlier fetch (a
    marker beside it says so): a folder of the user's is never deleted. Two
    fetches into one ``dest`` at once are serialised; each leaves a complete folder.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fresh = dest.parent / f".{dest.name}.fetch-{uuid.uuid4().hex}"
    fresh.mkdir()
    try:
        for f in version.files:
            target = fresh / f.path  # a validated relative path: it stays inside `fresh`
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(blobs[f.path], target)
            os.chmod(target, 0o444)
        marker = dest.parent / f".{dest.name}{FETCH_MARK}"
        with file_lock(dest.parent / f".{dest.name}.lock"):
            old = None
            if dest.is_symlink() or dest.is_file():
                raise ModelError(f"cannot fetch into {dest}: it is a file or a link, not a folder")
            if dest.exists():
                if any(dest.iterdir()) and not marker.exists():
                    raise ModelError(f"cannot fetch into {dest}: the folder is not empty and was not made by a fetch")
                old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex}"
                os.rename(dest, old)
            os.rename(fresh, dest)
            marker.touch()
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if fresh.exists():
            shutil.rmtree(fresh, ignore_errors=True)
    return dest
