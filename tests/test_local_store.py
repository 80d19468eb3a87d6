"""The local model store: the kit's contract suite for it (TestLocalStore) plus local specifics."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from shipway.backends import local_store
from shipway.backends.base import BackendContext
from shipway.backends.local_store import LocalModelStore, LocalStoreSettings
from shipway.domain import ModelRef
from shipway.errors import ModelError
from shipway.testing.contracts import InjectedFailure, unique, write_model
from shipway.testing.local_contract import TestLocalStore  # noqa: F401 - the contract suite, collected here


def make_store(tmp_path: Path) -> LocalModelStore:
    settings = LocalStoreSettings(kind="local", path=str(tmp_path / "store"))
    return LocalModelStore(settings, BackendContext(cache_dir=tmp_path / "cache"))


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


def test_a_killed_publish_leaves_no_staging_folder_behind(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    store = make_store(tmp_path)
    name = unique("m")
    store.publish(write_model(tmp_path / "src", {"w.bin": b"1"}), name)
    # A publisher that died mid-copy: its staging folder names a process that no longer exists.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = store.root / name / f".staging-{socket.gethostname()}-{dead.stdout.strip()}-abc"
    (leftover / "files").mkdir(parents=True)
    (leftover / "files" / "w.bin").write_bytes(b"x" * 1000)
    other_host = store.root / name / ".staging-elsewhere-1-abc"  # a shared folder: another host's publish
    other_host.mkdir()
    store.publish(write_model(tmp_path / "src2", {"w.bin": b"2"}), name)
    assert not leftover.exists()
    assert other_host.exists()
    assert [p.name for p in (store.root / name).iterdir() if p.name.startswith(".staging-")] == [other_host.name]


def test_alias_target_must_be_a_valid_existing_version(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    name = unique("m")
    store.publish(write_model(tmp_path / "src", {"w.bin": b"1"}), name)
    for bad in ("2", "1/../1", "../1", ""):
        with pytest.raises(ModelError, match="has no version"):
            store.set_alias(name, "production", bad)
    assert store.aliases(name) == {}


def test_symlinks_in_a_published_folder_are_refused(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    src = write_model(tmp_path / "src", {"w.bin": b"1"})
    (tmp_path / "secret.txt").write_text("host file")
    (src / "link.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(ModelError, match=r"link\.txt is a symbolic link"):
        store.publish(src, unique("m"))


def test_a_failed_publish_leaves_no_staging_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(tmp_path)
    name = unique("m")
    store.publish(write_model(tmp_path / "src", {"a.bin": b"1", "b.bin": b"2"}), name)

    def fail(src: Path, dest: Path) -> str:
        raise InjectedFailure("disk full")

    monkeypatch.setattr(local_store, "_copy_hashing", fail)
    with pytest.raises(InjectedFailure):
        store.publish(tmp_path / "src", name)
    assert [p.name for p in (store.root / name).iterdir() if p.name.startswith(".staging-")] == []


def test_abandoned_staging_of_a_host_named_with_dashes_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    monkeypatch.setattr(local_store.socket, "gethostname", lambda: "ci-runner-7")
    store = make_store(tmp_path)
    name = unique("m")
    store.publish(write_model(tmp_path / "src", {"w.bin": b"1"}), name)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    mine = store.root / name / f".staging-ci-runner-7-{dead.stdout.strip()}-abc"
    theirs = store.root / name / f".staging-ci-runner-8-{dead.stdout.strip()}-abc"  # same dead pid, other host
    mine.mkdir()
    theirs.mkdir()
    store.publish(write_model(tmp_path / "src2", {"w.bin": b"2"}), name)
    assert not mine.exists()
    assert theirs.exists()


def test_the_staging_folder_of_a_running_publisher_is_left_alone(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    store = make_store(tmp_path)
    name = unique("m")
    store.publish(write_model(tmp_path / "src", {"w.bin": b"1"}), name)
    publisher = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        running = store.root / name / f".staging-{socket.gethostname()}-{publisher.pid}-abc"
        running.mkdir()
        store.publish(write_model(tmp_path / "src2", {"w.bin": b"2"}), name)
        assert running.exists()
        with pytest.raises(subprocess.TimeoutExpired):  # not signalled either: it keeps running
            publisher.wait(timeout=1)
    finally:
        publisher.kill()
        publisher.wait()


def test_hidden_entries_in_the_versions_folder_are_not_versions(tmp_path: Path) -> None:
    """A sync tool's temporary copy (rsync writes `.name.XXXX`) is not a version, even with a manifest."""
    store = make_store(tmp_path)
    name = unique("m")
    store.publish(write_model(tmp_path / "src", {"w.bin": b"1"}), name)
    hidden = store.root / name / "versions" / ".1.Xy12"
    hidden.mkdir()
    (hidden / "manifest.json").write_text((store.root / name / "versions" / "1" / "manifest.json").read_text())
    assert [v.version for v in store.versions(name)] == ["1"]


def test_an_unreadable_manifest_names_its_file(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    name = unique("m")
    store.publish(write_model(tmp_path / "src", {"w.bin": b"1"}), name)
    (store.root / name / "versions" / "1" / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match=rf"{name}/versions/1/manifest\.json: unreadable manifest"):
        store.versions(name)


def test_the_staging_folder_of_another_users_publisher_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    store = make_store(tmp_path)
    name = unique("m")
    store.publish(write_model(tmp_path / "src", {"w.bin": b"1"}), name)
    theirs = store.root / name / f".staging-{socket.gethostname()}-4242-abc"
    theirs.mkdir()

    def not_permitted(pid: int, signal: int) -> None:
        raise PermissionError(1, "Operation not permitted")  # a process of another user: it exists

    monkeypatch.setattr(local_store.os, "kill", not_permitted)
    store.publish(write_model(tmp_path / "src2", {"w.bin": b"2"}), name)
    assert theirs.exists()
