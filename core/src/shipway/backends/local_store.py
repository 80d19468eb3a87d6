"""The ``local`` model store: a folder of immutable, versioned models with aliases.

Layout under ``path``::

    <name>/versions/<version>/manifest.json   files, sizes, sha256, metadata, created
    <name>/versions/<version>/files/...        the model's files
    <name>/aliases.json                        {"production": "3", ...}

A version is written to a staging folder and renamed into place, so it is
visible only when complete and two publishes of one version cannot mix.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import Field

from shipway.backends.base import CHUNK, BackendSettings, ModelStore, model_sources
from shipway.domain import ModelFile, ModelVersion, utcnow, valid_model_name, valid_version
from shipway.errors import ModelError
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
            out.append(ModelVersion.from_manifest(json.loads(manifest.read_text())))
        return sorted(out, key=lambda v: (v.created, _key(v.version)))

    def aliases(self, name: str) -> dict[str, str]:
        path = self._model_dir(name) / "aliases.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def set_alias(self, name: str, alias: str, version: str) -> None:
        if not valid_version(alias):
            raise ModelError(f"invalid alias {alias!r}")
        if not (self._model_dir(name) / "versions" / version / "manifest.json").is_file():
            raise ModelError(f"model {name!r} has no version {version!r}")
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
        sources = model_sources(path)
        if version is not None and not valid_version(version):
            raise ModelError(f"invalid version {version!r}: letters, digits, '.', '_' and '-'")
        for alias in aliases:
            if not valid_version(alias):
                raise ModelError(f"invalid alias {alias!r}")
        model_dir = self._model_dir(name)
        staging = model_dir / f".staging-{uuid.uuid4().hex}"
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
                numbers = [int(v.version) for v in self.versions(name) if v.version.isdigit()]
                version = str(max(numbers, default=0) + 1)
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
            raise ModelError(f"{version.name}:{version.version}: file {file.path} is missing from {self.describe()}")
        shutil.copyfile(src, dest)

    @contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        model_dir = self._model_dir(name)
        model_dir.mkdir(parents=True, exist_ok=True)
        with open(model_dir / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _key(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)


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
SHIPWAY_CONTRACT_VERSION = 1


@hookimpl
def shipway_register_model_stores(register):  # type: ignore[no-untyped-def]
    register(LocalModelStore)
