"""Contract test classes: the behaviour every backend of a kind must have.

Subclass one in a ``Test…`` class and provide the fixtures it names; every
``test_…`` method then runs against your backend::

    class TestMyStore(WritableModelStoreContract):
        @pytest.fixture
        def store(self, tmp_path):
            return MyStore(MyStore.Settings(kind="mine", ...), BackendContext(cache_dir=tmp_path / "cache"))

        def corrupt(self, store, version, file):
            ...  # change the stored bytes of `file` behind the store's back

The contracts are the specification: a backend that needs a special case
means the contract or the backend is wrong.
"""

from __future__ import annotations

import copy
import hashlib
import json
import multiprocessing
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from shipway import labels as L
from shipway.backends.base import BackendContext, ModelStore, Orchestrator, Registry
from shipway.backends.blobcache import BlobCache, sha256_file
from shipway.domain import ImageRef, ModelFile, ModelRef, ModelVersion, Release
from shipway.errors import (
    AuthError,
    BackendError,
    ExitCode,
    IntegrityError,
    ModelError,
    NotFound,
    ReadOnlyStore,
    TagExists,
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def write_model(folder: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


class InjectedFailure(Exception):
    """What a contract's ``break_publish`` action raises: a publish failing part-way (a crash, a lost link)."""


METADATA: dict[str, Any] = {
    "accuracy": 0.981,
    "epochs": 12,
    "tags": ["baseline", "fp16"],
    "trained": {"on": "2024-05-01", "lr": 0.001, "steps": [100, 200], "resumed": None, "final": True},
    "note": "modèle ✓",
}
"""Metadata the writable contract publishes; it must come back exactly (nested values too)."""


def stored_bytes(store: ModelStore, version: ModelVersion, file: ModelFile, folder: Path) -> bytes:
    """The bytes ``store`` holds for ``file``, read with its ``_download`` (no cache in between)."""
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{uuid.uuid4().hex}.bin"
    dest.touch()  # as the cache does: _download always gets an existing file
    store._download(version, file, dest)
    return dest.read_bytes()


def in_processes(count: int, target: Callable[[int], Any], folder: Path, timeout: float = 300) -> list[Any]:
    """Run ``target(i)`` for i in range(count) in forked processes started together; return their results.

    Results go through JSON files in ``folder``; a process that raised fails the
    test with its traceback.
    """
    ctx = multiprocessing.get_context("fork")
    folder.mkdir(parents=True, exist_ok=True)
    start = ctx.Barrier(count)

    def run(i: int) -> None:
        try:
            start.wait(timeout=60)
            outcome = {"result": target(i)}
        except BaseException:  # noqa: BLE001 - the parent reports it, with its traceback
            outcome = {"error": traceback.format_exc()}
        (folder / f"{i}.json").write_text(json.dumps(outcome))

    workers = [ctx.Process(target=run, args=(i,)) for i in range(count)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=timeout)
    outcomes = []
    for i, w in enumerate(workers):
        if w.is_alive():
            w.kill()
            pytest.fail(f"process {i} did not finish in {timeout}s")
        path = folder / f"{i}.json"
        if not path.is_file():
            pytest.fail(f"process {i} ended with exit code {w.exitcode} and no result")
        outcomes.append(json.loads(path.read_text()))
    errors = [f"process {i}:\n{o['error']}" for i, o in enumerate(outcomes) if "error" in o]
    if errors:
        pytest.fail("\n".join(errors))
    return [o["result"] for o in outcomes]


def once(action: Callable[[], None]) -> Callable[[], None]:
    """``action`` the first time it is called, nothing after that."""
    calls: list[None] = []

    def first() -> None:
        if not calls:
            calls.append(None)
            action()

    return first


class ModelStoreContract:
    """What every model store must do: resolve, fetch with integrity and cache, aliases.

    Fixtures to provide: ``store`` (a :class:`ModelStore`). Methods to provide:

    - ``corrupt(store, version, file)``: change a stored file's bytes behind the store's back;
    - ``write_manifest(store, name, version, manifest)``: store a raw manifest (a dict, written as the
      store writes manifests) for ``name``/``version`` behind the store's back, as anyone with write
      access to the storage could: the hostile-manifest tests use it;
    - ``seed(store, path, name, version=None, aliases=())`` and
      ``seed_alias(store, name, alias, version)`` only for read-only stores
      (the defaults publish through the store itself).

    Writable stores subclass :class:`WritableModelStoreContract`, read-only
    ones :class:`ReadOnlyModelStoreContract`; both include these tests.
    """

    def corrupt(self, store: ModelStore, version: ModelVersion, file: ModelFile) -> None:
        raise NotImplementedError("a store contract must say how to corrupt a stored file")

    def write_manifest(self, store: ModelStore, name: str, version: str, manifest: dict[str, Any]) -> None:
        raise NotImplementedError("a store contract must say how to write a raw manifest into the store")

    def seed(
        self, store: ModelStore, path: Path, name: str, version: str | None = None, aliases: tuple[str, ...] = ()
    ) -> ModelVersion:
        """Put a version into the store (read-only stores override this)."""
        return store.publish(path, name, version=version, aliases=aliases, metadata={"accuracy": "0.98"})

    def seed_alias(self, store: ModelStore, name: str, alias: str, version: str) -> None:
        store.set_alias(name, alias, version)

    @pytest.fixture
    def model_files(self, tmp_path: Path) -> Path:
        return write_model(
            tmp_path / "src",
            {"weights.bin": bytes(range(256)) * 4096, "model.json": b'{"format": "test"}', "sub/vocab.txt": b"a\nb\n"},
        )

    def test_resolve_latest_and_fetch_verified_files(
        self, store: ModelStore, model_files: Path, tmp_path: Path
    ) -> None:
        name = unique("m")
        seeded = self.seed(store, model_files, name)
        assert {f.path for f in seeded.files} == {"weights.bin", "model.json", "sub/vocab.txt"}
        resolved = store.resolve(ModelRef(name=name))
        assert resolved == seeded
        assert resolved.digest == seeded.digest
        assert resolved.metadata == seeded.metadata
        dest = store.fetch(resolved, tmp_path / "out")
        for f in resolved.files:
            data = (dest / f.path).read_bytes()
            assert data == (model_files / f.path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == f.sha256
            assert len(data) == f.size

    def test_latest_is_the_newest_version(self, store: ModelStore, model_files: Path) -> None:
        name = unique("m")
        first = self.seed(store, model_files, name, version="1")
        (model_files / "model.json").write_bytes(b'{"format": "test", "v": 2}')
        second = self.seed(store, model_files, name, version="2")
        assert [v.version for v in store.versions(name)] == ["1", "2"]
        assert first.digest != second.digest
        assert store.resolve(ModelRef(name=name)).version == "2"
        assert store.resolve(ModelRef(name=name, select="1")) == first

    def test_aliases_resolve(self, store: ModelStore, model_files: Path) -> None:
        name = unique("m")
        self.seed(store, model_files, name, version="1", aliases=("production",))
        (model_files / "model.json").write_bytes(b"{}")
        self.seed(store, model_files, name, version="2", aliases=("staging",))
        assert store.aliases(name) == {"production": "1", "staging": "2"}
        assert store.resolve(ModelRef(name=name, select="@production")).version == "1"
        self.seed_alias(store, name, "production", "2")
        assert store.resolve(ModelRef(name=name, select="@production")).version == "2"

    def test_unknown_model_version_and_alias_are_clear_errors(self, store: ModelStore, model_files: Path) -> None:
        name = unique("m")
        with pytest.raises(ModelError, match="no versions"):
            store.resolve(ModelRef(name=name))
        self.seed(store, model_files, name)
        with pytest.raises(ModelError, match="no version '7'"):
            store.resolve(ModelRef(name=name, select="7"))
        with pytest.raises(ModelError, match="no alias 'gold'"):
            store.resolve(ModelRef(name=name, select="@gold"))

    def test_corrupted_file_is_detected_at_fetch(self, store: ModelStore, model_files: Path, tmp_path: Path) -> None:
        name = unique("m")
        version = self.seed(store, model_files, name)
        target = next(f for f in version.files if f.path == "weights.bin")
        self.corrupt(store, version, target)
        with pytest.raises(IntegrityError, match=r"weights\.bin"):
            store.fetch(store.resolve(ModelRef(name=name)), tmp_path / "out")
        assert not (tmp_path / "out" / "weights.bin").exists()

    def test_fetch_reuses_cached_files(
        self, store: ModelStore, model_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        version = self.seed(store, model_files, unique("m"))
        store.fetch(version, tmp_path / "a")
        calls: list[str] = []
        original = store._download

        def counting(v: ModelVersion, f: ModelFile, dest: Path) -> None:
            calls.append(f.path)
            original(v, f, dest)

        monkeypatch.setattr(store, "_download", counting)
        out = store.fetch(version, tmp_path / "b")
        assert calls == []
        assert (out / "weights.bin").read_bytes() == (model_files / "weights.bin").read_bytes()

    def test_versions_of_an_unknown_model_is_empty(self, store: ModelStore) -> None:
        assert store.versions(unique("none")) == []
        assert store.aliases(unique("none")) == {}

    # -- hostile manifests: what a writer of the storage can attempt ----------------------

    def _hostile(self, store: ModelStore, model_files: Path, change: Any, keep_digest: bool = False) -> str:
        """Seed version 1 of a new model, then write version 2 as a changed copy of its manifest."""
        name = unique("m")
        good = self.seed(store, model_files, name, version="1")
        manifest = good.manifest()
        manifest["version"] = "2"
        if not keep_digest:
            del manifest["digest"]  # the checks below must hold even for a manifest that records no digest
        change(manifest)
        self.write_manifest(store, name, "2", manifest)
        return name

    @pytest.mark.parametrize(
        "bad_path",
        ["../outside.bin", "../../outside.bin", "/tmp/outside.bin", "a/../../outside.bin", "a//b", "./a", "a\\b", ""],
    )
    def test_manifest_with_an_unsafe_path_is_refused(
        self, store: ModelStore, model_files: Path, tmp_path: Path, bad_path: str
    ) -> None:
        def change(m: dict[str, Any]) -> None:
            m["files"][0]["path"] = bad_path

        name = self._hostile(store, model_files, change)
        before = sorted(p.name for p in tmp_path.iterdir())
        with pytest.raises(IntegrityError, match="invalid manifest"):
            store.fetch(store.resolve(ModelRef(name=name, select="2")), tmp_path / "out" / "model")
        assert sorted(p.name for p in tmp_path.iterdir()) == before
        assert not (tmp_path / "out").exists()

    @pytest.mark.parametrize(
        "bad_sha", ["../../../etc/passwd", "A" * 64, "0" * 63, "0" * 65, "sha256:" + "0" * 64, "g" * 64]
    )
    def test_manifest_with_a_malformed_sha256_is_refused(
        self, store: ModelStore, model_files: Path, bad_sha: str
    ) -> None:
        def change(m: dict[str, Any]) -> None:
            m["files"][0]["sha256"] = bad_sha

        name = self._hostile(store, model_files, change)
        with pytest.raises(IntegrityError, match="sha256") as err:
            store.resolve(ModelRef(name=name, select="2"))
        assert name in str(err.value)  # the error says where the bad manifest is

    def test_manifest_naming_another_version_or_model_is_refused(self, store: ModelStore, model_files: Path) -> None:
        def change(m: dict[str, Any]) -> None:
            m["version"] = "../2"

        name = self._hostile(store, model_files, change)
        with pytest.raises(ModelError):
            store.resolve(ModelRef(name=name))

    @pytest.mark.parametrize("field", ["version", "name"])
    def test_manifest_stored_under_another_version_is_refused(
        self, store: ModelStore, model_files: Path, field: str
    ) -> None:
        """A valid manifest of version 1 (or of another model) copied to version 2's place."""

        def change(m: dict[str, Any]) -> None:
            m[field] = "1" if field == "version" else unique("other")

        name = self._hostile(store, model_files, change)
        with pytest.raises(ModelError, match="manifest says"):
            store.versions(name)

    def test_an_invalid_model_name_is_refused_when_reading(self, store: ModelStore) -> None:
        for bad in ("../escape", "a/b", ".hidden"):
            with pytest.raises(ModelError, match="invalid model name"):
                store.versions(bad)
            with pytest.raises(ModelError, match="invalid model name"):
                store.aliases(bad)

    def test_a_file_the_store_does_not_hold_is_a_clear_error(
        self, store: ModelStore, model_files: Path, tmp_path: Path
    ) -> None:
        version = self.seed(store, model_files, unique("m"))
        absent = ModelFile(path="not-there.bin", size=3, sha256=hashlib.sha256(b"abc").hexdigest())
        dest = tmp_path / "partial"
        dest.touch()
        with pytest.raises(ModelError, match=r"not-there\.bin"):
            store._download(version, absent, dest)

    def test_manifest_changed_after_publishing_is_refused(self, store: ModelStore, model_files: Path) -> None:
        """A file and its sha256 changed together in the store: the recorded digest no longer matches."""

        def change(m: dict[str, Any]) -> None:
            m["version"] = "2"
            m["files"][0]["sha256"] = hashlib.sha256(b"other bytes").hexdigest()
            m["files"][0]["size"] = len(b"other bytes")
            m["digest"] = ModelVersion.from_manifest({k: v for k, v in m.items() if k != "digest"}).digest
            m["files"][0]["sha256"] = hashlib.sha256(b"evil bytes!").hexdigest()  # changed after the digest

        name = self._hostile(store, model_files, change, keep_digest=True)
        with pytest.raises(IntegrityError, match="digest"):
            store.resolve(ModelRef(name=name, select="2"))

    def test_a_pinned_digest_selects_exactly_that_version(self, store: ModelStore, model_files: Path) -> None:
        name = unique("m")
        first = self.seed(store, model_files, name, version="1")
        (model_files / "model.json").write_bytes(b'{"v": 2}')
        self.seed(store, model_files, name, version="2")
        assert store.resolve(ModelRef(name=name, select=first.digest)) == first
        with pytest.raises(ModelError, match="no version with digest"):
            store.resolve(ModelRef(name=name, select="sha256:" + "0" * 64))

    def test_a_tampered_cache_is_not_trusted(self, store: ModelStore, model_files: Path, tmp_path: Path) -> None:
        version = self.seed(store, model_files, unique("m"))
        cached = store.verified_blobs(version)["weights.bin"]
        cached.chmod(0o644)
        data = bytearray(cached.read_bytes())
        data[100] ^= 0xFF  # same size, other bytes
        cached.write_bytes(bytes(data))
        out = store.fetch(version, tmp_path / "fresh")
        assert (out / "weights.bin").read_bytes() == (model_files / "weights.bin").read_bytes()

    def test_verified_blobs_are_the_version_files_read_only_in_the_cache(
        self, store: ModelStore, model_files: Path
    ) -> None:
        """``shipway run`` builds the model layer from these files in place: they must be exactly the
        version's bytes, in this runner's cache (not the store's own storage), and read-only."""
        version = self.seed(store, model_files, unique("m"))
        blobs = store.verified_blobs(version)
        assert set(blobs) == {f.path for f in version.files}
        cache = store.context.cache_dir.resolve()
        for f in version.files:
            path = blobs[f.path]
            assert path.resolve().is_relative_to(cache), f"{f.path}: {path} is not in the cache {cache}"
            assert path.stat().st_mode & 0o222 == 0, f"{f.path}: {path} is writable"
            assert (path.stat().st_size, sha256_file(path)) == (f.size, f.sha256)

    def test_editing_a_fetched_file_never_edits_the_cache(
        self, store: ModelStore, model_files: Path, tmp_path: Path
    ) -> None:
        version = self.seed(store, model_files, unique("m"))
        first = store.fetch(version, tmp_path / "a")
        fetched = first / "weights.bin"
        fetched.chmod(0o644)
        with fetched.open("r+b") as f:  # in place, same size: what a careless build step does
            f.write(b"\0" * 16)
        second = store.fetch(version, tmp_path / "b")
        assert (second / "weights.bin").read_bytes() == (model_files / "weights.bin").read_bytes()

    def test_fetch_leaves_exactly_the_version_in_its_folder(
        self, store: ModelStore, model_files: Path, tmp_path: Path
    ) -> None:
        version = self.seed(store, model_files, unique("m"))
        dest = store.fetch(version, tmp_path / "model")
        (dest / "left-over.bin").write_bytes(b"from another store or an earlier run")
        store.fetch(version, dest)
        found = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
        assert found == sorted(f.path for f in version.files)

    def test_fetch_never_deletes_a_folder_it_did_not_make(
        self, store: ModelStore, model_files: Path, tmp_path: Path
    ) -> None:
        version = self.seed(store, model_files, unique("m"))
        mine = tmp_path / "my-work"
        mine.mkdir()
        (mine / "notes.txt").write_text("keep me")
        with pytest.raises(ModelError, match="not made by a fetch"):
            store.fetch(version, mine)
        assert (mine / "notes.txt").read_text() == "keep me"

    def test_concurrent_fetches_of_one_version(self, store: ModelStore, model_files: Path, tmp_path: Path) -> None:
        """Several processes fetch one version into one folder at once: each succeeds, the folder is whole."""
        version = self.seed(store, model_files, unique("m"))
        ctx = multiprocessing.get_context("fork")
        start = ctx.Barrier(4)

        def fetch() -> None:
            start.wait(timeout=60)
            for _ in range(10):
                store.fetch(version, tmp_path / "shared")

        workers = [ctx.Process(target=fetch) for _ in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=300)
        assert [w.exitcode for w in workers] == [0, 0, 0, 0]
        for f in version.files:
            assert (tmp_path / "shared" / f.path).read_bytes() == (model_files / f.path).read_bytes()

    def test_a_bad_partial_download_is_replaced(self, store: ModelStore, model_files: Path, tmp_path: Path) -> None:
        """Bytes left by an interrupted fetch that are not a prefix of the file never end up in it."""
        version = self.seed(store, model_files, unique("m"))
        target = next(f for f in version.files if f.path == "weights.bin")
        cache = BlobCache(store.context.cache_dir)
        cache.dir.mkdir(parents=True, exist_ok=True)
        (cache.dir / f"{target.sha256}.partial").write_bytes(b"\xff" * 5000)
        out = store.fetch(version, tmp_path / "out")
        assert (out / "weights.bin").read_bytes() == (model_files / "weights.bin").read_bytes()

    @pytest.mark.parametrize("have", ["empty", "first-byte", "half", "all-but-last", "whole"])
    def test_download_completes_a_partial_file_exactly(
        self, store: ModelStore, model_files: Path, tmp_path: Path, have: str
    ) -> None:
        """``_download`` into a file holding a true prefix resumes or replaces it: never appends the whole file."""
        version = self.seed(store, model_files, unique("m"))
        target = next(f for f in version.files if f.path == "weights.bin")
        data = (model_files / "weights.bin").read_bytes()
        keep = {"empty": 0, "first-byte": 1, "half": len(data) // 2, "all-but-last": len(data) - 1, "whole": len(data)}
        dest = tmp_path / "partial"
        dest.write_bytes(data[: keep[have]])
        store._download(version, target, dest)  # directly: fetch would retry a bad result whole
        assert dest.stat().st_size == target.size
        assert hashlib.sha256(dest.read_bytes()).hexdigest() == target.sha256

    def test_every_listed_version_is_what_resolve_gives(self, store: ModelStore, model_files: Path) -> None:
        name = unique("m")
        seeded = self.seed(store, model_files, name, version="1")
        assert store.versions(name) == [seeded]
        assert store.resolve(ModelRef(name=name, select="1")).metadata == seeded.metadata


class WritableModelStoreContract(ModelStoreContract):
    """A store users publish to: versions are numbered, immutable, and appear only when complete.

    Besides ``store``, ``corrupt`` and ``write_manifest``, provide:

    - ``break_publish(store, monkeypatch, action)``: arrange (with ``monkeypatch``) that the next
      publish calls ``action()`` after some of its data was written to the store, before the version
      is complete. When ``action`` raises, the publish must fail with that exception; it may also
      end the process (``os._exit``) or look at the store from another process. Later publishes
      may call ``action`` again: it then does nothing.

    The store object must keep working in a process forked after it was used
    (the concurrency tests fork): reopen connections when ``os.getpid()`` changes.
    """

    def break_publish(self, store: ModelStore, monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> None:
        raise NotImplementedError("a writable store contract must say how to interrupt a publish (break_publish)")

    def test_metadata_round_trips_exactly(self, store: ModelStore, model_files: Path) -> None:
        name = unique("m")
        published = store.publish(model_files, name, metadata=copy.deepcopy(METADATA))
        assert published.metadata == METADATA
        assert store.resolve(ModelRef(name=name)).metadata == METADATA
        assert store.versions(name)[0].metadata == METADATA
        assert store.resolve(ModelRef(name=name)).digest == published.digest

    def test_republishing_a_version_changes_nothing(self, store: ModelStore, model_files: Path, tmp_path: Path) -> None:
        name = unique("m")
        first = store.publish(model_files, name, version="1", aliases=("production",), metadata={"run": "first"})
        other = write_model(tmp_path / "other", {"weights.bin": b"other" * 1000, "model.json": b"{}", "new.txt": b"n"})
        with pytest.raises(ModelError, match="already exists"):
            store.publish(other, name, version="1", aliases=("staging",), metadata={"run": "second"})
        assert store.versions(name) == [first]
        assert store.aliases(name) == {"production": "1"}
        for f in first.files:
            data = stored_bytes(store, first, f, tmp_path / "after")
            assert hashlib.sha256(data).hexdigest() == f.sha256

    def test_alias_to_a_missing_version_changes_nothing(self, store: ModelStore, model_files: Path) -> None:
        name = unique("m")
        store.publish(model_files, name, aliases=("production",))
        for alias in ("production", "staging"):
            with pytest.raises(ModelError, match="no version"):
                store.set_alias(name, alias, "99")
        assert store.aliases(name) == {"production": "1"}
        with pytest.raises(ModelError, match="invalid alias"):
            store.set_alias(name, "../production", "1")
        assert store.aliases(name) == {"production": "1"}
        nobody = unique("none")
        with pytest.raises(ModelError, match="no version"):
            store.set_alias(nobody, "production", "1")
        assert store.aliases(nobody) == {}

    def test_concurrent_publishes_from_processes_get_distinct_intact_versions(
        self, store: ModelStore, tmp_path: Path
    ) -> None:
        name = unique("m")
        sources = [
            write_model(tmp_path / f"src{i}", {"w.bin": os.urandom(200_000), "id.txt": b"%d" % i}) for i in range(4)
        ]

        def publish(i: int) -> list[str]:
            return [store.publish(sources[i], name, metadata={"writer": i}).version for _ in range(3)]

        results = in_processes(4, publish, tmp_path / "results")
        assert sorted(int(v) for mine in results for v in mine) == list(range(1, 13))
        assert sorted(int(v.version) for v in store.versions(name)) == list(range(1, 13))
        assert store.resolve(ModelRef(name=name)).version == "12"
        for i, mine in enumerate(results):
            for number in mine:
                stored = store.resolve(ModelRef(name=name, select=number))
                assert stored.metadata == {"writer": i}
                for f in stored.files:
                    expected = hashlib.sha256((sources[i] / f.path).read_bytes()).hexdigest()
                    assert f.sha256 == expected
                    assert hashlib.sha256(stored_bytes(store, stored, f, tmp_path / "check")).hexdigest() == expected

    def test_one_version_published_by_several_processes_has_one_winner(self, store: ModelStore, tmp_path: Path) -> None:
        name = unique("m")
        sources = [write_model(tmp_path / f"src{i}", {"w.bin": os.urandom(200_000)}) for i in range(4)]

        def publish(i: int) -> dict[str, str]:
            try:
                return {"won": store.publish(sources[i], name, version="1.0").digest}
            except ModelError as exc:
                return {"lost": str(exc)}

        results = in_processes(4, publish, tmp_path / "results")
        winners = [i for i, r in enumerate(results) if "won" in r]
        assert len(winners) == 1
        assert all("already exists" in r["lost"] for r in results if "lost" in r)
        stored = store.resolve(ModelRef(name=name, select="1.0"))
        assert stored.digest == results[winners[0]]["won"]
        data = stored_bytes(store, stored, stored.files[0], tmp_path / "check")
        assert data == (sources[winners[0]] / "w.bin").read_bytes()

    def test_aliases_move_atomically_under_concurrent_writers(
        self, store: ModelStore, model_files: Path, tmp_path: Path
    ) -> None:
        """Each process sets aliases of its own and one shared alias: no update is lost."""
        name = unique("m")
        store.publish(model_files, name)
        (model_files / "model.json").write_bytes(b'{"v": 2}')
        store.publish(model_files, name)

        def move(i: int) -> int:
            for k in range(6):
                store.set_alias(name, f"p{i}-{k}", str(1 + (i + k) % 2))
                store.set_alias(name, "shared", str(1 + k % 2))
            return i

        in_processes(4, move, tmp_path / "results")
        table = store.aliases(name)
        assert table.pop("shared") == "2"  # every writer's last move
        assert table == {f"p{i}-{k}": str(1 + (i + k) % 2) for i in range(4) for k in range(6)}

    def test_a_failed_publish_leaves_no_version(
        self, store: ModelStore, model_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        name = unique("m")
        first = store.publish(model_files, name)

        def fail() -> None:
            raise InjectedFailure("publish interrupted by the contract")

        (model_files / "model.json").write_bytes(b'{"v": 2}')
        self.break_publish(store, monkeypatch, once(fail))
        with pytest.raises(InjectedFailure):
            store.publish(model_files, name, aliases=("production",))
        assert store.versions(name) == [first]
        assert store.aliases(name) == {}
        assert store.resolve(ModelRef(name=name)) == first
        second = store.publish(model_files, name)
        assert second.version == "2"
        for f in second.files:
            assert stored_bytes(store, second, f, tmp_path / "check") == (model_files / f.path).read_bytes()

    def test_a_failed_publish_of_an_explicit_version_does_not_claim_it(
        self, store: ModelStore, model_files: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        name = unique("m")
        store.publish(model_files, name)

        def fail() -> None:
            raise InjectedFailure("publish interrupted by the contract")

        self.break_publish(store, monkeypatch, once(fail))
        with pytest.raises(InjectedFailure):
            store.publish(model_files, name, version="7")
        assert [v.version for v in store.versions(name)] == ["1"]
        assert store.publish(model_files, name, version="7").version == "7"
        assert [v.version for v in store.versions(name)] == ["1", "7"]

    def test_a_publish_killed_midway_leaves_no_version(
        self, store: ModelStore, model_files: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        name = unique("m")
        first = store.publish(model_files, name)
        (model_files / "model.json").write_bytes(b'{"v": 2}')
        ctx = multiprocessing.get_context("fork")

        def crash() -> None:
            self.break_publish(store, monkeypatch, once(lambda: os._exit(17)))
            store.publish(model_files, name, aliases=("production",))
            os._exit(0)  # the publish was not interrupted: break_publish did not break it

        worker = ctx.Process(target=crash)
        worker.start()
        worker.join(timeout=300)
        assert worker.exitcode == 17
        assert store.versions(name) == [first]
        assert store.aliases(name) == {}
        assert store.publish(model_files, name).version == "2"

    def test_a_version_is_visible_only_when_complete(
        self, store: ModelStore, model_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Another process looking while a publish is under way sees the old versions only."""
        name = unique("m")
        store.publish(model_files, name)
        seen: list[Any] = []

        def look(i: int) -> dict[str, Any]:
            listed = store.versions(name)
            for v in listed:  # whatever is listed must be whole
                store.fetch(v, tmp_path / "looked" / v.version)
            return {"versions": [v.version for v in listed], "latest": store.resolve(ModelRef(name=name)).version}

        (model_files / "model.json").write_bytes(b'{"v": 2}')
        self.break_publish(store, monkeypatch, once(lambda: seen.extend(in_processes(1, look, tmp_path / "look"))))
        second = store.publish(model_files, name)
        assert seen == [{"versions": ["1"], "latest": "1"}]
        assert second.version == "2"
        assert [v.version for v in store.versions(name)] == ["1", "2"]

    def test_publish_numbers_versions(self, store: ModelStore, model_files: Path) -> None:
        name = unique("m")
        assert store.publish(model_files, name).version == "1"
        (model_files / "model.json").write_bytes(b"{}")
        assert store.publish(model_files, name).version == "2"
        assert store.resolve(ModelRef(name=name)).version == "2"

    def test_numbering_counts_integer_versions_only(self, store: ModelStore, model_files: Path) -> None:
        name = unique("m")
        store.publish(model_files, name, version="2024.1")
        assert store.publish(model_files, name).version == "1"
        store.publish(model_files, name, version="10")
        store.publish(model_files, name, version="rc-99")
        assert store.publish(model_files, name).version == "11"
        assert [v.version for v in store.versions(name)] == ["2024.1", "1", "10", "rc-99", "11"]
        assert store.resolve(ModelRef(name=name)).version == "11"

    def test_explicit_version_is_immutable(self, store: ModelStore, model_files: Path) -> None:
        name = unique("m")
        store.publish(model_files, name, version="2024.1")
        with pytest.raises(ModelError, match="already exists"):
            store.publish(model_files, name, version="2024.1")
        assert [v.version for v in store.versions(name)] == ["2024.1"]

    def test_alias_to_a_missing_version_is_refused(self, store: ModelStore, model_files: Path) -> None:
        name = unique("m")
        store.publish(model_files, name)
        with pytest.raises(ModelError):
            store.set_alias(name, "production", "99")

    def test_deeply_nested_folders_round_trip(self, store: ModelStore, tmp_path: Path) -> None:
        files = {"a/b/c/d.bin": b"deep", "a/b/e.txt": b"e", "a/z/y/x.txt": b"x", "top.txt": b"t"}
        version = store.publish(write_model(tmp_path / "nested", files), unique("m"))
        assert sorted(f.path for f in version.files) == sorted(files)
        out = store.fetch(store.resolve(ModelRef(name=version.name)), tmp_path / "out")
        assert {rel: (out / rel).read_bytes() for rel in files} == files

    def test_publish_single_file(self, store: ModelStore, tmp_path: Path) -> None:
        path = tmp_path / "model.onnx"
        path.write_bytes(b"\x08\x07onnx")
        version = store.publish(path, unique("m"))
        assert [(f.path, f.size) for f in version.files] == [("model.onnx", 6)]

    def test_bad_names_are_rejected(self, store: ModelStore, model_files: Path) -> None:
        for bad in ("../escape", "a/b", ""):
            with pytest.raises(ModelError):
                store.publish(model_files, bad)
        with pytest.raises(ModelError):
            store.publish(model_files, unique("m"), version="../1")


class ReadOnlyModelStoreContract(ModelStoreContract):
    """A store shipway only reads from: writing is refused clearly, and nothing changes."""

    def seed(
        self, store: ModelStore, path: Path, name: str, version: str | None = None, aliases: tuple[str, ...] = ()
    ) -> ModelVersion:
        raise NotImplementedError("a read-only store contract must say how to seed a version")

    def seed_alias(self, store: ModelStore, name: str, alias: str, version: str) -> None:
        raise NotImplementedError("a read-only store contract must say how to seed an alias")

    def test_declares_read_only(self, store: ModelStore) -> None:
        assert store.read_only is True

    def test_publish_and_set_alias_are_refused(self, store: ModelStore, model_files: Path) -> None:
        name = unique("m")
        self.seed(store, model_files, name, version="1")
        with pytest.raises(ReadOnlyStore, match="read-only store"):
            store.publish(model_files, name)
        with pytest.raises(ReadOnlyStore, match="read-only store"):
            store.set_alias(name, "production", "1")
        assert [v.version for v in store.versions(name)] == ["1"]
        assert store.aliases(name) == {}


def assembled_image(local_image: str, payload: bytes, cache_dir: Path, labels: dict[str, str] | None = None) -> Any:
    """A :class:`shipway.manifest.Image` as ``shipway run`` makes one: ``local_image``'s layers plus a
    deterministic layer holding ``payload`` (at /srv/payload/data.bin), loaded into the engine."""
    from shipway import image as img
    from shipway.layers import ModelLayer, model_entries, tar_chunks

    folder = cache_dir / f"payload-{hashlib.sha256(payload).hexdigest()[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.bin").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    version = ModelVersion(
        name="payload",
        version="1",
        created="2026-01-01T00:00:00Z",
        files=(ModelFile(path="data.bin", size=len(payload), sha256=digest),),
    )
    entries = tuple(model_entries(version, folder, "/srv/payload"))
    layer_digest = "sha256:" + hashlib.sha256(b"".join(tar_chunks(entries))).hexdigest()
    layer = ModelLayer("/srv/payload", entries, layer_digest, sum(len(c) for c in tar_chunks(entries)))
    saved = img.save(local_image, cache_dir / "spool")
    assembly = img.assemble(
        saved, layer, 1, 0, "2026-01-01T00:00:00Z", labels or {}, f"shipway-contract/{unique('i')}:t", "payload"
    )
    img.load(assembly, cache_dir)
    img.release_held(assembly.image.local_id)  # no run follows to release it: the test's tag names the image
    return assembly.image


class RegistryContract:
    """Login, push by digest, push assembled images, resolve, find, labels, newest verified build, auth failures.

    Fixtures to provide: ``registry`` (good credentials) and ``bad_registry``
    (the same registry with a wrong password). The kit's ``shipway_tiny_image``
    fixture builds the images pushed. A registry that only implements
    ``push()`` inherits a ``push_image()`` that pushes through the engine; the
    ``oci`` kind and its subclasses (``acr``, ``ecr``) push through the
    distribution API and send each blob at most once.

    Method to provide unless the registry is an ``oci`` kind (or a subclass of
    it), for which the kit has one:

    - ``break_push(registry, monkeypatch, action)``: arrange (with ``monkeypatch``) that the next
      ``push_image`` calls ``action()`` while a blob is being uploaded, before the image is complete.
      The contract's action raises :class:`InjectedFailure`; the push must fail with it, leave no tag,
      and the next push of the same image must complete. Later calls of ``action`` do nothing.

    The credentials ``credentials()`` returns are what a pull needs: the
    contract pulls through the Docker engine with them (None: an anonymous pull).
    """

    def break_push(self, registry: Registry, monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> None:
        """Default for the ``oci`` kinds: the blob upload stops half-way through its body and calls ``action``."""
        from shipway.backends.oci_registry import OciRegistry
        from shipway.oci import OciClient

        if not isinstance(registry, OciRegistry):
            raise NotImplementedError("a registry contract must say how to interrupt a push (break_push)")
        upload = OciClient.upload_blob

        def interrupted(
            client: OciClient,
            repo: str,
            digest: str,
            size: int,
            chunks: Callable[[], Any],
            location: str | None = None,
        ) -> None:
            def first_half() -> Any:
                sent = 0
                for chunk in chunks():
                    yield chunk
                    sent += len(chunk)
                    if sent * 2 >= size:
                        action()  # part of the blob is on the wire, the image is not complete

            upload(client, repo, digest, size, first_half, location)

        monkeypatch.setattr(OciClient, "upload_blob", interrupted)

    def test_push_image_puts_every_tag_and_sends_each_blob_once(
        self, registry: Registry, shipway_tiny_image: Any, tmp_path: Path
    ) -> None:
        image = assembled_image(shipway_tiny_image(), os.urandom(200_000), tmp_path, {"org.example.k": "v"})
        first, second = unique("a"), unique("b")
        pushed = registry.push_image(image, [first, second])
        assert pushed.digest
        assert pushed.repository == registry.repository()
        assert registry.resolve(first) == pushed
        assert registry.resolve(second).digest == pushed.digest
        assert registry.labels(pushed)["org.example.k"] == "v"
        before = registry.bytes_uploaded
        again = registry.push_image(image, [unique("c")])
        assert again.digest == pushed.digest
        assert registry.bytes_uploaded - before < 10_000  # a manifest at most: every blob is already there

    def test_a_failed_push_leaves_no_tag_and_the_next_push_completes(
        self, registry: Registry, shipway_tiny_image: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        image = assembled_image(shipway_tiny_image(), os.urandom(300_000), tmp_path, {"org.example.k": "v"})
        tags = [unique("a"), unique("b")]

        def fail() -> None:
            raise InjectedFailure("push interrupted by the contract")

        self.break_push(registry, monkeypatch, once(fail))
        with pytest.raises(InjectedFailure):
            registry.push_image(image, tags)
        for tag in tags:
            assert registry.find(tag) is None, f"a failed push left tag {tag}"
        pushed = registry.push_image(image, tags)
        assert [registry.resolve(tag).digest for tag in tags] == [pushed.digest, pushed.digest]
        assert registry.labels(pushed)["org.example.k"] == "v"
        pulled = pull_through_engine(pushed, registry.credentials())
        assert pulled.labels.get("org.example.k") == "v"

    def test_a_streamed_blob_is_held_counted_and_not_sent_again(
        self, registry: Registry, shipway_tiny_image: Any, tmp_path: Path
    ) -> None:
        """``stream_blob`` is optional: a registry that says it streams (``streams_blobs``) takes bytes as they
        come, in uneven pieces, holds them under their digest and counts them; a push of an image with that
        layer does not send it again. One that says it does not, refuses."""
        image = assembled_image(shipway_tiny_image(), os.urandom(3_000_000), tmp_path)
        layer = max(image.layers, key=lambda b: b.size)
        if not registry.streams_blobs:
            with pytest.raises(NotImplementedError):
                registry.stream_blob(iter([b"x"]), 1)
            return

        def arriving() -> Any:
            for chunk in layer.opener():
                for start in range(0, len(chunk), 300_001):
                    yield chunk[start : start + 300_001]
                    time.sleep(0.005)

        before = registry.bytes_uploaded
        assert registry.stream_blob(arriving(), layer.size) == layer.digest
        assert registry.bytes_uploaded - before >= layer.size
        middle = registry.bytes_uploaded
        pushed = registry.push_image(image, [unique("s")])
        others = sum(b.size for b in (*image.layers, image.config_blob) if b is not layer)
        assert registry.bytes_uploaded - middle <= others + 10_000, "the push sent the streamed layer again"
        assert registry.resolve(pushed.tag or "").digest == pushed.digest

    def test_push_image_never_moves_a_tag(self, registry: Registry, shipway_tiny_image: Any, tmp_path: Path) -> None:
        tag = unique("t")
        one = registry.push_image(assembled_image(shipway_tiny_image(), b"one", tmp_path), [tag])
        with pytest.raises(TagExists):
            registry.push_image(assembled_image(shipway_tiny_image(), b"two", tmp_path), [tag])
        assert registry.resolve(tag).digest == one.digest

    def test_find_is_none_or_the_tagged_image(self, registry: Registry, shipway_tiny_image: Any) -> None:
        assert registry.find(unique("missing")) is None
        tag = unique("t")
        pushed = registry.push(shipway_tiny_image(), tag)
        assert registry.find(tag) == pushed

    def test_login(self, registry: Registry, bad_registry: Registry) -> None:
        """login() checks the credentials with the registry: good ones pass, a wrong password is an AuthError."""
        registry.login()
        registry.login()  # again: nothing cached that a second check trips over
        assert registry.find(unique("missing")) is None  # an authenticated request, answered
        with pytest.raises(AuthError) as err:
            bad_registry.login()
        assert err.value.exit_code == ExitCode.BACKEND
        creds = bad_registry.credentials() or {}
        if creds.get("password"):
            assert creds["password"] not in str(err.value)

    def test_wrong_password_is_a_clear_auth_error(self, bad_registry: Registry, shipway_tiny_image: Any) -> None:
        with pytest.raises(AuthError) as err:
            bad_registry.login()
        assert "rejected" in str(err.value)
        with pytest.raises(AuthError):
            bad_registry.push(shipway_tiny_image(), unique("t"))

    def test_push_resolve_exists_labels(self, registry: Registry, shipway_tiny_image: Any) -> None:
        image_id = shipway_tiny_image(labels={"org.example.k": "v"})
        tag = unique("t")
        pushed = registry.push(image_id, tag)
        assert pushed.digest
        assert pushed.digest.startswith("sha256:")
        assert pushed.repository == registry.repository()
        assert registry.resolve(tag) == pushed
        assert registry.exists(pushed)
        assert registry.exists(ImageRef(repository=pushed.repository, digest=pushed.digest))
        assert registry.labels(pushed)["org.example.k"] == "v"

    def test_unknown_tag_is_not_found(self, registry: Registry) -> None:
        with pytest.raises(NotFound):
            registry.resolve(unique("missing"))
        assert not registry.exists(ImageRef(repository=registry.repository(), tag=unique("missing")))

    def test_builds_are_verified_builds_of_the_app_newest_first(
        self, registry: Registry, shipway_tiny_image: Any
    ) -> None:
        """Only images labelled verified ``"true"`` and of exactly this app count, newest first."""
        app = unique("app")

        def build_labels(created: str, verified: str | None = "true", for_app: str = app) -> dict[str, str]:
            found = {L.APP: for_app, L.CREATED: created, L.REVISION: created}
            if verified is not None:
                found[L.VERIFIED] = verified
            return found

        old = registry.push(shipway_tiny_image(labels=build_labels("2026-01-01T00:00:00Z")), unique("old"))
        new = registry.push(shipway_tiny_image(labels=build_labels("2026-02-01T00:00:00Z")), unique("new"))
        newer_but_not_builds = {
            "unverified": build_labels("2026-03-01T00:00:00Z", verified=None),
            "failed-verify": build_labels("2026-03-02T00:00:00Z", verified="false"),
            "other-app": build_labels("2026-04-01T00:00:00Z", for_app=unique("other")),
            "longer-app-name": build_labels("2026-04-02T00:00:00Z", for_app=app + "-worker"),
            "app-name-prefix": build_labels("2026-04-03T00:00:00Z", for_app=app[:-1]),
            "no-labels": {},
        }
        for name, found_labels in newer_but_not_builds.items():
            registry.push(shipway_tiny_image(labels=found_labels), unique(name))
        found = registry.builds(app)
        assert [ref.digest for ref, _ in found] == [new.digest, old.digest]
        assert found[0][1][L.CREATED] == "2026-02-01T00:00:00Z"
        assert all(labels[L.APP] == app and labels[L.VERIFIED] == "true" for _, labels in found)
        assert registry.builds(unique("nobody")) == []

    def test_credentials_are_what_a_pull_needs(self, registry: Registry, shipway_tiny_image: Any) -> None:
        """The Docker engine pulls a pushed image with ``credentials()`` (None: anonymously), as orchestrators do."""
        pushed = registry.push(shipway_tiny_image(labels={"org.example.pull": "yes"}), unique("pull"))
        creds = registry.credentials()
        if creds is not None:
            assert set(creds) >= {"username", "password"}, "a docker auth_config: username, password, serveraddress"
        pulled = pull_through_engine(pushed, creds)
        assert pulled.labels.get("org.example.pull") == "yes"

    def test_credentials_are_never_in_describe(self, registry: Registry) -> None:
        creds = registry.credentials()
        if creds and creds.get("password"):
            assert creds["password"] not in registry.describe()
            assert creds["password"] not in repr(registry.settings)


def evict_local_image(image: ImageRef) -> None:
    """Remove ``image`` (by digest) from the local Docker engine, so using it again needs a pull."""
    import docker.errors

    from shipway import dockerutil

    client = dockerutil.client()
    try:
        client.images.remove(client.images.get(image.pinned).id, force=True)
    except docker.errors.ImageNotFound:
        return
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(image.pinned)


def pull_through_engine(image: ImageRef, auth: dict[str, str] | None) -> Any:
    """Pull ``image`` by digest through the Docker engine with ``auth`` (after evicting it); the pulled image.

    Fails the test with the engine's message when the pull is refused.
    """
    import docker.errors

    from shipway import dockerutil

    evict_local_image(image)
    client = dockerutil.client()
    try:
        for _ in client.api.pull(image.repository, tag=image.digest, auth_config=auth, stream=True, decode=True):
            pass
        return client.images.get(image.pinned)
    except docker.errors.APIError as exc:
        who = "anonymously" if auth is None else f"as {auth.get('username')!r}"
        pytest.fail(f"the Docker engine could not pull {image.pinned} {who}: {exc.explanation or exc}")


class OrchestratorContract:
    """Deploy by digest, wait healthy, status, endpoint, rollback, failure, removal.

    Fixture to provide: ``orchestrator``. The kit provides the others; override
    them when your nodes cannot pull from the kit's registry:

    - ``images``: a mapping with ``good``, ``good2`` and ``bad`` :class:`ImageRef` (with digests) of
      images serving ``/healthz`` on port 8000 (``bad`` never becomes healthy); default: the kit's
      ``shipway_contract_images``;
    - ``slow_image``: an image serving (``/version`` "v3") only ``SLOW_SECONDS`` after it starts, so a
      release of it waits; default: built and pushed to the kit's registry. Health checks of the
      backend under test must allow that long before they call a new revision unhealthy (Swarm:
      ``health_start_period``);
    - ``pull_auth``: the docker auth_config to pull them with (or None); default: the kit registry's
      ``credentials()``.

    Promises besides deploy and endpoint: ``rollback`` restores exactly the
    revision before the current one; ``status`` answers while a release waits
    (never presenting the new image as serving before it is ready) and after a
    failed release (the previous digest serving, the failed digest remembered);
    ``deploy`` pulls with the credentials it is given.
    """

    SLOW_SECONDS = 5
    """How long ``slow_image`` takes to serve after it starts."""

    def release(self, app: str, image: ImageRef) -> Release:
        return Release(app=app, image=image, port=8000, health="/healthz")

    @pytest.fixture
    def images(self, shipway_contract_images: dict[str, ImageRef]) -> dict[str, ImageRef]:
        return shipway_contract_images

    @pytest.fixture
    def pull_auth(self, shipway_contract_registry: Registry) -> dict[str, str] | None:
        return shipway_contract_registry.credentials()

    @pytest.fixture
    def slow_image(self, shipway_contract_registry: Registry, shipway_tiny_image: Any) -> ImageRef:
        serve = f"sleep {self.SLOW_SECONDS}; exec httpd -f -p 8000 -h /www"
        local = shipway_tiny_image(files={"version": "v3"}, command=["sh", "-c", serve])
        return shipway_contract_registry.push(local, "slow")

    @pytest.fixture
    def app(self, orchestrator: Orchestrator) -> Any:
        name = unique("c")
        yield name
        orchestrator.remove(name)

    def served_version(self, orchestrator: Orchestrator, app: str) -> str:
        """What the endpoint serves, asked over 5 new connections: one answer (a revision that was
        replaced and still answers some requests fails it)."""
        answers = set()
        for _ in range(5):
            resp = requests.get(orchestrator.endpoint(app) + "/version", timeout=5)
            answers.add(resp.text.strip() if resp.status_code == 200 else f"HTTP {resp.status_code}")
        assert len(answers) == 1, f"the endpoint gives several answers at once: {sorted(answers)}"
        return answers.pop()

    def test_status_of_unknown_app_is_absent(self, orchestrator: Orchestrator, app: str) -> None:
        dep = orchestrator.status(app)
        assert dep.state == "absent"
        assert dep.image is None

    def test_deploy_waits_until_healthy(
        self, orchestrator: Orchestrator, app: str, images: dict[str, ImageRef], pull_auth: Any
    ) -> None:
        dep = orchestrator.deploy(self.release(app, images["good"]), auth=pull_auth)
        assert dep.state == "healthy"
        assert dep.digest == images["good"].digest
        assert set(dep.running_digests) == {images["good"].digest}
        url = orchestrator.endpoint(app)
        assert requests.get(url + "/healthz", timeout=5).status_code == 200
        assert orchestrator.status(app).digest == images["good"].digest

    def test_update_then_rollback(
        self, orchestrator: Orchestrator, app: str, images: dict[str, ImageRef], pull_auth: Any
    ) -> None:
        """Three releases (good, good2, good again): rollback restores exactly the one before the current one."""
        good, good2 = images["good"], images["good2"]
        orchestrator.deploy(self.release(app, good), auth=pull_auth)
        dep = orchestrator.deploy(self.release(app, good2), auth=pull_auth)
        assert dep.digest == good2.digest
        assert dep.previous_image is not None
        assert dep.previous_image.digest == good.digest
        assert self.served_version(orchestrator, app) == "v2"
        again = orchestrator.deploy(self.release(app, good), auth=pull_auth)
        assert again.digest == good.digest
        assert again.previous_image is not None
        assert again.previous_image.digest == good2.digest
        back = orchestrator.rollback(app)
        assert back.state == "healthy"
        assert back.digest == good2.digest
        assert set(back.running_digests) == {good2.digest}
        assert self.served_version(orchestrator, app) == "v2"
        live = orchestrator.status(app)
        assert (live.state, live.digest, set(live.running_digests)) == ("healthy", good2.digest, {good2.digest})

    def test_failed_deploy_raises_and_rollback_restores_previous(
        self, orchestrator: Orchestrator, app: str, images: dict[str, ImageRef], pull_auth: Any
    ) -> None:
        """A failed release as the engine runs it: deploy raises, mark_failed, rollback; then status tells it."""
        good, bad = images["good"].digest, images["bad"].digest or ""
        orchestrator.deploy(self.release(app, images["good"]), auth=pull_auth)
        with pytest.raises(BackendError):
            orchestrator.deploy(self.release(app, images["bad"]), auth=pull_auth)
        failed = orchestrator.status(app)
        assert bad not in failed.running_digests, "the failed image is reported as serving"
        assert not (failed.state == "healthy" and failed.digest == bad), "the failed image is reported healthy"
        orchestrator.mark_failed(app, "default", bad, "did not become healthy")  # as `shipway release` does
        restored = orchestrator.rollback(app)
        assert restored.state == "healthy"
        assert restored.digest == good
        assert set(restored.running_digests) == {good}
        assert requests.get(orchestrator.endpoint(app) + "/healthz", timeout=5).status_code == 200
        live = orchestrator.status(app)
        assert (live.state, live.digest, set(live.running_digests)) == ("healthy", good, {good})
        assert orchestrator.failed_digests(app).get(bad) == "did not become healthy"
        assert self.served_version(orchestrator, app) == "v1"

    def test_status_while_a_release_waits(
        self,
        orchestrator: Orchestrator,
        app: str,
        images: dict[str, ImageRef],
        slow_image: ImageRef,
        pull_auth: Any,
    ) -> None:
        """status() from another thread while deploy() waits for an image that serves only after a while.

        It answers, names the old or the new image (never "absent"), and never lists
        the new digest as serving before the new revision could answer.
        """
        good = images["good"].digest
        orchestrator.deploy(self.release(app, images["good"]), auth=pull_auth)
        seen: list[tuple[float, float, Any]] = []
        done = threading.Event()
        start = time.monotonic()

        def watch(offset: float) -> None:
            done.wait(offset)
            while not done.is_set():
                asked = time.monotonic()
                try:
                    found: Any = orchestrator.status(app)
                except Exception as exc:  # noqa: BLE001 - reported by the test below
                    found = exc
                seen.append((asked - start, time.monotonic() - start, found))
                done.wait(0.2)

        # Several watchers, staggered: a status() that probes health can take seconds, and one watcher
        # alone may ask only before the new revision starts and then answer only after it could serve.
        watchers = [threading.Thread(target=watch, args=(i * 0.4,), daemon=True) for i in range(4)]
        for watcher in watchers:
            watcher.start()
        try:
            dep = orchestrator.deploy(self.release(app, slow_image), auth=pull_auth)
        finally:
            done.set()
            for watcher in watchers:
                watcher.join(timeout=60)
        took = time.monotonic() - start
        assert took >= self.SLOW_SECONDS, f"deploy returned after {took:.1f}s: it did not wait for the new revision"
        assert (dep.state, dep.digest) == ("healthy", slow_image.digest)
        assert self.served_version(orchestrator, app) == "v3"
        errors = [f for _, _, f in seen if isinstance(f, Exception)]
        assert not errors, f"status() raised during a release: {errors[0]!r}"
        early = [f for _, answered, f in seen if answered < self.SLOW_SECONDS]
        assert early, "status() gave no answer while the release waited"
        for found in (f for _, _, f in seen):
            assert found.state != "absent"
            assert found.digest in (good, slow_image.digest)
            assert set(found.running_digests) <= {good, slow_image.digest}
        for found in early:  # the new revision cannot have answered yet
            assert slow_image.digest not in found.running_digests, f"reported serving before it could: {found}"
            assert not (found.state == "healthy" and found.digest == slow_image.digest), found

    def test_rollback_without_previous_is_not_found(
        self, orchestrator: Orchestrator, app: str, images: dict[str, ImageRef], pull_auth: Any
    ) -> None:
        with pytest.raises(NotFound):
            orchestrator.rollback(app)
        orchestrator.deploy(self.release(app, images["good"]), auth=pull_auth)
        with pytest.raises(NotFound):
            orchestrator.rollback(app)

    def test_failed_digests_are_remembered(
        self, orchestrator: Orchestrator, app: str, images: dict[str, ImageRef], pull_auth: Any
    ) -> None:
        orchestrator.deploy(self.release(app, images["good"]), auth=pull_auth)
        assert orchestrator.failed_digests(app) == {}
        bad = images["bad"].digest or ""
        orchestrator.mark_failed(app, "default", bad, "3 of 5 verify checks failed")
        orchestrator.mark_failed(app, "default", "sha256:" + "0" * 64, "ProgressDeadlineExceeded")
        found = orchestrator.failed_digests(app)
        assert found[bad] == "3 of 5 verify checks failed"
        assert len(found) == 2
        assert orchestrator.status(app).digest == images["good"].digest  # remembering changes nothing live

    def test_secrets_are_files_under_run_secrets_and_never_reported(
        self, orchestrator: Orchestrator, app: str, images: dict[str, ImageRef], pull_auth: Any
    ) -> None:
        value = "s3cr3t-" + uuid.uuid4().hex
        release = self.release(app, images["good"]).model_copy(update={"secrets": {"api_token": SecretStr(value)}})
        dep = orchestrator.deploy(release, auth=pull_auth)
        served = requests.get(orchestrator.endpoint(app) + "/secrets/api_token", timeout=5)
        assert served.status_code == 200
        assert served.text.strip() == value
        assert value not in dep.model_dump_json()
        assert value not in orchestrator.status(app).model_dump_json()
        assert value not in release.model_dump_json()

    def evict_image(self, image: ImageRef) -> None:
        """Make sure no node holds ``image``, so that deploying it must pull it from the registry.

        The default removes it from the local Docker engine, where the kit's orchestrators
        (and the fake Kubernetes cluster) run their containers; override it for remote nodes.
        """
        evict_local_image(image)

    def test_deploy_pulls_with_the_credentials_it_is_given(
        self, orchestrator: Orchestrator, app: str, images: dict[str, ImageRef], pull_auth: Any
    ) -> None:
        # The image exists only in the (auth-protected) registry: the orchestrator must pull it with `auth`.
        self.evict_image(images["good"])
        dep = orchestrator.deploy(self.release(app, images["good"]), auth=pull_auth)
        assert dep.state == "healthy"
        assert set(dep.running_digests) == {images["good"].digest}
        assert requests.get(orchestrator.endpoint(app) + "/version", timeout=5).text.strip() == "v1"

    def test_remove(self, orchestrator: Orchestrator, app: str, images: dict[str, ImageRef], pull_auth: Any) -> None:
        orchestrator.deploy(self.release(app, images["good"]), auth=pull_auth)
        orchestrator.remove(app)
        assert orchestrator.status(app).state == "absent"


__all__ = [
    "BackendContext",
    "InjectedFailure",
    "ModelStoreContract",
    "OrchestratorContract",
    "ReadOnlyModelStoreContract",
    "RegistryContract",
    "WritableModelStoreContract",
    "assembled_image",
    "evict_local_image",
    "pull_through_engine",
    "unique",
    "write_model",
]
