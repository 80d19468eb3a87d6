"""The writable store contract for the built-in ``local`` store (``shipway plugins --check local`` runs it).

Also an example of everything a writable store's test class provides: the
``store`` fixture and the ``corrupt``, ``write_manifest`` and ``break_publish`` hooks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shipway.backends import local_store
from shipway.backends.base import BackendContext, ModelStore
from shipway.backends.local_store import LocalModelStore, LocalStoreSettings
from shipway.domain import ModelFile, ModelVersion
from shipway.testing.contracts import WritableModelStoreContract


def _local(store: ModelStore) -> LocalModelStore:
    assert isinstance(store, LocalModelStore)
    return store


class TestLocalStore(WritableModelStoreContract):
    """The local store in a fresh folder, with its own cache."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> LocalModelStore:
        settings = LocalStoreSettings(kind="local", path=str(tmp_path / "store"))
        return LocalModelStore(settings, BackendContext(root=tmp_path, cache_dir=tmp_path / "cache"))

    def corrupt(self, store: ModelStore, version: ModelVersion, file: ModelFile) -> None:
        path = _local(store).root / version.name / "versions" / version.version / "files" / file.path
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    def write_manifest(self, store: ModelStore, name: str, version: str, manifest: dict[str, Any]) -> None:
        path = _local(store).root / name / "versions" / version / "manifest.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest))

    def break_publish(self, store: ModelStore, monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> None:
        copy = local_store._copy_hashing

        def copy_then_act(src: Path, dest: Path) -> str:
            digest = copy(src, dest)
            action()  # one file is in the staging folder
            return digest

        monkeypatch.setattr(local_store, "_copy_hashing", copy_then_act)
