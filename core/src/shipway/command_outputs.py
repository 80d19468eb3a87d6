"""What `run`, `release` and `rollback` print and write when they finish: the summary table and the report.

Registered on the plugin host by the CLI for one command, it listens to the
same hooks a plugin would (``shipway_run_finished``, ``shipway_release_finished``),
so it sees the record whether the command succeeded or failed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from shipway import report
from shipway.domain import BuildRecord, ReleaseRecord
from shipway.hookspecs import hookimpl
from shipway.progress import Reporter


def outcome(record: BuildRecord | ReleaseRecord) -> str:
    """``failed``, ``built``/``reused`` for a run; the release action for a release or rollback."""
    if isinstance(record, BuildRecord):
        return "failed" if record.status == "failed" else str(getattr(record, "action", "built"))
    return record.action


def summary_table(record: BuildRecord | ReleaseRecord, command: str) -> Table:
    """Stages, their status, time and detail; the outcome in the caption."""
    if isinstance(record, BuildRecord):
        target = str(record.image or record.local_image_id or "-")
        if record.model is not None:
            target += f"  (model {record.model.name}:{record.model.version})"
    else:
        target = f"{record.image or '-'} ({record.environment})"
    caption = f"{outcome(record)}: {target}"
    table = Table(title=f"shipway {command}: {record.app}", caption=caption, title_justify="left")
    for column in ("stage", "status", "time", "detail"):
        table.add_column(column, justify="right" if column == "time" else "left", overflow="fold")
    for s in record.stages:
        color = {"ok": "green", "failed": "red", "skipped": "yellow"}.get(s.status, "white")
        table.add_row(s.name, f"[{color}]{s.status}[/]", f"{s.seconds:.1f}s", s.detail)
    if record.checks:
        passed = sum(c.ok for c in record.checks)
        mark = "[green]ok[/]" if passed == len(record.checks) else "[red]failed[/]"
        table.add_row("checks", mark, "", f"{passed}/{len(record.checks)} passed")
    return table


def print_summary(reporter: Reporter, record: BuildRecord | ReleaseRecord, command: str) -> None:
    """The summary at the end of a command: a table for people, one JSON event for log collectors."""
    if reporter.quiet:
        return
    if reporter.json:
        data = record.model_dump(mode="json")
        reporter.event(
            "summary",
            "error" if record.error else "info",
            command=command,
            app=record.app,
            outcome=outcome(record),
            image=data.get("image"),
            stages=[{k: s[k] for k in ("name", "status", "seconds")} for s in data["stages"]],
            checks_passed=sum(c.ok for c in record.checks),
            checks=len(record.checks),
        )
        return
    reporter.console.print(summary_table(record, command))


def registry_layer_sizes(project: Any, record: BuildRecord) -> dict[str, int]:
    """diff ID → compressed size from the pushed image's manifest; empty when it cannot be read."""
    api = getattr(project.registry, "api", None)
    if record.image is None or record.image.digest is None or api is None:
        return {}
    try:
        repo = project.registry.settings.repository
        _, manifest = api.manifest(repo, record.image.digest)
        config = json.loads(api.blob(repo, manifest["config"]["digest"]))
        diff_ids = config["rootfs"]["diff_ids"]
        return {d: int(layer["size"]) for d, layer in zip(diff_ids, manifest["layers"], strict=True)}
    except Exception:  # noqa: BLE001 - sizes are a nicety of the report, never a reason to fail a run
        return {}


class CommandOutputs:
    """Hook implementations that print the summary and write the HTML report of one command."""

    def __init__(self, project: Any, command: str, report_path: Path | None, config_path: Path) -> None:
        self.project = project
        self.command = command
        self.report_path = report_path
        self.config_path = config_path

    def _finish(self, record: BuildRecord | ReleaseRecord) -> None:
        print_summary(self.project.reporter, record, self.command)
        if self.report_path is None:
            return
        layers: list[report.Layer] = []
        if isinstance(record, BuildRecord):
            sizes = registry_layer_sizes(self.project, record)
            layers = report.layers_for(record, self.project.records_dir, sizes)
        ctx = report.ReportContext(command=self.command, config=str(self.config_path), layers=layers)
        report.write(self.report_path, record, ctx)

    @hookimpl
    def shipway_run_finished(self, record: BuildRecord) -> None:
        self._finish(record)

    @hookimpl
    def shipway_release_finished(self, record: ReleaseRecord) -> None:
        self._finish(record)
