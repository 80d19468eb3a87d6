"""Secrets as read-only files under ``/run/secrets`` for containers started on the local engine.

The app's secrets never become environment values, labels, build args or image
layers (all of which ``docker inspect`` or the image history shows). For the
containers shipway starts itself — the verify container and the ``docker``
orchestrator's revisions — each secret is written to a file in a private
folder on the host (mode 0700; the files 0444 so a non-root app user can read
them inside the container) and bind-mounted read-only at ``/run/secrets/<name>``,
the path Docker Swarm and Kubernetes (as shipway configures them) use too.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

MOUNT_DIR = "/run/secrets"


def write(secrets: Mapping[str, SecretStr], root: Path) -> Path | None:
    """Write each secret to a file in a new private folder under ``root``; None when there are none."""
    if not secrets:
        return None
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    folder = root / uuid.uuid4().hex
    folder.mkdir(mode=0o700)
    for name, value in secrets.items():
        path = folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(value.get_secret_value())
        os.chmod(path, 0o444)
    return folder


def volumes(folder: Path | None) -> dict[str, dict[str, str]]:
    """Docker SDK ``volumes=`` mapping each file of ``folder`` read-only to ``/run/secrets/<name>``."""
    if folder is None:
        return {}
    return {str(p): {"bind": f"{MOUNT_DIR}/{p.name}", "mode": "ro"} for p in sorted(folder.iterdir())}


def remove(folder: Path | str | None) -> None:
    """Delete a folder written by :func:`write` (a missing one is fine)."""
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
