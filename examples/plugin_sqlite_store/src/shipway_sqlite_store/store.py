"""The ``sqlite`` model store: versioned models in one SQLite database file.

Tables::

    chunks(sha256, offset, data)       file contents in 1 MiB pieces, content-addressed
    blobs(sha256, size)                a content whose chunks are all written (same transaction)
    versions(name, version, manifest)  one row per complete version: its manifest JSON
    aliases(name, alias, version)      one row per alias

A publish writes each new content in a transaction of its own (a content the
database already holds is not written again), then numbers the version and
writes its manifest row and aliases in one ``BEGIN IMMEDIATE`` transaction:
numbering happens under SQLite's write lock, so concurrent publishers get
distinct numbers, and a version is visible only once that transaction commits.
A publish that fails or is killed leaves at most contents no version names yet,
which the next publish of the same bytes reuses.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from pydantic import Field

from shipway.backends.base import (
    CHUNK,
    BackendSettings,
    ModelStore,
    check_alias,
    check_publish,
    model_sources,
    next_version,
    parse_manifest,
    sha256_file,
    version_order,
)
from shipway.domain import ModelFile, ModelVersion, utcnow, valid_model_name
from shipway.errors import BackendError, IntegrityError, ModelError

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS chunks (sha256 TEXT NOT NULL, offset INTEGER NOT NULL, data BLOB NOT NULL,
                                   PRIMARY KEY (sha256, offset))""",
    """CREATE TABLE IF NOT EXISTS blobs (sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS versions (name TEXT NOT NULL, version TEXT NOT NULL, manifest TEXT NOT NULL,
                                     PRIMARY KEY (name, version))""",
    """CREATE TABLE IF NOT EXISTS aliases (name TEXT NOT NULL, alias TEXT NOT NULL, version TEXT NOT NULL,
                                    PRIMARY KEY (name, alias))""",
)


class SqliteStoreSettings(BackendSettings):
    """``model_store: {kind: sqlite, path: models.db}``."""

    kind: str = "sqlite"
    path: str = Field(".shipway/models.db", description="Database file, relative to the config file")
    timeout: float = Field(300, gt=0, description="Seconds to wait while another process writes")


