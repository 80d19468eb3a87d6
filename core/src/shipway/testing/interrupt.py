"""Kill a real ``shipway`` process at a chosen point, as a crashed CI runner would.

``proc = spawn(project, "run")`` starts the CLI in an :class:`AppProject`;
``kill_when(proc, lambda: <a file exists>, timeout=60)`` polls the condition
and sends SIGKILL the moment it holds (no exception handler, no ``finally``
runs in shipway). The tests then check what the killed run left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from shipway.testing.project import AppProject

__all__ = ["NotReached", "kill_when", "spawn"]


class NotReached(AssertionError):
    """The process ended, or the time ran out, before the point to kill it at was reached."""


def spawn(project: AppProject, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``shipway ARGS`` in the project (stdout and stderr captured)."""
    return subprocess.Popen(
        [sys.executable, "-m", "shipway.cli", *args],
        cwd=project.root,
        env={**project.env, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_when(
    proc: subprocess.Popen[str], reached: Callable[[], bool], timeout: float, poll: float = 0.02
) -> tuple[str, str]:
    """SIGKILL ``proc`` as soon as ``reached()`` is true; returns its (stdout, stderr).

    Raises :class:`NotReached` (after killing it) if it exits first or ``timeout`` passes.
    """
    end = time.monotonic() + timeout
    while not reached():
        if proc.poll() is not None or time.monotonic() > end:
            why = f"exited with {proc.returncode}" if proc.poll() is not None else f"still running after {timeout}s"
            _kill(proc)
            out, err = proc.communicate(timeout=30)
            raise NotReached(f"shipway {why} before the point to kill it at:\n{out}{err}")
        time.sleep(poll)
    _kill(proc)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"shipway ended with {proc.returncode}, not by SIGKILL"
    print(f"[killed] shipway {' '.join(str(a) for a in proc.args[3:])}\n{out}{err}")  # type: ignore[index]
    return out, err


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
