"""The HTML report, the summary table and JSON log lines, rendered and read back (headless Chromium)."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path

from browser import render
from rich.console import Console

from shipway import report
from shipway.command_outputs import print_summary
from shipway.domain import (
    BuildRecord,
    CheckResult,
    ImageRef,
    ModelFile,
    ModelVersion,
    ReleaseRecord,
    SourceInfo,
    StageResult,
)
from shipway.progress import Reporter

LAYERS = ["sha256:" + c * 64 for c in "abc"]


def build_record(status: str = "ok") -> BuildRecord:
    model = ModelVersion(
        name="tiny-weights",
        version="7",
        created=datetime(2026, 11, 1, tzinfo=UTC),
        files=(ModelFile(path="weights.json", size=2048, sha256="d" * 64),),
    )
    return BuildRecord(
        app="scorer-svc",
        source=SourceInfo(commit="1234567890abcdef1234567890abcdef12345678", dirty=False, branch="main"),
        model=model,
        model_digest=model.digest,
        image=ImageRef(repository="127.0.0.1:5000/scorer-svc", tag="1234567890ab-m7", digest="sha256:" + "e" * 64),
        layers=LAYERS,
        stages=[
            StageResult(name="test", status="ok", seconds=1.5, detail="python3 -m pytest"),
            StageResult(name="build", status="ok", seconds=12.25, detail="3 layers"),
            StageResult(name="verify", status=status, seconds=2.0, detail="2 checks"),
        ],
        checks=[
            CheckResult(check="GET /ready", ok=True, detail="status 200", response='{"ready": true}'),
            CheckResult(
                check="POST /predict",
                ok=status == "ok",
                detail="$.label: expected 7, got 1",
                response='<script>alert("x")</script> {"label": 1}',
            ),
        ],
        status="ok" if status == "ok" else "failed",
        error=None if status == "ok" else "1 of 2 verify checks failed",
    )


def write(tmp_path: Path, record: BuildRecord | ReleaseRecord, layers: list[report.Layer] | None = None) -> Path:
    path = tmp_path / "report.html"
    report.write(path, record, report.ReportContext(command="run", config="shipway.yaml", layers=layers or []))
    return path


def test_report_is_self_contained(tmp_path: Path) -> None:
    text = write(tmp_path, build_record()).read_text()
    assert re.findall(r"""(?:src|href)\s*=|@import|url\(""", text) == []


def test_response_is_escaped_not_run(tmp_path: Path) -> None:
    text = write(tmp_path, build_record()).read_text()
    assert "<script>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text


def test_layers_reused_from_the_previous_build(tmp_path: Path) -> None:
    records = tmp_path / ".shipway"
    (records / "builds").mkdir(parents=True)
    earlier = build_record().model_copy(update={"created": datetime(2026, 1, 1, tzinfo=UTC), "layers": LAYERS[:2]})
    (records / "builds" / "20260101T000000-a.json").write_text(earlier.model_dump_json())
    found = report.layers_for(build_record(), records, {LAYERS[0]: 1234})
    assert [(layer.state, layer.size) for layer in found] == [("reused", 1234), ("reused", None), ("new", None)]


def test_layers_without_a_previous_build_say_nothing(tmp_path: Path) -> None:
    assert {layer.state for layer in report.layers_for(build_record(), tmp_path, {})} == {""}


def test_build_report_in_chromium(tmp_path: Path) -> None:
    layers = [report.Layer(LAYERS[0], 31_000_000, "reused"), report.Layer(LAYERS[1], 2_048, "new")]
    page = write(tmp_path, build_record(), layers)
    text = render(page, tmp_path / "shot.png", tmp_path)
    assert (tmp_path / "shot.png").stat().st_size > 10_000
    for fact in (
        "shipway run: scorer-svc",
        "tiny-weights version 7",
        "1234567890abcdef1234567890abcdef12345678",
        "GET /ready",
        '{"ready": true}',
        '<script>alert("x")</script> {"label": 1}',
        "31.0 MB",
        "reused",
        "12.2 s",
    ):
        assert fact in text, fact


def test_failed_build_report_shows_the_error(tmp_path: Path) -> None:
    text = render(write(tmp_path, build_record("failed")), tmp_path / "shot.png", tmp_path)
    assert "1 of 2 verify checks failed" in text
    assert "$.label: expected 7, got 1" in text


def test_release_report_in_chromium(tmp_path: Path) -> None:
    record = ReleaseRecord(
        app="scorer-svc",
        environment="staging",
        image=ImageRef(repository="r/scorer-svc", digest="sha256:" + "1" * 64),
        previous=ImageRef(repository="r/scorer-svc", digest="sha256:" + "2" * 64),
        action="rolled_back",
        stages=[StageResult(name="deploy", status="failed", seconds=30.0, detail="unhealthy")],
        error="release failed and was rolled back",
    )
    text = render(write(tmp_path, record), tmp_path / "shot.png", tmp_path)
    assert ("rolled_back" in text, "staging" in text, "sha256:" + "2" * 64 in text) == (True, True, True)


def test_summary_table_lists_stages_and_checks() -> None:
    out = io.StringIO()
    reporter = Reporter(Console(file=out, width=140, force_terminal=False))
    print_summary(reporter, build_record(), "run")
    text = out.getvalue()
    assert ("build" in text, "12.2s" in text, "2/2 passed" in text, "tiny-weights:7" in text) == (True,) * 4


def test_summary_is_one_json_event(capsys: object) -> None:
    reporter = Reporter(log_format="json")
    print_summary(reporter, build_record("failed"), "run")
    line = json.loads(capsys.readouterr().err.strip())  # type: ignore[attr-defined]
    assert (line["event"], line["level"], line["outcome"], line["checks_passed"]) == ("summary", "error", "failed", 1)


def test_json_log_lines(capsys: object) -> None:
    reporter = Reporter(log_format="json")
    reporter.stage("build", "ok", 1.25, "3 layers")
    reporter.info("pushing")
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]  # type: ignore[attr-defined]
    assert [(x["event"], x.get("stage"), x.get("message")) for x in lines] == [
        ("stage", "build", None),
        ("message", None, "pushing"),
    ]
    assert lines[0]["seconds"] == 1.25


def test_error_is_a_json_line_with_the_exit_code(tmp_path: Path, capsys: object) -> None:
    from shipway.cli import main

    missing = tmp_path / "none.yaml"
    assert main(["validate", "-c", str(missing), "--log-format", "json"]) == 2
    line = json.loads(capsys.readouterr().err.strip())  # type: ignore[attr-defined]
    assert (line["event"], line["level"], line["exit_code"]) == ("error", "error", 2)
    assert f"{missing}: file not found" in line["message"]
