"""Headless Chromium (Debian's `chromium`) for report tests: a screenshot and the page's text."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is not installed: scripts/bootstrap.sh installs Debian's chromium", pytrace=False)
    return found


class _Text(HTMLParser):
    """The visible text of a DOM dump (no style/script/title content)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "title", "head"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "title", "head"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def _run(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def render(page: Path, screenshot: Path, workdir: Path, width: int = 1280, height: int = 1400) -> str:
    """Screenshot ``page`` into ``screenshot`` and return the text of the DOM Chromium built from it."""
    shot = _run(page, workdir / "profile-shot", f"--screenshot={screenshot}", f"--window-size={width},{height}")
    assert screenshot.is_file(), f"chromium wrote no screenshot:\n{shot.stderr[-2000:]}"
    dom = _run(page, workdir / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    parser = _Text()
    parser.feed(dom.stdout)
    return " ".join(" ".join(parser.parts).split())
