"""JUnit XML for CI systems: one test case per stage and per verify check."""

from __future__ import annotations

from pathlib import Path

from shipway.domain import CheckResult, StageResult


def write(path: Path, suite: str, stages: list[StageResult], checks: list[CheckResult], error: str | None) -> None:
    """Write a JUnit report; a failed stage carries the error that ended the command."""
    import xml.etree.ElementTree as ET  # only a run asked for --junit loads it

    root = ET.Element("testsuites")
    failures = sum(s.status == "failed" for s in stages) + sum(not c.ok for c in checks)
    skipped = sum(s.status == "skipped" for s in stages)
    node = ET.SubElement(
        root,
        "testsuite",
        name=suite,
        tests=str(len(stages) + len(checks)),
        failures=str(failures),
        skipped=str(skipped),
        time=f"{sum(s.seconds for s in stages):.3f}",
    )
    for stage in stages:
        case = ET.SubElement(node, "testcase", classname=suite, name=stage.name, time=f"{stage.seconds:.3f}")
        if stage.status == "failed":
            ET.SubElement(case, "failure", message=stage.detail).text = error or stage.detail
        elif stage.status == "skipped":
            ET.SubElement(case, "skipped", message=stage.detail)
    for check in checks:
        case = ET.SubElement(node, "testcase", classname=f"{suite}.verify", name=check.check)
        if not check.ok:
            ET.SubElement(case, "failure", message=check.detail)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
