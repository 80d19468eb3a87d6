"""What a release in progress leaves on this host, so the next command knows if it was killed.

``shipway release`` writes ``<cache>/releases-in-progress/<app>-<environment>.json``
under the release lock, before it deploys, and removes it when the release
ends in any way short of the process being killed. A file whose process is gone
means a release stopped between its deploy and its checks: what is live may
never have been checked. ``release`` then checks it first (and rolls back if the
checks fail); ``status`` says so.
"""

from __future__ import annotations

import json
import os
import re
import socket
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from shipway.domain import utcnow


@dataclass(frozen=True)
class Unfinished:
    """A release that started on this host and whose process is gone."""

    image: str
    previous: str | None
    started: str
    pid: int
    host: str

    def describe(self) -> str:
        return f"the release of {self.image} started {self.started} (pid {self.pid}) did not finish"


def _path(cache_dir: Path, app: str, environment: str) -> Path:
    return cache_dir / "releases-in-progress" / f"{app}-{environment}.json"


def begin(cache_dir: Path, app: str, environment: str, image: str, previous: str | None) -> Path:
    """Note that this process starts releasing ``image``; returns the file for :func:`end`."""
    path = _path(cache_dir, app, environment)
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = Unfinished(image, previous, utcnow().isoformat(timespec="seconds"), os.getpid(), socket.gethostname())
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(asdict(entry)))
    os.replace(tmp, path)
    return path


def end(path: Path) -> None:
    path.unlink(missing_ok=True)


def clear(cache_dir: Path, app: str, environment: str) -> None:
    end(_path(cache_dir, app, environment))


def unfinished(cache_dir: Path, app: str, environment: str) -> Unfinished | None:
    """The release of this app and environment that was killed on this host, if any.

    A release whose process still runs (it holds the lock) is not unfinished, and
    neither is one noted on another host (its process cannot be asked).
    """
    try:
        entry = Unfinished(**json.loads(_path(cache_dir, app, environment).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return entry if gone(entry.host, entry.pid) else None


def gone(host: str, pid: int) -> bool:
    """Whether process ``pid`` of ``host`` is known to have ended (only this host's processes can be asked)."""
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def tag_host() -> str:
    """This host's name as a Docker tag allows it: what tags that name a run of this host carry."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:80]
