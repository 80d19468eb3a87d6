"""Commit, branch, dirty flag and (credential-free) remote URL of the app's source."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from shipway.context import ALWAYS_SKIPPED
from shipway.domain import SourceInfo


def _git(cwd: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def strip_credentials(url: str) -> str:
    """``https://user:token@host/x`` → ``https://host/x``; never record a secret."""
    return re.sub(r"^([a-z][a-z0-9+.-]*://)[^@/]*@", r"\1", url)


def source_info(path: Path) -> SourceInfo:
    """Describe the commit checked out at ``path``; outside git: commit "unknown", dirty."""
    commit = _git(path, "rev-parse", "HEAD")
    if commit is None:
        return SourceInfo(commit="unknown", dirty=True)
    # What never enters a build context (shipway's records in .shipway/, bytecode and test caches the test
    # stage may write, virtualenvs) never makes a tree dirty either, .gitignore or not.
    skipped = [f":(exclude,glob)**/{name}/**" for name in ALWAYS_SKIPPED]
    status = _git(path, "status", "--porcelain", "--untracked-files=normal", "--", ".", *skipped)
    branch = _git(path, "rev-parse", "--abbrev-ref", "HEAD")
    url = _git(path, "remote", "get-url", "origin")
    epoch = _git(path, "show", "-s", "--format=%ct", "HEAD")
    return SourceInfo(
        commit=commit,
        dirty=bool(status),
        committed=datetime.fromtimestamp(int(epoch), UTC) if epoch and epoch.isdigit() else None,
        branch=None if branch in (None, "HEAD") else branch,
        url=strip_credentials(url) if url else None,
    )
