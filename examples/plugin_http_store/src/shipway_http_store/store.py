"""The ``http`` model store: versioned models read from a static HTTP(S) server.

Every request goes through shipway's retry policy (:mod:`shipway.retry`, the
``retries`` block of the section): timeouts on each try, transient failures
retried with backoff; a download cut short is fetched again from its start.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, SecretStr, field_validator

from shipway import retry
from shipway.backends.base import BackendSettings, ModelStore, parse_manifest, version_order
from shipway.domain import ModelFile, ModelVersion, valid_model_name
from shipway.errors import BackendError, ModelError, ReadOnlyStore

if TYPE_CHECKING:  # requests loads when the store is built for a command, not with the plugin (docs/plugins.md)
    import requests


class HttpStoreSettings(BackendSettings):
    """``model_store: {kind: http, url: ..., token: ${VAR}}``."""

    kind: str = "http"
    url: str = Field(description="Base URL of the store, http:// or https://")
    token: SecretStr | None = Field(None, description="Bearer token, from the environment")
    timeout: float | None = Field(
        None, gt=0, description="Seconds to wait for an answer; default: retries.read_timeout"
    )

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
        import requests

        super().__init__(settings, context)
        self.session = requests.Session()
        if self.settings.token is not None:
            self.session.headers["Authorization"] = f"Bearer {self.settings.token.get_secret_value()}"

    def describe(self) -> str:
        return f"http store {self.settings.url}"

    # -- reading -----------------------------------------------------------------
    def _policy(self) -> retry.RetrySettings:
        s = self.settings
        return s.retries if s.timeout is None else s.retries.model_copy(update={"read_timeout": s.timeout})

    def _get(self, path: str, deadline: retry.Deadline | None = None, stream: bool = False) -> requests.Response | None:
        """GET ``path``: None for 404. Retried, or (with ``deadline``) one try of an operation retried whole."""
        import requests

        url = f"{self.settings.url}/{path}"
        try:
            if deadline is None:
                resp = retry.send(self.session, "GET", url, self._policy(), self.describe(), stream=stream)
            else:
                resp = retry.send_once(self.session, "GET", url, deadline, stream=stream)
        except (retry.Transient, retry.GaveUp):
            raise
        except requests.RequestException as exc:
            if deadline is not None and retry.requests_transient("GET")(exc):
                raise
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
        path = f"{version.name}/versions/{version.version}/files/{file.path}"

        def once(deadline: retry.Deadline) -> None:
            resp = self._get(path, deadline, stream=True)
            if resp is None:
                raise ModelError(
                    f"{version.name}:{version.version}: file {file.path} is missing from {self.describe()}"
                )
            with resp, dest.open("wb") as out:  # a try cut short starts the file over
                for chunk in resp.iter_content(chunk_size=1 << 20):
                    out.write(chunk)

        import requests

        try:
            retry.call(
                once,
                self._policy(),
                f"{self.describe()}: GET {self.settings.url}/{path}",
                transient=retry.requests_transient("GET"),
                describe=retry.describe_requests,
            )
        except requests.RequestException as exc:
            raise BackendError(f"cannot reach {self.settings.url}/{path}: {type(exc).__name__}") from None

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
