"""The ``http`` model store: versioned models read from a static HTTP(S) server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests
from pydantic import Field, SecretStr, field_validator

from shipway.backends.base import BackendSettings, ModelStore, parse_manifest, version_order
from shipway.domain import ModelFile, ModelVersion, valid_model_name
from shipway.errors import BackendError, ModelError, ReadOnlyStore


class HttpStoreSettings(BackendSettings):
    """``model_store: {kind: http, url: ..., token: ${VAR}}``."""

    kind: str = "http"
    url: str = Field(description="Base URL of the store, http:// or https://")
    token: SecretStr | None = Field(None, description="Bearer token, from the environment")
    timeout: float = Field(30, gt=0, description="Seconds per request")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class HttpModelStore(ModelStore):
    """Reads models published elsewhere; publish and set_alias are refused."""

    kind = "http"
    Settings = HttpStoreSettings
    settings: HttpStoreSettings
    read_only = True

    def __init__(self, settings: BackendSettings, context: Any = None) -> None:
        super().__init__(settings, context)
        self.session = requests.Session()
        if self.settings.token is not None:
            self.session.headers["Authorization"] = f"Bearer {self.settings.token.get_secret_value()}"

    def describe(self) -> str:
        return f"http store {self.settings.url}"

    # -- reading -----------------------------------------------------------------
    def _get(self, path: str, stream: bool = False) -> requests.Response | None:
        url = f"{self.settings.url}/{path}"
        try:
            resp = self.session.get(url, timeout=self.settings.timeout, stream=stream)
        except requests.RequestException as exc:
            raise BackendError(f"cannot reach {url}: {type(exc).__name__}") from None
        if resp.status_code == 404:
            return None
        if resp.status_code in (401, 403):
            raise BackendError(f"{url}: access denied ({resp.status_code}); check model_store.token")
        if resp.status_code != 200:
            raise BackendError(f"{url} answered {resp.status_code}")
        return resp

    def _index(self, name: str) -> dict[str, Any]:
        if not valid_model_name(name):
            raise ModelError(f"invalid model name {name!r}")
        resp = self._get(f"{name}/index.json")
        if resp is None:
            return {"versions": [], "aliases": {}}
        try:
            return dict(resp.json())
        except ValueError:
            raise ModelError(f"{self.settings.url}/{name}/index.json is not JSON") from None

    def versions(self, name: str) -> list[ModelVersion]:
        out = []
        for version in self._index(name).get("versions", []):
            resp = self._get(f"{name}/versions/{version}/manifest.json")
            if resp is None:
                continue  # listed but not (yet) uploaded: not a complete version
            where = f"{self.settings.url}/{name}/versions/{version}/manifest.json"
            try:
                data = resp.json()
            except ValueError:
                raise ModelError(f"{where} is not JSON") from None
            found = parse_manifest(data, where)  # validated, and its recorded digest checked
            if (found.name, found.version) != (name, version):
                raise ModelError(f"{where}: the manifest says {found.name}:{found.version}")
            out.append(found)
        return sorted(out, key=version_order)

    def aliases(self, name: str) -> dict[str, str]:
        return dict(self._index(name).get("aliases", {}))

    def _download(self, version: ModelVersion, file: ModelFile, dest: Path) -> None:
        resp = self._get(f"{version.name}/versions/{version.version}/files/{file.path}", stream=True)
        if resp is None:
            raise ModelError(f"{version.name}:{version.version}: file {file.path} is missing from {self.describe()}")
        with dest.open("wb") as out:
            for chunk in resp.iter_content(chunk_size=1 << 20):
                out.write(chunk)

    # -- writing is refused ----------------------------------------------------------
    def publish(
        self,
        path: Path,
        name: str,
        version: str | None = None,
        aliases: tuple[str, ...] = (),
        metadata: dict[str, Any] | None = None,
    ) -> ModelVersion:
        raise ReadOnlyStore(
            f"{self.describe()} is a read-only store: publish with a writable store "
            "(e.g. kind: local), run `python -m shipway_http_store.index DIR`, and upload the folder"
        )

    def set_alias(self, name: str, alias: str, version: str) -> None:
        raise ReadOnlyStore(f"{self.describe()} is a read-only store: change aliases where the models are published")


def write_index(store_dir: Path) -> list[Path]:
    """Write ``<name>/index.json`` for every model in a local-store folder. Returns the files written."""
    written = []
    for model_dir in sorted(p for p in store_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        versions_dir = model_dir / "versions"
        versions = sorted(
            (v.name for v in versions_dir.iterdir() if (v / "manifest.json").is_file())
            if versions_dir.is_dir()
            else [],
            key=lambda v: (0, int(v)) if v.isdigit() else (1, v),
        )
        aliases_file = model_dir / "aliases.json"
        aliases = json.loads(aliases_file.read_text()) if aliases_file.is_file() else {}
        index = model_dir / "index.json"
        index.write_text(json.dumps({"versions": versions, "aliases": aliases}, indent=2) + "\n")
        written.append(index)
    return written
