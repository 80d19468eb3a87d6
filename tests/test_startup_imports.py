"""Start-up paths import no SDK they do not need (issue 11: `shipway --help` and `validate` stay fast).

Each command runs in a fresh interpreter, exactly as the console script runs
it; the child reports which of the watched top-level packages ended up in
``sys.modules``. Nothing here is timed: ``bench/startup.py`` measures the time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCAL_CONFIG = REPO / "examples" / "flask_app" / "shipway.yaml"  # local store, oci registry, docker engine
CLOUD_SDKS = ("azure", "boto3", "botocore", "kubernetes")
# What a backend needs once it talks to something: the Docker SDK, HTTP, retries, file locks.
CALL_LIBRARIES = ("docker", "requests", "urllib3", "tenacity", "filelock")
# Every in-repo plugin, installed by tox (README: scripts/test.sh), so the checks below cover their modules too.
IN_REPO_PLUGINS = (
    "shipway_kubernetes",
    "shipway_azure",
    "shipway_aws",
    "shipway_swarm",
    "shipway_http_store",
    "shipway_sqlite_store",
)
WATCHED = (*CLOUD_SDKS, *CALL_LIBRARIES, *IN_REPO_PLUGINS, "rich", "shipway.engine")

CHILD = """
import json, sys
from shipway.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
watched = {watched!r}
loaded = sorted(w for w in watched if w in sys.modules)
print("\\nLOADED=" + json.dumps(loaded))
"""


def imported_by(*argv: str) -> set[str]:
    """The watched modules a fresh ``shipway ARGV...`` process imported (it must succeed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPWAY_")}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD.format(watched=WATCHED), *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    marker = [line for line in proc.stdout.splitlines() if line.startswith("LOADED=")]
    assert marker, f"the child did not report: {proc.stdout[-500:]} {proc.stderr[-500:]}"
    return set(json.loads(marker[-1].removeprefix("LOADED=")))


def test_help_imports_no_sdk_and_no_backend() -> None:
    loaded = imported_by("--help")
    assert loaded == set(), f"`shipway --help` imported {sorted(loaded)}"


@pytest.mark.parametrize("argv", [["validate", "-c", str(LOCAL_CONFIG)], ["plugins"]])
def test_local_config_paths_import_no_cloud_sdk_and_no_rich(argv: list[str]) -> None:
    loaded = imported_by(*argv)
    assert not loaded & set(CLOUD_SDKS), f"`shipway {argv[0]}` imported cloud SDKs {sorted(loaded & set(CLOUD_SDKS))}"
    # rich (the console, progress bars) is for commands that print progress, not for a check of the config
    assert "rich" not in loaded, f"`shipway {argv[0]}` imported {sorted(loaded)}"


@pytest.mark.parametrize("argv", [["validate", "-c", str(LOCAL_CONFIG)], ["plugins"]])
def test_config_paths_load_no_library_a_backend_calls_with(argv: list[str]) -> None:
    # Every installed plugin loads here (the test environment has them all): their backend modules import
    # the Docker SDK, requests, tenacity and filelock where a call needs them, so reading a config does not.
    loaded = imported_by(*argv)
    missing = set(IN_REPO_PLUGINS) - loaded
    assert not missing, f"not loaded, so not checked: {sorted(missing)} (run the tests as README says: tox)"
    assert not loaded & set(CALL_LIBRARIES), f"`shipway {argv[0]}` imported {sorted(loaded & set(CALL_LIBRARIES))}"


def test_validate_reads_the_config_without_the_engine() -> None:
    # validate checks the file; the engine (and the builder it imports) is for commands that run
    loaded = imported_by("validate", "-c", str(LOCAL_CONFIG))
    assert "shipway.engine" not in loaded, f"`shipway validate` imported {sorted(loaded)}"