class SqliteModelStore(ModelStore):
    """Versioned, content-addressed models in one SQLite database file on a local disk."""

    kind = "sqlite"
    Settings = SqliteStoreSettings
    settings: SqliteStoreSettings

    @property
    def path(self) -> Path:
        """The database file (a relative ``path`` is relative to the config file's folder)."""
        path = Path(self.settings.path).expanduser()
        return path if path.is_absolute() else self.context.root / path

    def describe(self) -> str:
        return f"sqlite store {self.path}"

    # -- the database ----------------------------------------------------------------
    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A fresh connection for one operation (never shared: safe after fork), SQLite errors as BackendError."""
        started = time.monotonic()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self.path, timeout=self.settings.timeout, isolation_level=None)) as db:
                self._prepare(db, deadline=started + self.settings.timeout)
                yield db
        except sqlite3.OperationalError as exc:
            waited = time.monotonic() - started
            if _busy(exc) and waited >= self.settings.timeout:
                raise BackendError(
                    f"{self.describe()}: another process held the database for {self.settings.timeout:g}s"
                ) from None
            raise BackendError(f"{self.describe()}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise BackendError(f"{self.describe()}: {exc}") from None

    @staticmethod
    def _prepare(db: sqlite3.Connection, deadline: float) -> None:
        """WAL mode and the tables, created under the write lock.

        Processes that open a new database at once race to create it; the loser of that race gets
        SQLITE_BUSY at once (waiting cannot help a stale snapshot), so it tries again until ``deadline``.
        """
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")  # readers never wait for a publish
                if db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0] == len(_SCHEMA):
                    return
                db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _SCHEMA:
                        db.execute(statement)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                return
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding SQLite's write lock from the start; rolled back on any error."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @staticmethod
    def _check_name(name: str) -> str:
        if not valid_model_name(name):
            raise ModelError(f"invalid model name {name[:80]!r}: letters, digits, '.', '_' and '-'")
        return name

    # -- reading -----------------------------------------------------------------------
    def versions(self, name: str) -> list[ModelVersion]:
        self._check_name(name)
        if not self.path.exists():
            return []
        with self._db() as db:
            return self._versions(db, name)

    def _versions(self, db: sqlite3.Connection, name: str) -> list[ModelVersion]:
        found = []
        for version, text in db.execute("SELECT version, manifest FROM versions WHERE name = ?", (name,)):
            where = f"{self.describe()}: {name}:{version}"
            try:
                data = json.loads(text)
            except ValueError:
                raise IntegrityError(f"{where}: invalid manifest: not JSON") from None
            parsed = parse_manifest(data, where)  # validated, and its recorded digest checked
            if (parsed.name, parsed.version) != (name, version):
                raise ModelError(f"{where}: the manifest says {parsed.name}:{parsed.version}")
            found.append(parsed)
        return sorted(found, key=version_order)

    def aliases(self, name: str) -> dict[str, str]:
        self._check_name(name)
        if not self.path.exists():
            return {}
        with self._db() as db:
            rows = db.execute("SELECT alias, version FROM aliases WHERE name = ? ORDER BY alias", (name,))
            return dict(rows)

    def _download(self, version: ModelVersion, file: ModelFile, dest: Path) -> None:
        have = dest.stat().st_size if dest.exists() else 0
        if have >= file.size:
            have = 0  # not a proper prefix: write the file whole
        missing = ModelError(f"{version.name}:{version.version}: file {file.path} is missing from {self.describe()}")
        if not self.path.exists():
            raise missing
        with self._db() as db:
            if db.execute("SELECT 1 FROM blobs WHERE sha256 = ?", (file.sha256,)).fetchone() is None:
                raise missing
            rows = db.execute(
                "SELECT offset, data FROM chunks WHERE sha256 = ? AND offset + length(data) > ? ORDER BY offset",
                (file.sha256, have),
            )
            with dest.open("r+b" if have else "wb") as out:
                out.seek(have)
                out.truncate()  # resume right after the bytes already there
                for offset, data in rows:
                    out.write(data[max(0, have - offset) :])

    # -- writing -----------------------------------------------------------------------
    def publish(
        self,
        path: Path,
        name: str,
        version: str | None = None,
        aliases: tuple[str, ...] = (),
        metadata: dict[str, Any] | None = None,
    ) -> ModelVersion:
        check_publish(name, version, aliases)
        sources = model_sources(path)
        files = []
        with self.context.reporter.bytes(f"publish {name}", sum(p.stat().st_size for _, p in sources)) as bar:
            for rel, src in sources:
                files.append(self._put_blob(rel, src))
                bar.advance(files[-1].size)
        with self._transaction() as db:
            existing = self._versions(db, name)
            number = version or next_version(existing)
            if any(v.version == number for v in existing):
                raise ModelError(f"model {name!r} version {number!r} already exists; versions are immutable")
            published = ModelVersion(
                name=name, version=number, created=utcnow(), files=tuple(files), metadata=metadata or {}
            )
            db.execute(
                "INSERT INTO versions (name, version, manifest) VALUES (?, ?, ?)",
                (name, number, json.dumps(published.manifest(), sort_keys=True)),
            )
            for alias in aliases:
                db.execute(
                    "INSERT OR REPLACE INTO aliases (name, alias, version) VALUES (?, ?, ?)", (name, alias, number)
                )
        return published

    def _put_blob(self, rel: str, src: Path) -> ModelFile:
        """Store the content of one file (once per content) and return its manifest entry."""
        sha256, size = sha256_file(src), src.stat().st_size
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM blobs WHERE sha256 = ?", (sha256,)).fetchone() is None:
                digest, offset = hashlib.sha256(), 0
                with src.open("rb") as f:
                    while chunk := f.read(CHUNK):
                        digest.update(chunk)
                        db.execute(
                            "INSERT INTO chunks (sha256, offset, data) VALUES (?, ?, ?)", (sha256, offset, chunk)
                        )
                        offset += len(chunk)
                if digest.hexdigest() != sha256 or offset != size:
                    raise ModelError(f"{src}: the file changed while it was being published")
                db.execute("INSERT INTO blobs (sha256, size) VALUES (?, ?)", (sha256, size))
        return ModelFile(path=rel, size=size, sha256=sha256)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        check_alias(alias)
        self._check_name(name)
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM versions WHERE name = ? AND version = ?", (name, version)).fetchone() is None:
                raise ModelError(f"model {name!r} has no version {version[:80]!r}")
            db.execute("INSERT OR REPLACE INTO aliases (name, alias, version) VALUES (?, ?, ?)", (name, alias, version))


def _busy(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused because another connection holds a lock."""
    return "locked" in str(exc) or "busy" in str(exc)
