"""The ``local`` model store: a folder of immutable, versioned models with aliases.

Layout under ``path``::

    <name>/versions/<version>/manifest.json   files, sizes, sha256, metadata, created
    <name>/versions/<version>/files/...        the model's files
    <name>/aliases.json                        {"production": "3", ...}

A version is written to a staging folder and renamed into place, so it is
visible only when complete and two publishes of one version cannot mix. A
staging folder left by a killed publish is removed by the next publish of that
model once its process is gone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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
    version_order,
)
from shipway.backends.hoststate import file_lock
from shipway.domain import ModelFile, ModelVersion, utcnow, valid_model_name, valid_version
from shipway.errors import REPUBLISH, ModelError
from shipway.hookspecs import hookimpl


class LocalStoreSettings(BackendSettings):
    """``model_store: {kind: local, path: ...}``."""

    kind: str = "local"
    path: str = Field(".shipway/models", description="Store folder, relative to the config file")


class LocalModelStore(ModelStore):
    """Versioned models in a local (or network-mounted) folder."""

    kind = "local"
    Settings = LocalStoreSettings
    settings: LocalStoreSettings

    @property
    def root(self) -> Path:
        path = Path(self.settings.path).expanduser()
        return path if path.is_absolute() else (self.context.root / path)

    def describe(self) -> str:
        return f"local store {self.root}"

    def _model_dir(self, name: str) -> Path:
        if not valid_model_name(name):
            raise ModelError(f"invalid model name {name!r}: letters, digits, '.', '_' and '-'")
        return self.root / name

    def versions(self, name: str) -> list[ModelVersion]:
        vdir = self._model_dir(name) / "versions"
        if not vdir.is_dir():
            return []
        out = []
        for entry in vdir.iterdir():
            manifest = entry / "manifest.json"
            if entry.name.startswith(".") or not manifest.is_file():
                continue
            where = f"{self.describe()}: {name}/versions/{entry.name}/manifest.json"
            try:
                data = json.loads(manifest.read_text())
            except (OSError, ValueError) as exc:
                raise ModelError(f"{where}: unreadable manifest: {exc} ({REPUBLISH})") from None
            found = parse_manifest(data, where)
            if (found.name, found.version) != (name, entry.name):
                raise ModelError(f"{where}: the manifest says {found.name}:{found.version}, not {name}:{entry.name}")
            out.append(found)
        return sorted(out, key=version_order)

    def aliases(self, name: str) -> dict[str, str]:
        path = self._model_dir(name) / "aliases.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def set_alias(self, name: str, alias: str, version: str) -> None:
        check_alias(alias)
        if not valid_version(version) or not (self._model_dir(name) / "versions" / version / "manifest.json").is_file():
            raise ModelError(f"model {name!r} has no version {version[:80]!r}")
        with self._lock(name):
            table = self.aliases(name)
            table[alias] = version
            _write_json(self._model_dir(name) / "aliases.json", table)

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
        model_dir = self._model_dir(name)
        model_dir.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_staging(model_dir)
        staging = model_dir / f"{_STAGING}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"
        (staging / "files").mkdir(parents=True)
        try:
            files = []
            for rel, src in sources:
                dest = staging / "files" / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                files.append(ModelFile(path=rel, size=src.stat().st_size, sha256=_copy_hashing(src, dest)))
            published = self._commit(staging, model_dir, name, version, tuple(files), metadata or {})
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        for alias in aliases:
            self.set_alias(name, alias, published.version)
        return published

    def _commit(
        self,
        staging: Path,
        model_dir: Path,
        name: str,
        version: str | None,
        files: tuple[ModelFile, ...],
        metadata: dict[str, Any],
    ) -> ModelVersion:
        (model_dir / "versions").mkdir(exist_ok=True)
        with self._lock(name):
            if version is None:
                version = next_version(self.versions(name))
            target = model_dir / "versions" / version
            if target.exists():
                raise ModelError(f"model {name!r} version {version!r} already exists; versions are immutable")
            mv = ModelVersion(name=name, version=version, created=utcnow(), files=files, metadata=metadata)
            _write_json(staging / "manifest.json", mv.manifest())
            os.rename(staging, target)
        return mv

    def _download(self, version: ModelVersion, file: ModelFile, dest: Path) -> None:
        src = self._model_dir(version.name) / "versions" / version.version / "files" / file.path
        if not src.is_file():
            raise ModelError(
                f"{version.name}:{version.version}: file {file.path} is missing from {self.describe()} ({REPUBLISH})"
            )
        shutil.copyfile(src, dest)

    @contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        model_dir = self._model_dir(name)
        model_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(model_dir / ".lock"):
            yield


_STAGING = ".staging-"


def _remove_abandoned_staging(model_dir: Path) -> None:
    """Delete staging folders whose publishing process (on this host) no longer runs."""
    host = socket.gethostname()
    for entry in model_dir.glob(f"{_STAGING}*"):
        owner_host, _, rest = entry.name[len(_STAGING) :].rpartition("-")[0].rpartition("-")
        if owner_host != host or not rest.isdigit():
            continue  # another host's publish (a shared folder), or an old name: leave it
        if not _alive(int(rest)):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _copy_hashing(src: Path, dest: Path) -> str:
    digest = hashlib.sha256()
    with src.open("rb") as fin, dest.open("wb") as fout:
        while chunk := fin.read(CHUNK):
            digest.update(chunk)
            fout.write(chunk)
    return digest.hexdigest()


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


# The shipway.testing contract version this backend passes (shown by `shipway plugins`).
SHIPWAY_CONTRACT_VERSION = 2
# The module holding this backend's contract tests (`shipway plugins --check local` runs it).
SHIPWAY_CONTRACT_TESTS = "shipway.testing.local_contract"


@hookimpl
def shipway_register_model_stores(register):  # type: ignore[no-untyped-def]
    register(LocalModelStore)
