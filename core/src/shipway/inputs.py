"""The inputs of a build, and the one digest that names them.

Two runs with the same inputs make the same image, so the second one builds
nothing: it asks the registry for the tag derived from this digest (one
manifest request) and reuses the verified build it names.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

BUILD_FORMAT = "shipway-build/2"
"""Bumped whenever shipway would assemble different bytes from the same inputs."""

TAG_PREFIX = "inputs-"


def digest(parts: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of the inputs (with shipway's build format version)."""
    body = {"format": BUILD_FORMAT, **parts}
    return "sha256:" + hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def tag(inputs_digest: str) -> str:
    """The registry tag of the verified build of these inputs."""
    return TAG_PREFIX + inputs_digest.split(":", 1)[1][:48]


def is_inputs_tag(name: str) -> bool:
    return name.startswith(TAG_PREFIX)
