"""What an orchestrator keeps on this host unless it overrides it: failed digests in a file, a lock file.

The defaults behind :meth:`Orchestrator.failed_digests`, :meth:`Orchestrator.mark_failed`
and :meth:`Orchestrator.lock` for orchestrators whose releases run on one host
(``docker``); those that span hosts keep both where every runner sees them.
Internal: plugins call the ``Orchestrator`` methods, not this module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from shipway.errors import LockedError

if TYPE_CHECKING:
    from filelock import FileLock


def read_failed(path: Path) -> dict[str, str]:
    """The failed digests recorded in ``path`` (digest -> reason), oldest first; none when there is no file."""
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def write_failed(path: Path, found: dict[str, str]) -> None:
    """Replace the record in ``path`` with ``found``, atomically (a reader sees the old or the new list)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(found, indent=2))
    os.replace(partial, path)


def file_lock(path: Path, timeout: float = -1) -> FileLock:
    """An inter-process lock on the file ``path`` (``timeout`` -1 waits as long as it takes)."""
    from filelock import FileLock  # loaded by the first lock, not with every backend module

    return FileLock(str(path), timeout=timeout)


@contextmanager
def host_lock(path: Path, busy: str) -> Iterator[None]:
    """Hold the lock file ``path`` for the block; LockedError(``busy``) at once if another process holds it."""
    from filelock import Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = file_lock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise LockedError(busy) from None
    try:
        yield
    finally:
        lock.release()
