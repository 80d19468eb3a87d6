"""What the tests ask the real engine about images shipway loaded ahead of the final image."""

from __future__ import annotations

import contextlib
from typing import Any

import docker.errors

from shipway import dockerutil, image


def preloads_topped_by(layer: str) -> list[dict[str, Any]]:
    """Inspections of the engine's model preloads (labelled images) whose top layer is ``layer``.

    Only labelled images are listed, so the engine filters (a CI engine holds
    thousands of intermediate build images: inspecting each took tens of
    seconds per call); one that goes between the listing and its inspection
    (another run's preload being dropped) is skipped, not an error.
    """
    api = dockerutil.client().api
    found = []
    for summary in api.images(all=True, filters={"label": image.PRELOAD_LABEL}):
        with contextlib.suppress(docker.errors.NotFound):
            attrs = api.inspect_image(summary["Id"])
            if attrs["RootFS"]["Layers"][-1:] == [layer]:
                found.append(attrs)
    return found
