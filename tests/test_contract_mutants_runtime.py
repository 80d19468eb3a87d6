"""The kit tests itself: the registry and orchestrator contracts reject backends broken one promise at a time.

Each mutant in ``runtime_mutants.py`` is a passing backend (the ``oci``
registry, the ``docker`` orchestrator) with one fault. The contract runs
against it in a pytester subprocess, limited to the tests that check the
broken promise, and every one of those must fail; the unmutated backends pass
the same selection through the same harness (their full contract runs in
test_oci_registry.py and test_docker_orchestrator.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

MUTANTS = Path(__file__).with_name("runtime_mutants.py")

# mutant -> the contract tests that must reject it (each one must fail)
REGISTRY = {
    "OciTagsFirst": ["test_a_failed_push_leaves_no_tag_and_the_next_push_completes"],
    "OciTrustsUnfinishedBlobs": ["test_a_failed_push_leaves_no_tag_and_the_next_push_completes"],
    "OciBuildsIgnoreVerified": ["test_builds_are_verified_builds_of_the_app_newest_first"],
    "OciBuildsAnyVerifiedValue": ["test_builds_are_verified_builds_of_the_app_newest_first"],
    "OciBuildsAppPrefix": ["test_builds_are_verified_builds_of_the_app_newest_first"],
    "OciCredentialsNone": ["test_credentials_are_what_a_pull_needs"],
    "OciLoginChecksNothing": ["test_login", "test_wrong_password_is_a_clear_auth_error"],
    "OciStreamSendsNothing": ["test_a_streamed_blob_is_held_counted_and_not_sent_again"],
    "OciStreamUncounted": ["test_a_streamed_blob_is_held_counted_and_not_sent_again"],
}
ORCHESTRATOR = {
    "DockerRollbackToOldest": ["test_update_then_rollback"],
    "DockerRollbackRestartsNewest": ["test_failed_deploy_raises_and_rollback_restores_previous"],
    "DockerStatusTrustsRunning": ["test_status_while_a_release_waits"],
    "DockerStatusReportsDesired": [
        "test_update_then_rollback",
        "test_failed_deploy_raises_and_rollback_restores_previous",
    ],
    "DockerRollbackForgetsFailures": ["test_failed_deploy_raises_and_rollback_restores_previous"],
    "DockerIgnoresPullCredentials": ["test_deploy_pulls_with_the_credentials_it_is_given"],
}
ATTRIBUTE = {"OciContract": "registry_class", "DockerContract": "orchestrator_class"}


def run_contract(pytester: pytest.Pytester, base: str, backend: str, tests: list[str]) -> set[str]:
    """Run ``tests`` of contract class ``base`` (from runtime_mutants) against ``backend``; the ids that failed."""
    pytester.makepyfile(runtime_mutants=MUTANTS.read_text())
    pytester.makepyfile(
        test_contract=f"""
from runtime_mutants import {base}, {backend}


class TestBackend({base}):
    {ATTRIBUTE[base]} = {backend}
"""
    )
    ids = [f"test_contract.py::TestBackend::{test}" for test in sorted(set(tests))]
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-rf", *ids)
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == len(ids), result.stdout.str()
    return {line.split(" ")[1] for line in result.stdout.lines if line.startswith("FAILED ")}


@pytest.mark.parametrize(
    ("base", "backend", "tests"),
    [
        ("OciContract", "OciRegistry", [t for ts in REGISTRY.values() for t in ts]),
        ("OciContract", "OciBuildsRewritten", ["test_builds_are_verified_builds_of_the_app_newest_first"]),
        ("DockerContract", "DockerOrchestrator", [t for ts in ORCHESTRATOR.values() for t in ts]),
    ],
    ids=["oci", "oci-builds-rewritten", "docker"],
)
def test_the_contract_accepts_the_unmutated_backend(
    pytester: pytest.Pytester, shipway_docker: None, base: str, backend: str, tests: list[str]
) -> None:
    assert run_contract(pytester, base, backend, tests) == set()


@pytest.mark.parametrize(
    ("base", "mutant"),
    [("OciContract", m) for m in REGISTRY] + [("DockerContract", m) for m in ORCHESTRATOR],
    ids=[*REGISTRY, *ORCHESTRATOR],
)
def test_the_contract_rejects_the_mutant(
    pytester: pytest.Pytester, shipway_docker: None, base: str, mutant: str
) -> None:
    expected = (REGISTRY if base == "OciContract" else ORCHESTRATOR)[mutant]
    failed = run_contract(pytester, base, mutant, expected)
    assert failed == {f"test_contract.py::TestBackend::{test}" for test in expected}
