"""The kit tests itself: the registry and orchestrator contracts reject backends broken one promise at a time.

Each mutant in ``runtime_mutants.py`` is a passing backend (the ``oci``
registry, the ``docker`` orchestrator) with one fault. The contract runs
against it limited to the tests that check the broken promise, and every one
of those must fail; the unmutated backends pass the same selection through
the same harness (their full contract runs in test_oci_registry.py and
test_docker_orchestrator.py). One subprocess runs them all (tests/contract_runs.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from contract_runs import Backend, Verdicts, run_contracts

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


UNMUTATED = {
    "oci": ("OciContract", "OciRegistry", [t for ts in REGISTRY.values() for t in ts]),
    "oci-builds-rewritten": (
        "OciContract",
        "OciBuildsRewritten",
        ["test_builds_are_verified_builds_of_the_app_newest_first"],
    ),
    "docker": ("DockerContract", "DockerOrchestrator", [t for ts in ORCHESTRATOR.values() for t in ts]),
}


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory, shipway_docker: None) -> Verdicts:
    """Every backend of this module, unmutated and mutated, limited to its selection, in one run."""
    backends, selection = [], {}
    for base, backend, tests in UNMUTATED.values():
        backends.append(Backend(f"Test{backend}", base, ATTRIBUTE[base], backend))
        selection[f"Test{backend}"] = sorted(set(tests))
    for base, mutants in (("OciContract", REGISTRY), ("DockerContract", ORCHESTRATOR)):
        for mutant, tests in mutants.items():
            backends.append(Backend(f"Test{mutant}", base, ATTRIBUTE[base], mutant))
            selection[f"Test{mutant}"] = sorted(set(tests))
    # Controls that run last: the shared registry and engine still serve an unmutated backend after the
    # mutants, so no mutant was "rejected" by a run whose services had gone bad.
    for name, (base, backend, test) in CONTROLS.items():
        backends.append(Backend(name, base, ATTRIBUTE[base], backend))
        selection[name] = [test]
    return run_contracts(tmp_path_factory.mktemp("runtime-contracts"), MUTANTS, backends, selection)


CONTROLS = {
    "TestOciRegistryLast": (
        "OciContract",
        "OciRegistry",
        "test_a_failed_push_leaves_no_tag_and_the_next_push_completes",
    ),
    "TestDockerOrchestratorLast": ("DockerContract", "DockerOrchestrator", "test_update_then_rollback"),
}


@pytest.mark.parametrize("name", list(UNMUTATED))
def test_the_contract_accepts_the_unmutated_backend(verdicts: Verdicts, name: str) -> None:
    _, backend, tests = UNMUTATED[name]
    assert verdicts.of(f"Test{backend}") == dict.fromkeys(tests, "passed"), verdicts.output


@pytest.mark.parametrize("name", list(CONTROLS))
def test_the_unmutated_backends_still_pass_after_the_mutants(verdicts: Verdicts, name: str) -> None:
    assert verdicts.of(name) == {CONTROLS[name][2]: "passed"}, verdicts.output


@pytest.mark.parametrize(
    ("mutant", "tests"), [*REGISTRY.items(), *ORCHESTRATOR.items()], ids=[*REGISTRY, *ORCHESTRATOR]
)
def test_the_contract_rejects_the_mutant(verdicts: Verdicts, mutant: str, tests: list[str]) -> None:
    assert verdicts.of(f"Test{mutant}") == dict.fromkeys(tests, "failed"), verdicts.output
