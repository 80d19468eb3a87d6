"""shipway-aws is found like any third-party plugin: through its entry point, by the installed CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from shipway import plugins


def test_shipway_plugins_lists_s3_ecr_and_eks() -> None:
    env = {k: v for k, v in os.environ.items() if k != plugins.ENV_VAR}
    out = subprocess.run(
        [sys.executable, "-m", "shipway.cli", "plugins", "--json"], env=env, capture_output=True, text=True, check=True
    )
    found = {p["name"]: p for p in json.loads(out.stdout)}
    aws = found["aws"]
    assert aws["dist"] == "shipway-aws"
    assert aws["builtin"] is False
    assert aws["kinds"] == {"model_store": ["s3"], "registry": ["ecr"], "orchestrator": ["eks"]}
    assert aws["contract_version"] == 1


def test_the_kinds_name_their_distribution_when_it_is_missing() -> None:
    for kind in ("s3", "ecr", "eks"):
        assert plugins.KNOWN_PROVIDERS[kind] == "shipway-aws"
