"""The local model store: the shared store contract plus local specifics."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from shipway.backends.base import BackendContext
from shipway.backends.local_store import LocalModelStore, LocalStoreSettings
from shipway.domain import ModelFile, ModelRef, ModelVersion
from shipway.testing.contracts import WritableModelStoreContract, unique, write_model


def make_store(tmp_path: Path) -> LocalModelStore:
    settings = LocalStoreSettings(kind="local", path=str(tmp_path / "store"))
    return LocalModelStore(settings, BackendContext(cache_dir=tmp_path / "cache"))


class TestLocalStore(WritableModelStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> LocalModelStore:
        return make_store(tmp_path)

    def corrupt(self, store: LocalModelStore, version: ModelVersion, file: ModelFile) -> None:  # type: ignore[override]
        path = store.root / version.name / "versions" / version.version / "files" / file.path
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    def write_manifest(self, store: LocalModelStore, name: str, version: str, manifest: dict[str, Any]) -> None:  # type: ignore[override]
        path = store.root / name / "versions" / version / "manifest.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest))


def test_concurrent_publishes_get_distinct_complete_versions(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    src = write_model(tmp_path / "src", {"w.bin": b"x" * 100_000})
    name = unique("m")
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(store.publish(src, name).version)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=int) == ["1", "2", "3", "4", "5", "6"]
    assert [v.version for v in store.versions(name)] == ["1", "2", "3", "4", "5", "6"]
    assert not list((store.root / name).glob(".staging-*"))


def test_a_half_written_version_is_invisible(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    src = write_model(tmp_path / "src", {"w.bin": b"abc"})
    name = unique("m")
    store.publish(src, name)
    staging = store.root / name / ".staging-crashed" / "files"
    staging.mkdir(parents=True)
    (staging / "w.bin").write_bytes(b"partial")
    (store.root / name / "versions" / "2").mkdir()  # no manifest: an interrupted copy by hand
    assert [v.version for v in store.versions(name)] == ["1"]
    assert store.resolve(ModelRef(name=name)).version == "1"


def test_fetched_files_are_world_readable(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    version = store.publish(write_model(tmp_path / "src", {"w.bin": b"abc"}), unique("m"))
    out = store.fetch(version, tmp_path / "out")
    assert (out / "w.bin").stat().st_mode & 0o444 == 0o444
