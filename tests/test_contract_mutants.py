"""The kit tests itself: the writable store contract rejects stores broken one promise at a time.

Each mutant in ``store_mutants.py`` is a passing store (``local``, or the
``sqlite`` example plugin) with one fault. The contract runs against it in a
pytester subprocess, limited to the tests that check the broken promise, and
every one of those must fail; the unmutated stores pass the whole contract
through the same harness.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

MUTANTS = Path(__file__).with_name("store_mutants.py")

# mutant -> the contract tests that must reject it (each one must fail)
EXPECTED = {
    "DropsMetadata": ["test_metadata_round_trips_exactly"],
    "AppendingDownload": [
        "test_download_completes_a_partial_file_exactly[first-byte]",
        "test_download_completes_a_partial_file_exactly[half]",
        "test_download_completes_a_partial_file_exactly[whole]",
        "test_download_completes_a_partial_file_exactly[all-but-last]",
    ],
    "NoWriteLock": ["test_concurrent_publishes_from_processes_get_distinct_intact_versions"],
    "RepublishOverwrites": ["test_republishing_a_version_changes_nothing"],
    "AliasSavesThenRaises": ["test_alias_to_a_missing_version_changes_nothing"],
    "AliasLostUpdate": ["test_aliases_move_atomically_under_concurrent_writers"],
    "ManifestFirst": ["test_a_version_is_visible_only_when_complete", "test_a_failed_publish_leaves_no_version"],
    "UnverifiedBlobs": ["test_verified_blobs_are_the_version_files_read_only_in_the_cache"],
    "NoParseManifest": [
        "test_manifest_with_an_unsafe_path_is_refused[../outside.bin]",
        "test_manifest_with_a_malformed_sha256_is_refused[AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA]",
        "test_manifest_changed_after_publishing_is_refused",
    ],
}


def run_contract(pytester: pytest.Pytester, base: str, store_class: str, *args: str) -> pytest.RunResult:
    """Run the writable store contract (``base`` test class from store_mutants) against ``store_class``."""
    pytester.makepyfile(store_mutants=MUTANTS.read_text())
    pytester.makepyfile(
        test_contract=f"""
from store_mutants import {base}, {store_class}


class TestStore({base}):
    store_class = {store_class}
"""
    )
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-rf", *args)


@pytest.mark.parametrize(
    ("base", "store"), [("LocalContract", "LocalModelStore"), ("SqliteContract", "SqliteModelStore")]
)
def test_the_contract_accepts_the_unmutated_store(pytester: pytest.Pytester, base: str, store: str) -> None:
    result = run_contract(pytester, base, store)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0, result.stdout.str()
    assert outcomes["passed"] >= 50


@pytest.mark.parametrize("base", ["Local", "Sqlite"])
@pytest.mark.parametrize("mutant", sorted(EXPECTED))
def test_the_contract_rejects_the_mutant(pytester: pytest.Pytester, base: str, mutant: str) -> None:
    ids = [f"test_contract.py::TestStore::{test}" for test in EXPECTED[mutant]]
    result = run_contract(pytester, f"{base}Contract", f"{base}{mutant}", *ids)
    failed = {line.split(" ")[1] for line in result.stdout.lines if line.startswith("FAILED ")}
    assert failed == set(ids), result.stdout.str()
