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
MODEL_TAG_PREFIX = "model-"


def digest(parts: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of the inputs (with shipway's build format version)."""
    body = {"format": BUILD_FORMAT, **parts}
    return "sha256:" + hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def tag(inputs_digest: str) -> str:
    """The registry tag of the verified build of these inputs."""
    return TAG_PREFIX + inputs_digest.split(":", 1)[1][:48]


def model_tag(layer_key: str) -> str:
    """The registry tag that says the repository holds a model layer: it names the first pushed image with it.

    ``layer_key`` is :func:`shipway.layers.layer_key` (the files and the
    folder), known from the model version before any byte is fetched: a run
    on a fresh runner asks for this tag (one manifest request) to learn
    whether the model layer must be uploaded at all.
    """
    return MODEL_TAG_PREFIX + layer_key[:48]


def is_lookup_tag(name: str) -> bool:
    """Whether ``name`` is one of shipway's lookup tags (same inputs, model layer) rather than a readable one."""
    return name.startswith((TAG_PREFIX, MODEL_TAG_PREFIX))
