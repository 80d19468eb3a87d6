"""The kit tests itself: the writable store contract rejects stores broken one promise at a time.

Each mutant in ``store_mutants.py`` is a passing store (``local``, or the
``sqlite`` example plugin) with one fault. The contract runs against it
limited to the tests that check the broken promise, and every one of those
must fail; the unmutated stores pass the whole contract through the same
harness: one subprocess for the module (tests/contract_runs.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from contract_runs import Backend, Verdicts, run_contracts

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


BASES = {"Local": ("LocalContract", "LocalModelStore"), "Sqlite": ("SqliteContract", "SqliteModelStore")}


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> Verdicts:
    """Every store of this module, unmutated (the whole contract) and mutated (the tests it must fail), in one run."""
    backends, selection = [], {}
    for base, (contract, store) in BASES.items():
        backends.append(Backend(f"Test{store}", contract, "store_class", store))
        selection[f"Test{store}"] = []
        for mutant, tests in EXPECTED.items():
            backends.append(Backend(f"Test{base}{mutant}", contract, "store_class", f"{base}{mutant}"))
            selection[f"Test{base}{mutant}"] = tests
    return run_contracts(tmp_path_factory.mktemp("store-contracts"), MUTANTS, backends, selection)


@pytest.mark.parametrize("store", ["LocalModelStore", "SqliteModelStore"])
def test_the_contract_accepts_the_unmutated_store(verdicts: Verdicts, store: str) -> None:
    outcomes = verdicts.of(f"Test{store}")
    assert [t for t, o in outcomes.items() if o != "passed"] == [], verdicts.output
    assert len(outcomes) >= 50


@pytest.mark.parametrize("base", ["Local", "Sqlite"])
@pytest.mark.parametrize("mutant", sorted(EXPECTED))
def test_the_contract_rejects_the_mutant(verdicts: Verdicts, base: str, mutant: str) -> None:
    outcomes = verdicts.of(f"Test{base}{mutant}")
    assert outcomes == dict.fromkeys(EXPECTED[mutant], "failed"), verdicts.output
