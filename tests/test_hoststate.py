"""What an orchestrator keeps on this host by default, and the failed-digest policy every orchestrator follows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shipway.backends.base import MAX_FAILED, remember_failed
from shipway.backends.hoststate import host_lock, read_failed, write_failed
from shipway.errors import LockedError


def test_remember_failed_keeps_the_newest_and_moves_a_repeat_to_the_end() -> None:
    found: dict[str, str] = {}
    for n in range(MAX_FAILED + 5):
        found = remember_failed(found, f"sha256:{n}", f"reason {n}")
    assert len(found) == MAX_FAILED
    assert next(iter(found)) == "sha256:5"  # the five oldest are gone
    found = remember_failed(found, "sha256:5", "x" * 1000)
    assert list(found)[-1] == "sha256:5"
    assert found["sha256:5"] == "x" * 300
    assert len(found) == MAX_FAILED


def test_the_failed_record_round_trips_and_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "state" / "a-default-failed.json"
    assert read_failed(path) == {}
    write_failed(path, {"sha256:1": "one", "sha256:2": "two"})
    assert list(read_failed(path).items()) == [("sha256:1", "one"), ("sha256:2", "two")]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no partial file left behind


def test_host_lock_refuses_a_second_process_at_once(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "a-default.lock"
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from shipway.backends.hoststate import host_lock\n"
        "from shipway.errors import LockedError\n"
        "try:\n"
        "    with host_lock(Path(sys.argv[1]), 'busy'):\n"
        "        print('acquired')\n"
        "except LockedError as exc:\n"
        "    print('locked:', exc)\n"
    )
    with host_lock(path, "busy"):
        held = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=60)
        assert held.stdout.strip() == "locked: busy", held.stderr
        with pytest.raises(LockedError, match="busy"), host_lock(path, "busy"):  # this process too
            pass
    free = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=60)
    assert free.stdout.strip() == "acquired", free.stderr
