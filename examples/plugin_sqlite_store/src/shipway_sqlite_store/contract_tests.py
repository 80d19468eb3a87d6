"""The writable store contract for the ``sqlite`` kind, with the public kit only.

Shipped in the package (``SHIPWAY_CONTRACT_TESTS``) so ``shipway plugins --check sqlite``
can run it against the installed plugin; ``tests/`` runs it too.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from shipway.backends.base import BackendContext, ModelStore
from shipway.domain import ModelFile, ModelVersion
from shipway.testing.contracts import WritableModelStoreContract
from shipway_sqlite_store.store import SqliteModelStore, SqliteStoreSettings


def _sqlite(store: ModelStore) -> SqliteModelStore:
    assert isinstance(store, SqliteModelStore)
    return store


def execute(store: ModelStore, sql: str, *args: object) -> None:
    """Write to the database behind the store's back, as anyone with access to the file could."""
    with closing(sqlite3.connect(_sqlite(store).path, isolation_level=None)) as db:
        db.execute(sql, args)


class TestSqliteStore(WritableModelStoreContract):
    """A fresh database file per test, with its own cache."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> SqliteModelStore:
        settings = SqliteStoreSettings(kind="sqlite", path="store/models.db")
        return SqliteModelStore(settings, BackendContext(root=tmp_path, cache_dir=tmp_path / "cache"))

    def corrupt(self, store: ModelStore, version: ModelVersion, file: ModelFile) -> None:
        with closing(sqlite3.connect(_sqlite(store).path)) as db:
            (data,) = db.execute("SELECT data FROM chunks WHERE sha256 = ? AND offset = 0", (file.sha256,)).fetchone()
        changed = bytearray(data)
        changed[len(changed) // 2] ^= 0xFF
        execute(store, "UPDATE chunks SET data = ? WHERE sha256 = ? AND offset = 0", bytes(changed), file.sha256)

    def write_manifest(self, store: ModelStore, name: str, version: str, manifest: dict[str, Any]) -> None:
        sql = "INSERT OR REPLACE INTO versions (name, version, manifest) VALUES (?, ?, ?)"
        execute(store, sql, name, version, json.dumps(manifest))

    def break_publish(self, store: ModelStore, monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> None:
        put = _sqlite(store)._put_blob

        def put_then_act(rel: str, src: Path) -> ModelFile:
            entry = put(rel, src)
            action()  # one file's content is committed to the database
            return entry

        monkeypatch.setattr(store, "_put_blob", put_then_act)
