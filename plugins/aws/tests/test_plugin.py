"""shipway-aws is found like any third-party plugin: through its entry point, by the installed CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from shipway.errors import PluginError
from shipway.plugins import PluginHost


def test_shipway_plugins_lists_s3_ecr_and_eks() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SHIPWAY_PLUGINS"}  # every installed plugin
    out = subprocess.run(
        [sys.executable, "-m", "shipway.cli", "plugins", "--json"], env=env, capture_output=True, text=True, check=True
    )
    found = {p["name"]: p for p in json.loads(out.stdout)}
    aws = found["aws"]
    assert aws["dist"] == "shipway-aws"
    assert aws["builtin"] is False
    assert aws["kinds"] == {"model_store": ["s3"], "registry": ["ecr"], "orchestrator": ["eks"]}
    assert aws["contract_version"] == 2


def test_the_kinds_name_their_distribution_when_it_is_missing(shipway_load_plugins: Callable[..., PluginHost]) -> None:
    host = shipway_load_plugins("shipway-kubernetes")  # the built-ins and kubernetes: no shipway-aws
    for section, kind in (("model_store", "s3"), ("registry", "ecr"), ("orchestrator", "eks")):
        with pytest.raises(PluginError, match=r"provided by shipway-aws \(pip install shipway-aws\)"):
            host.backend_class(section, kind)
