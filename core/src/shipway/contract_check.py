"""``shipway plugins --check KIND``: run the contract tests a plugin ships against the installed plugin.

A plugin names the module holding its contract test classes in
``SHIPWAY_CONTRACT_TESTS`` (the built-in ``local`` store:
``shipway.testing.local_contract``). The module runs under pytest in a fresh
folder, as a plugin author's CI would run it; the result is pass or fail,
not what the plugin declares.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from shipway.errors import ConfigError, PluginError, TestsFailed
from shipway.plugins import PluginInfo


def owner(host: Any, kind: str) -> tuple[PluginInfo, str]:
    """The plugin that registers backend ``kind``, and the section it is a kind of."""
    for info in host.plugins.values():
        for section, kinds in info.kinds.items():
            if kind in kinds:
                return info, section
    known = sorted(k for info in host.plugins.values() for ks in info.kinds.values() for k in ks)
    installed = ", ".join(known) or "none"
    raise PluginError(f"no installed plugin provides kind {kind[:80]!r} (installed kinds: {installed})")


def check(host: Any, kind: str, echo: Callable[[str], Any] | None = None) -> str:
    """Run the contract tests of the plugin providing ``kind``; the one-line result, or TestsFailed.

    ``echo`` receives pytest's output line by line (None: only the result is shown).
    """
    info, section = owner(host, kind)
    if info.contract_tests is None:
        raise ConfigError(
            f'plugin "{info.name}" ships no contract tests (no SHIPWAY_CONTRACT_TESTS in its module): '
            "run its own test suite with pytest"
        )
    if importlib.util.find_spec("pytest") is None:
        raise ConfigError("the contract check runs pytest: pip install pytest")
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--pyargs", info.contract_tests]
    with tempfile.TemporaryDirectory(prefix="shipway-check-") as folder:  # no project's pytest settings apply
        proc = subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if echo is not None:
                echo(lines[-1])
        code = proc.wait()
    summary = next((ln.strip("= ") for ln in reversed(lines) if re.search(r"\d+ (passed|failed|error)", ln)), "")
    what = f"{section} {kind} ({info.name}, contract v{info.contract_version or '?'} tests in {info.contract_tests})"
    if code != 0:
        raise TestsFailed(f"{what}: FAILED: {summary or f'pytest exited with {code}'}")
    return f"{what}: passed: {summary}"
