"""The Docker engine connection and reading its streamed JSON (which hides errors)."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from shipway.errors import AuthError, BackendError

if TYPE_CHECKING:
    import docker

_AUTH_WORDS = ("unauthorized", "authentication required", "denied", "no basic auth credentials")


@functools.lru_cache(maxsize=1)
def client() -> docker.DockerClient:
    """A Docker client from the environment (DOCKER_HOST etc.), or a clear BackendError."""
    import docker  # loaded by the first engine call, not by every module that may make one

    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        c = docker.from_env(timeout=300)
        c.ping()
    except docker.errors.DockerException as exc:
        raise BackendError(
            f"cannot reach the Docker engine at {where}: {exc}. "
            "Start it (scripts/services.sh starts one) or set DOCKER_HOST."
        ) from None
    return c


def is_auth_error(message: str) -> bool:
    text = message.lower()
    return any(word in text for word in _AUTH_WORDS)


def follow(stream: Iterable[dict[str, Any]], what: str) -> list[dict[str, Any]]:
    """Consume a decoded engine stream, raising on the first ``error`` entry.

    ``docker push`` and ``pull`` report failures inside the stream rather than
    by status code, so every stream is read to its end through here.
    """
    events = []
    for event in stream:
        events.append(event)
        error = event.get("error") or (event.get("errorDetail") or {}).get("message")
        if error:
            cls = AuthError if is_auth_error(str(error)) else BackendError
            raise cls(f"{what} failed: {str(error).strip()}")
    return events
