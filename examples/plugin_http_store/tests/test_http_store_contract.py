"""The http store passes shipway's model store contract, using only the public test kit."""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from shipway.backends.base import BackendContext, ModelStore
from shipway.backends.local_store import LocalModelStore, LocalStoreSettings
from shipway.domain import ModelFile, ModelVersion
from shipway.errors import BackendError
from shipway.testing.contracts import ReadOnlyModelStoreContract
from shipway_http_store import HttpModelStore, HttpStoreSettings
from shipway_http_store.store import write_index


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A real HTTP server on 127.0.0.1 serving a folder."""
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/models"
    server.shutdown()
    server.server_close()


class TestHttpStore(ReadOnlyModelStoreContract):
    @pytest.fixture
    def store(self, served: tuple[Path, str], tmp_path: Path) -> HttpModelStore:
        root, url = served
        self.folder = root / "models"
        self.folder.mkdir()
        settings = HttpStoreSettings(kind="http", url=url)
        return HttpModelStore(settings, BackendContext(cache_dir=tmp_path / "cache"))

    def _publisher(self) -> LocalModelStore:
        return LocalModelStore(LocalStoreSettings(kind="local", path=str(self.folder)))

    def seed(self, store: ModelStore, path: Path, name: str, version=None, aliases=()) -> ModelVersion:
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


def test_unreachable_server_names_the_url(tmp_path: Path) -> None:
    store = HttpModelStore(
        HttpStoreSettings(kind="http", url="http://127.0.0.1:9/none"), BackendContext(cache_dir=tmp_path)
    )
    with pytest.raises(BackendError, match=re.escape("cannot reach http://127.0.0.1:9/none/m/index.json")):
        store.versions("m")


def test_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="must start with http"):
        HttpStoreSettings(kind="http", url="ftp://example.com")


def test_registered_through_its_entry_point() -> None:
    from shipway import plugins

    host = plugins.load(environ={})
    assert host.kinds("model_store")["http"] is HttpModelStore
    info = host.plugins["http_store"]
    assert (info.dist, info.builtin, info.contract_version) == ("shipway-http-store", False, 1)
