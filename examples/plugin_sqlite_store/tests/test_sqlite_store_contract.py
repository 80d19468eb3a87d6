"""The sqlite store: the writable store contract (shipped in the package, see contract_tests.py) plus specifics."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from shipway.backends.base import BackendContext
from shipway.errors import BackendError
from shipway.plugins import PluginHost
from shipway.testing.contracts import unique, write_model
from shipway_sqlite_store import SqliteModelStore, SqliteStoreSettings
from shipway_sqlite_store.contract_tests import TestSqliteStore  # noqa: F401 - the contract suite, collected here


def make_store(tmp_path: Path, **options: Any) -> SqliteModelStore:
    settings = SqliteStoreSettings(kind="sqlite", path=str(tmp_path / "store" / "models.db"), **options)
    return SqliteModelStore(settings, BackendContext(root=tmp_path, cache_dir=tmp_path / "cache"))


def test_relative_path_is_relative_to_the_config_folder(tmp_path: Path) -> None:
    settings = SqliteStoreSettings(kind="sqlite", path="models/store.db")
    store = SqliteModelStore(settings, BackendContext(root=tmp_path / "project", cache_dir=tmp_path / "cache"))
    store.publish(write_model(tmp_path / "src", {"w.bin": b"abc"}), "m")
    assert (tmp_path / "project" / "models" / "store.db").is_file()


def test_reading_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    assert store.versions("m") == []
    assert store.aliases("m") == {}
    assert not store.path.exists()


def test_a_file_that_is_not_a_database_is_a_backend_error(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.path.parent.mkdir(parents=True)
    store.path.write_bytes(b"not a database, " * 100)
    with pytest.raises(BackendError, match=r"sqlite store .*models\.db"):
        store.versions("m")


def test_a_held_write_lock_is_a_clear_backend_error(tmp_path: Path) -> None:
    store = make_store(tmp_path, timeout=0.2)
    store.publish(write_model(tmp_path / "src", {"w.bin": b"abc"}), "m")
    with closing(sqlite3.connect(store.path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(BackendError, match=r"another process held the database for 0\.2s"):
            store.set_alias("m", "production", "1")
        other.execute("ROLLBACK")
    assert store.aliases("m") == {}


def test_unchanged_files_are_stored_once(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    src = write_model(tmp_path / "src", {"weights.bin": b"w" * 3_000_000, "config.json": b"{}"})
    store.publish(src, "m")
    (src / "config.json").write_bytes(b'{"v": 2}')
    store.publish(src, "m")
    with closing(sqlite3.connect(store.path)) as db:
        assert db.execute("SELECT count(*) FROM blobs").fetchone() == (3,)
        assert db.execute("SELECT count(*) FROM chunks").fetchone() == (5,)  # 3 for the weights, 1 per config


def test_registered_through_its_entry_point(shipway_load_plugins: Callable[..., PluginHost]) -> None:
    host = shipway_load_plugins("shipway-sqlite-store")  # the built-ins and this distribution, as shipway loads them
    assert host.kinds("model_store")["sqlite"] is SqliteModelStore
    assert set(host.kinds("model_store")) == {"local", "sqlite"}  # no other third-party plugin loaded
    info = host.plugins["sqlite_store"]
    assert (info.dist, info.builtin, info.contract_version) == ("shipway-sqlite-store", False, 2)
    assert info.contract_tests == "shipway_sqlite_store.contract_tests"
    assert sorted(k for ks in info.kinds.values() for k in ks) == ["sqlite"]


def test_unique_names_do_not_collide(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    names = [unique("m") for _ in range(3)]
    for n in names:
        store.publish(write_model(tmp_path / n, {"w.bin": n.encode()}), n)
    assert [store.versions(n)[0].files[0].size for n in names] == [len(n) for n in names]
