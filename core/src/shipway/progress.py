"""Human progress on a terminal, plain lines elsewhere (CI logs), or JSON lines for log collectors."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rich.console import Console


class ByteProgress(Protocol):
    def advance(self, n: int) -> None: ...


class _NullBytes:
    def advance(self, n: int) -> None:
        pass


class Reporter:
    """Prints what shipway is doing. Rich output on a TTY; plain, timestamp-free lines otherwise.

    ``log_format="json"``: one JSON object per line on stderr instead (``{"ts", "level", "event", ...}``),
    for CI log collectors; no bars, no colours. ``silent``: quiet, and its console prints nothing.
    """

    def __init__(
        self, console: Console | None = None, quiet: bool = False, log_format: str = "text", silent: bool = False
    ) -> None:
        self._console = console
        self._silent = silent
        self.quiet = quiet or silent
        self.json = log_format == "json"

    @property
    def console(self) -> Console:
        """The rich console on stderr, made on first use (importing rich costs every command start-up time)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False, quiet=self._silent)
        return self._console

    @property
    def interactive(self) -> bool:
        return self.console.is_terminal and not self.json

    def event(self, event: str, level: str = "info", **fields: object) -> None:
        """One JSON log line (json format only): timestamp, level, event name and fields."""
        line: dict[str, object] = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "level": level}
        line["event"] = event
        line.update(fields)
        print(json.dumps(line, default=str), file=sys.stderr, flush=True)

    def info(self, message: str) -> None:
        if self.quiet:
            return
        if self.json:
            self.event("message", message=message)
        elif self.interactive:
            self.console.print(message, markup=False)
        else:
            print(message, file=sys.stderr, flush=True)

    def stage(self, name: str, status: str, seconds: float, detail: str = "") -> None:
        if self.json:
            if not self.quiet or status == "failed":
                level = "error" if status == "failed" else "info"
                self.event("stage", level, stage=name, status=status, seconds=seconds, detail=detail)
            return
        mark = {"ok": "✓", "failed": "✗", "skipped": "-"}.get(status, "·")
        line = f"{mark} {name:<8} {status:<7} {seconds:6.1f}s"
        if detail:
            line += f"  {detail}"
        if self.interactive:
            color = {"ok": "green", "failed": "red", "skipped": "yellow"}.get(status, "white")
            self.console.print(f"[{color}]{mark}[/] {name:<8} {status:<7} {seconds:6.1f}s  ", end="")
            self.console.print(detail, markup=False)
        elif not self.quiet or status == "failed":
            print(line, file=sys.stderr, flush=True)

    @contextmanager
    def bytes(self, description: str, total: int, summary: bool = True) -> Iterator[ByteProgress]:
        """A byte progress bar on a terminal; one summary line otherwise (unless ``summary`` is False)."""
        start = time.monotonic()
        if self.interactive and not self.quiet:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
            )
            with Progress(*columns, console=self.console, transient=True) as bar:
                task = bar.add_task(description, total=total)

                class _Bar:
                    def advance(self, n: int) -> None:
                        bar.advance(task, n)

                yield _Bar()
        else:
            yield _NullBytes()
        if summary and total and not self.quiet:
            took = time.monotonic() - start
            if self.json:
                self.event("transfer", what=description, bytes=total, seconds=round(took, 3))
            else:
                self.info(f"  {description}: {total / 1e6:.1f} MB in {took:.1f}s")


NULL_REPORTER = Reporter(silent=True)
