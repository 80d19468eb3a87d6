"""Run a contract against many backends in one pytest subprocess: each backend a test class of its own.

The kit's self-tests run the contracts against deliberately broken backends
(mutants). One subprocess per mutant paid pytest's and the kit's start-up, and
a registry's, every time; here every backend of a module shares one run, and
each test reads its own verdicts from it.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Backend:
    """A test class ``name`` running contract ``base`` with ``attribute = backend`` (all from the support module)."""

    name: str
    base: str
    attribute: str
    backend: str


@dataclass(frozen=True)
class Verdicts:
    """The outcome of every test that ran (``test_contract.py::Class::test`` → passed, failed, error or skipped)."""

    outcomes: dict[str, str]
    output: str

    def of(self, backend: str) -> dict[str, str]:
        """The outcomes of one backend's class, by test name."""
        prefix = f"test_contract.py::{backend}::"
        return {k.removeprefix(prefix): v for k, v in self.outcomes.items() if k.startswith(prefix)}


def run_contracts(folder: Path, support: Path, backends: list[Backend], selection: dict[str, list[str]]) -> Verdicts:
    """Run ``selection`` (backend name → test names; an empty list: the whole contract) in one subprocess."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / support.name).write_text(support.read_text())
    imports = sorted({b.base for b in backends} | {b.backend for b in backends})
    lines = [f"from {support.stem} import {', '.join(imports)}", ""]
    for b in backends:
        lines += ["", f"class {b.name}({b.base}):", f"    {b.attribute} = {b.backend}", ""]
    (folder / "test_contract.py").write_text("\n".join(lines))
    ids: list[str] = []
    for name, tests in selection.items():
        ids += [f"test_contract.py::{name}::{t}" for t in tests] or [f"test_contract.py::{name}"]
    report = folder / "report.xml"
    options = ["-p", "no:cacheprovider", "-q", "-rfE", f"--junitxml={report}", f"--basetemp={folder / 'tmp'}"]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *options, *ids],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    output = proc.stdout + proc.stderr
    if not report.is_file():
        raise AssertionError(f"the contract run wrote no report (exit {proc.returncode}):\n{output}")
    # A test that fails and then errors in its teardown has two testcase elements: it failed.
    found: dict[str, set[str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        cls = case.get("classname", "").rpartition(".")[2]
        found.setdefault(f"test_contract.py::{cls}::{case.get('name')}", set()).update(c.tag for c in case)
    outcomes = {test: _outcome(tags) for test, tags in found.items()}
    return Verdicts(outcomes, output)


def _outcome(tags: set[str]) -> str:
    if "failure" in tags:
        return "failed"
    return next((o for o in ("error", "skipped") if o in tags), "passed")
