"""Writable model stores on object storage with conditional writes (S3, Azure Blob Storage, ...).

Layout under a store's prefix::

    <name>/blobs/sha256/<hex>           file contents, content-addressed: a file shared by versions is stored once
    <name>/versions/<v>/manifest.json   one per complete version, created only if absent, written last
    <name>/aliases.json                 alias -> version, replaced only if unchanged since it was read

A subclass provides five object primitives (:class:`ObjectModelStore`); this
module numbers versions, publishes, lists and moves aliases the same way for
every such store: a version becomes visible only when its manifest is written
(after every blob), two publishers of one version cannot both win (the
manifest write is create-only), and concurrent alias moves never lose one
(each retries on a changed ETag).
"""

from __future__ import annotations

import json
import random
import time
from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shipway.backends.base import (
    ModelStore,
    check_alias,
    check_publish,
    model_sources,
    next_version,
    parse_manifest,
    sha256_file,
    version_order,
)
from shipway.domain import ModelFile, ModelVersion, utcnow, valid_model_name
from shipway.errors import ModelError

CONDITIONAL_TRIES = 20
"""How often a conditional write is tried again when another writer got there first."""


def _after_losing(attempt: int) -> None:
    """A short random pause before a conditional write is tried again (0-25 ms, doubling up to 0.8 s): writers
    that lost together do not all come back at once, which on a busy machine let one lose every try."""
    if attempt:
        time.sleep(random.uniform(0, min(0.025 * 2 ** (attempt - 1), 0.8)))


class ObjectModelStore(ModelStore):
    """A writable :class:`ModelStore` on an object store whose writes can be conditional."""

    # -- the primitives a subclass provides ------------------------------------------
    @abstractmethod
    def _key(self, *parts: str) -> str:
        """The object name of ``parts`` (joined by ``/``) under the store's prefix."""

    @abstractmethod
    def _manifest_keys(self, name: str) -> list[str]:
        """Names of the objects under ``<name>/versions/`` that end in ``/manifest.json`` (empty when none)."""

    @abstractmethod
    def _read_json(self, key: str) -> tuple[Any, str] | None:
        """(parsed JSON, ETag) of the object ``key``, or None when it does not exist."""

    @abstractmethod
    def _write_json(self, key: str, body: bytes, etag: str | None) -> bool:
        """Write ``body`` at ``key`` only if no object is there (``etag`` None) or the object still has ``etag``.

        Returns False, writing nothing, when that condition does not hold.
        """

    @abstractmethod
    def _upload_blob(self, name: str, src: Path, f: ModelFile, progress: Callable[[int], None]) -> None:
        """Store ``src`` at the content address of ``f`` unless a whole copy is there; ``progress(n)`` per byte sent.

        A shorter object at that address (an interrupted upload) is replaced.
        """

    # -- shared logic -----------------------------------------------------------------
    def _model(self, name: str) -> str:
        if not valid_model_name(name):
            raise ModelError(f"invalid model name {name[:80]!r}: letters, digits, '.', '_' and '-'")
        return name

    def _exists(self, name: str, version: str) -> bool:
        return self._read_json(self._key(name, "versions", version, "manifest.json")) is not None

    def versions(self, name: str) -> list[ModelVersion]:
        found = []
        for key in self._manifest_keys(self._model(name)):
            read = self._read_json(key)
            if read is None:
                continue  # deleted since it was listed
            where = f"{self.describe()}: {key}"
            version = parse_manifest(read[0], where)
            if self._key(version.name, "versions", version.version, "manifest.json") != key:
                raise ModelError(f"{where}: the manifest says {version.name}:{version.version}")
            found.append(version)
        return sorted(found, key=version_order)

    def aliases(self, name: str) -> dict[str, str]:
        read = self._read_json(self._key(self._model(name), "aliases.json"))
        return dict(read[0]) if read else {}

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
        files = tuple(ModelFile(path=rel, size=p.stat().st_size, sha256=sha256_file(p)) for rel, p in sources)
        if version is not None and self._exists(name, version):
            raise ModelError(f"model {name!r} version {version!r} already exists; versions are immutable")
        with self.context.reporter.bytes(f"publish {name}", sum(f.size for f in files)) as bar:
            for (_, src), f in zip(sources, files, strict=True):
                self._upload_blob(name, src, f, bar.advance)
        published = self._commit(name, version, files, metadata or {})
        for alias in aliases:
            self.set_alias(name, alias, published.version)
        return published

    def _commit(
        self, name: str, version: str | None, files: tuple[ModelFile, ...], metadata: dict[str, Any]
    ) -> ModelVersion:
        """Write the manifest, create-only: the version is claimed by exactly one writer."""
        for attempt in range(CONDITIONAL_TRIES):
            _after_losing(attempt)
            candidate = version or next_version(self.versions(name))
            made = ModelVersion(name=name, version=candidate, created=utcnow(), files=files, metadata=metadata)
            body = json.dumps(made.manifest(), indent=2, sort_keys=True).encode()
            key = self._key(name, "versions", candidate, "manifest.json")
            if self._write_json(key, body, None):
                return made
            stored = self._read_json(key)
            if stored is not None and stored[0] == made.manifest():
                return made  # our own write: the SDK retried it after the store had applied it
            if version is not None:
                raise ModelError(f"model {name!r} version {version!r} already exists; versions are immutable")
        raise ModelError(f"model {name!r}: could not claim a version number (too many concurrent publishes)")

    def set_alias(self, name: str, alias: str, version: str) -> None:
        check_alias(alias)
        if version not in {v.version for v in self.versions(name)}:
            raise ModelError(f"model {name!r} has no version {version[:80]!r}")
        key = self._key(name, "aliases.json")
        for attempt in range(CONDITIONAL_TRIES):
            _after_losing(attempt)
            read = self._read_json(key)
            table, etag = (dict(read[0]), read[1]) if read else ({}, None)
            table[alias] = version
            if self._write_json(key, json.dumps(table, indent=2, sort_keys=True).encode(), etag):
                return
        raise ModelError(f"model {name!r}: aliases kept changing under us; try again")
