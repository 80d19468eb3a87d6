#!/usr/bin/env python3
"""Print the Debian mirror this machine's apt already uses for SUITE (default bookworm).

scripts/services.sh gives it to debootstrap, so a machine behind a company
mirror or proxy builds the base image from the same place apt installs from.
Order: $SHIPWAY_DEBIAN_MIRROR; deb822 ``*.sources`` files (``URIs:``); one-line
``sources.list`` and ``*.list`` files. $SHIPWAY_APT_ETC replaces /etc/apt (tests).
Exit 1 with a message naming SHIPWAY_DEBIAN_MIRROR when nothing is found.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _deb822(text: str) -> list[dict[str, str]]:
    """Paragraphs of a deb822 file as field → value (continuation lines joined, comments dropped)."""
    paragraphs: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    last = ""
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if fields:
                paragraphs.append(fields)
            fields, last = {}, ""
        elif line.startswith("#"):
            continue
        elif line[0] in " \t" and last:
            fields[last] += " " + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            last = key.strip().lower()
            fields[last] = value.strip()
    return paragraphs


def _one_line(text: str) -> list[tuple[str, str]]:
    """(URI, suite) of each ``deb [options] URI SUITE COMPONENTS`` line."""
    found = []
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2:
            found.append((words[0], words[1]))
    return found


def mirror(apt_etc: Path, suite: str) -> str | None:
    """The first apt source of type ``deb`` that serves ``suite``, or None."""
    parts = apt_etc / "sources.list.d"
    for path in sorted(parts.glob("*.sources")):
        for p in _deb822(path.read_text(errors="replace")):
            if p.get("enabled", "yes").lower() == "no" or "deb" not in p.get("types", "").split():
                continue
            if suite in p.get("suites", "").split() and p.get("uris"):
                return p["uris"].split()[0]
    for path in [apt_etc / "sources.list", *sorted(parts.glob("*.list"))]:
        if path.is_file():
            for uri, found_suite in _one_line(path.read_text(errors="replace")):
                if found_suite == suite:
                    return uri
    return None


def main() -> int:
    """Print the mirror; 1 with a message when there is none."""
    suite = sys.argv[1] if len(sys.argv) > 1 else "bookworm"
    chosen = os.environ.get("SHIPWAY_DEBIAN_MIRROR") or mirror(
        Path(os.environ.get("SHIPWAY_APT_ETC", "/etc/apt")), suite
    )
    if not chosen:
        print(
            f"no apt source serves {suite!r} in /etc/apt/sources.list(.d): "
            "set SHIPWAY_DEBIAN_MIRROR to a Debian mirror",
            file=sys.stderr,
        )
        return 1
    print(chosen.rstrip("/"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
