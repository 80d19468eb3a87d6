"""The read-only store contract for the ``http`` kind, with the public kit only.

Shipped in the package (``SHIPWAY_CONTRACT_TESTS``) so ``shipway plugins --check http``
can run it against the installed plugin; ``tests/`` runs it too. The models are
published with shipway's ``local`` store into a folder a real HTTP server on
127.0.0.1 serves.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from shipway.backends.base import BackendContext, ModelStore
from shipway.backends.local_store import LocalModelStore, LocalStoreSettings
from shipway.domain import ModelFile, ModelVersion
from shipway.localhttp import LocalServer
from shipway.testing.contracts import ReadOnlyModelStoreContract
from shipway_http_store.store import HttpModelStore, HttpStoreSettings, write_index


class QuietHandler(SimpleHTTPRequestHandler):
    """A static file handler that does not log every request."""

    def log_message(self, format: str, *args: object) -> None:
        pass


class TestHttpStore(ReadOnlyModelStoreContract):
    """The http store reading what the local store published, through a real HTTP server."""

    folder: Path

    @pytest.fixture
    def served(self, tmp_path: Path) -> Iterator[tuple[Path, str]]:
        """A real HTTP server on 127.0.0.1 serving a folder."""
        root = tmp_path / "www"
        root.mkdir()
        server = LocalServer(functools.partial(QuietHandler, directory=str(root)))
        yield root, f"{server.url}/models"
        server.stop()

    @pytest.fixture
    def store(self, served: tuple[Path, str], tmp_path: Path) -> HttpModelStore:
        root, url = served
        self.folder = root / "models"
        self.folder.mkdir()
        settings = HttpStoreSettings(kind="http", url=url)
        return HttpModelStore(settings, BackendContext(root=tmp_path, cache_dir=tmp_path / "cache"))

    def _publisher(self) -> LocalModelStore:
        return LocalModelStore(LocalStoreSettings(kind="local", path=str(self.folder)))

    def seed(
        self, store: ModelStore, path: Path, name: str, version: str | None = None, aliases: tuple[str, ...] = ()
    ) -> ModelVersion:
        published = self._publisher().publish(path, name, version=version, aliases=aliases, metadata={"by": "seed"})
        write_index(self.folder)
        return published

    def seed_alias(self, store: ModelStore, name: str, alias: str, version: str) -> None:
        self._publisher().set_alias(name, alias, version)
        write_index(self.folder)

    def corrupt(self, store: ModelStore, version: ModelVersion, file: ModelFile) -> None:
        path = self.folder / version.name / "versions" / version.version / "files" / file.path
        data = bytearray(path.read_bytes())
        data[0] ^= 0xFF
        path.write_bytes(bytes(data))

    def write_manifest(self, store: ModelStore, name: str, version: str, manifest: dict[str, Any]) -> None:
        path = self.folder / name / "versions" / version / "manifest.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest))
        write_index(self.folder)
