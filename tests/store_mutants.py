"""Deliberately broken model stores: each breaks one promise of the writable store contract.

``tests/test_contract_mutants.py`` runs the contract against each of them (one
subprocess: tests/contract_runs.py) and asserts that the contract rejects it. The mutants are
subclasses of two stores that pass: the built-in ``local`` store and the
``sqlite`` example plugin, so each one differs from a passing store by one fault.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from shipway.backends import local_store
from shipway.backends.base import BackendContext, check_alias, check_publish, model_sources, next_version, sha256_file
from shipway.backends.local_store import LocalModelStore, LocalStoreSettings
from shipway.domain import ModelFile, ModelVersion, utcnow
from shipway.errors import ModelError
from shipway.testing import local_contract
from shipway_sqlite_store import SqliteModelStore, SqliteStoreSettings, contract_tests

# -- the two passing stores, as contract test classes --------------------------------------------


class LocalContract(local_contract.TestLocalStore):
    """The writable contract (the kit's own suite for ``local``) run against ``store_class``."""

    store_class: type[LocalModelStore] = LocalModelStore

    @pytest.fixture
    def store(self, tmp_path: Path) -> LocalModelStore:
        settings = LocalStoreSettings(kind="local", path=str(tmp_path / "store"))
        return self.store_class(settings, BackendContext(root=tmp_path, cache_dir=tmp_path / "cache"))


class SqliteContract(contract_tests.TestSqliteStore):
    """The writable contract (the sqlite plugin's own suite) run against ``store_class``."""

    store_class: type[SqliteModelStore] = SqliteModelStore

    @pytest.fixture
    def store(self, tmp_path: Path) -> SqliteModelStore:
        settings = SqliteStoreSettings(kind="sqlite", path="models.db")
        return self.store_class(settings, BackendContext(root=tmp_path, cache_dir=tmp_path / "cache"))


# -- local store mutants ---------------------------------------------------------------------------


class LocalDropsMetadata(LocalModelStore):
    """publish ignores ``metadata``."""

    def publish(
        self, path: Path, name: str, version: str | None = None, aliases: tuple[str, ...] = (), metadata: Any = None
    ) -> ModelVersion:
        return super().publish(path, name, version=version, aliases=aliases)


class LocalAppendingDownload(LocalModelStore):
    """_download appends the whole file after whatever ``dest`` holds."""

    def _download(self, version: ModelVersion, file: ModelFile, dest: Path) -> None:
        src = self.root / version.name / "versions" / version.version / "files" / file.path
        with dest.open("ab") as out:
            out.write(src.read_bytes())


class LocalNoWriteLock(LocalModelStore):
    """No lock around numbering and the alias table."""

    @contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        yield


class LocalRepublishOverwrites(LocalModelStore):
    """Republishing a version replaces it, then says it already existed."""

    def _commit(
        self,
        staging: Path,
        model_dir: Path,
        name: str,
        version: str | None,
        files: tuple[ModelFile, ...],
        metadata: dict[str, Any],
    ) -> ModelVersion:
        target = model_dir / "versions" / (version or "-")
        if version is not None and target.exists():
            shutil.rmtree(target)
            super()._commit(staging, model_dir, name, version, files, metadata)
            raise ModelError(f"model {name!r} version {version!r} already exists; versions are immutable")
        return super()._commit(staging, model_dir, name, version, files, metadata)


class LocalAliasSavesThenRaises(LocalModelStore):
    """set_alias writes the alias, then checks that the version exists."""

    def set_alias(self, name: str, alias: str, version: str) -> None:
        with self._lock(name):
            table = self.aliases(name)
            table[alias] = version
            local_store._write_json(self._model_dir(name) / "aliases.json", table)
        super().set_alias(name, alias, version)


class LocalAliasLostUpdate(LocalModelStore):
    """set_alias reads, changes and writes the alias table without the lock."""

    def set_alias(self, name: str, alias: str, version: str) -> None:
        check_alias(alias)
        if not (self._model_dir(name) / "versions" / version / "manifest.json").is_file():
            raise ModelError(f"model {name!r} has no version {version!r}")
        table = self.aliases(name)
        table[alias] = version
        local_store._write_json(self._model_dir(name) / "aliases.json", table)


class LocalManifestFirst(LocalModelStore):
    """publish writes the manifest into place, then copies the files beside it."""

    def publish(
        self, path: Path, name: str, version: str | None = None, aliases: tuple[str, ...] = (), metadata: Any = None
    ) -> ModelVersion:
        check_publish(name, version, aliases)
        sources = model_sources(path)
        files = tuple(ModelFile(path=rel, size=p.stat().st_size, sha256=sha256_file(p)) for rel, p in sources)
        with self._lock(name):
            number = version or next_version(self.versions(name))
            target = self._model_dir(name) / "versions" / number
            if target.exists():
                raise ModelError(f"model {name!r} version {number!r} already exists; versions are immutable")
            (target / "files").mkdir(parents=True)
            mv = ModelVersion(name=name, version=number, created=utcnow(), files=files, metadata=metadata or {})
            local_store._write_json(target / "manifest.json", mv.manifest())
        for rel, src in sources:
            dest = target / "files" / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            local_store._copy_hashing(src, dest)
        for alias in aliases:
            self.set_alias(name, alias, number)
        return mv


class LocalNoParseManifest(LocalModelStore):
    """versions() builds versions from manifests itself instead of through parse_manifest."""

    def versions(self, name: str) -> list[ModelVersion]:
        vdir = self._model_dir(name) / "versions"
        found = []
        for manifest in vdir.glob("*/manifest.json") if vdir.is_dir() else []:
            data = json.loads(manifest.read_text())
            found.append(ModelVersion.model_validate({k: v for k, v in data.items() if k != "digest"}))
        return sorted(found, key=lambda v: v.created)


class LocalUnverifiedBlobs(LocalModelStore):
    """verified_blobs hands out the store's own files: not verified, not in the runner's cache, writable."""

    def verified_blobs(self, version: ModelVersion) -> dict[str, Path]:
        files = self.root / version.name / "versions" / version.version / "files"
        return {f.path: files / f.path for f in version.files}


# -- sqlite store mutants --------------------------------------------------------------------------


class SqliteDropsMetadata(SqliteModelStore):
    """publish ignores ``metadata``."""

    def publish(
        self, path: Path, name: str, version: str | None = None, aliases: tuple[str, ...] = (), metadata: Any = None
    ) -> ModelVersion:
        return super().publish(path, name, version=version, aliases=aliases)


class SqliteAppendingDownload(SqliteModelStore):
    """_download appends the whole file after whatever ``dest`` holds."""

    def _download(self, version: ModelVersion, file: ModelFile, dest: Path) -> None:
        with self._db() as db, dest.open("ab") as out:
            for (data,) in db.execute("SELECT data FROM chunks WHERE sha256 = ? ORDER BY offset", (file.sha256,)):
                out.write(data)


class SqliteNoWriteLock(SqliteModelStore):
    """The version number is chosen in one transaction and written in another (last writer wins)."""

    def publish(
        self, path: Path, name: str, version: str | None = None, aliases: tuple[str, ...] = (), metadata: Any = None
    ) -> ModelVersion:
        check_publish(name, version, aliases)
        files = tuple(self._put_blob(rel, src) for rel, src in model_sources(path))
        with self._db() as db:
            existing = self._versions(db, name)
        number = version or next_version(existing)
        if any(v.version == number for v in existing):
            raise ModelError(f"model {name!r} version {number!r} already exists; versions are immutable")
        mv = ModelVersion(name=name, version=number, created=utcnow(), files=files, metadata=metadata or {})
        # A writer as slow as one over a network: the window between the two transactions stays open long
        # enough that writers started together always meet in it (on a busy 2-core runner they could miss).
        time.sleep(0.05)
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO versions VALUES (?, ?, ?)", (name, number, json.dumps(mv.manifest())))
            for alias in aliases:
                db.execute("INSERT OR REPLACE INTO aliases VALUES (?, ?, ?)", (name, alias, number))
        return mv


class SqliteRepublishOverwrites(SqliteModelStore):
    """Republishing a version replaces its manifest, then says it already existed."""

    def publish(
        self, path: Path, name: str, version: str | None = None, aliases: tuple[str, ...] = (), metadata: Any = None
    ) -> ModelVersion:
        if version is not None and any(v.version == version for v in self.versions(name)):
            files = tuple(self._put_blob(rel, src) for rel, src in model_sources(path))
            mv = ModelVersion(name=name, version=version, created=utcnow(), files=files, metadata=metadata or {})
            with self._db() as db:
                db.execute(
                    "INSERT OR REPLACE INTO versions VALUES (?, ?, ?)", (name, version, json.dumps(mv.manifest()))
                )
            raise ModelError(f"model {name!r} version {version!r} already exists; versions are immutable")
        return super().publish(path, name, version=version, aliases=aliases, metadata=metadata)


class SqliteAliasSavesThenRaises(SqliteModelStore):
    """set_alias writes the alias, then checks that the version exists."""

    def set_alias(self, name: str, alias: str, version: str) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO aliases VALUES (?, ?, ?)", (name, alias, version))
        super().set_alias(name, alias, version)


class SqliteAliasLostUpdate(SqliteModelStore):
    """set_alias reads the alias table, then rewrites it whole outside any transaction."""

    def set_alias(self, name: str, alias: str, version: str) -> None:
        check_alias(alias)
        if version not in {v.version for v in self.versions(name)}:
            raise ModelError(f"model {name!r} has no version {version!r}")
        table = self.aliases(name)
        table[alias] = version
        with self._db() as db:
            db.execute("DELETE FROM aliases WHERE name = ?", (name,))
            db.executemany("INSERT INTO aliases VALUES (?, ?, ?)", [(name, a, v) for a, v in table.items()])


class SqliteManifestFirst(SqliteModelStore):
    """publish commits the manifest row first, then writes the files' contents."""

    def publish(
        self, path: Path, name: str, version: str | None = None, aliases: tuple[str, ...] = (), metadata: Any = None
    ) -> ModelVersion:
        check_publish(name, version, aliases)
        sources = model_sources(path)
        files = tuple(ModelFile(path=rel, size=p.stat().st_size, sha256=sha256_file(p)) for rel, p in sources)
        with self._transaction() as db:
            existing = self._versions(db, name)
            number = version or next_version(existing)
            if any(v.version == number for v in existing):
                raise ModelError(f"model {name!r} version {number!r} already exists; versions are immutable")
            mv = ModelVersion(name=name, version=number, created=utcnow(), files=files, metadata=metadata or {})
            db.execute("INSERT INTO versions VALUES (?, ?, ?)", (name, number, json.dumps(mv.manifest())))
            for alias in aliases:
                db.execute("INSERT OR REPLACE INTO aliases VALUES (?, ?, ?)", (name, alias, number))
        for rel, src in sources:
            self._put_blob(rel, src)
        return mv


class SqliteNoParseManifest(SqliteModelStore):
    """_versions builds versions from manifests itself instead of through parse_manifest."""

    def _versions(self, db: sqlite3.Connection, name: str) -> list[ModelVersion]:
        rows = db.execute("SELECT manifest FROM versions WHERE name = ?", (name,)).fetchall()
        found = []
        for (text,) in rows:
            data = json.loads(text)
            found.append(ModelVersion.model_validate({k: v for k, v in data.items() if k != "digest"}))
        return sorted(found, key=lambda v: v.created)


class SqliteUnverifiedBlobs(SqliteModelStore):
    """verified_blobs writes each file out of the database and hands it out unchecked and writable."""

    def verified_blobs(self, version: ModelVersion) -> dict[str, Path]:
        folder = self.context.cache_dir / "unchecked" / version.name / version.version
        out = {}
        for f in version.files:
            dest = folder / f.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.unlink(missing_ok=True)
            self._download(version, f, dest)
            out[f.path] = dest
        return out
