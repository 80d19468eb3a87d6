"""The OCI labels shipway writes on every image, and reading a build back from them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from shipway.domain import BuildRecord

if TYPE_CHECKING:
    import pluggy

REVISION = "org.opencontainers.image.revision"
SOURCE = "org.opencontainers.image.source"
CREATED = "org.opencontainers.image.created"
TITLE = "org.opencontainers.image.title"
APP = "io.shipway.app"
DIRTY = "io.shipway.dirty"
BRANCH = "io.shipway.branch"
MODEL_NAME = "io.shipway.model.name"
MODEL_VERSION = "io.shipway.model.version"
MODEL_DIGEST = "io.shipway.model.digest"
VERIFIED = "io.shipway.verified"

# The labels that say what is live: shown by `shipway status`.
TRACE = (REVISION, CREATED, MODEL_NAME, MODEL_VERSION, MODEL_DIGEST)

RESERVED_PREFIXES = ("org.opencontainers.image.", "io.shipway.")


def source_date(build: BuildRecord, environ: Mapping[str, str] | None = None) -> datetime:
    """The time an image says it was made: a function of its inputs, never of the build's clock.

    ``SOURCE_DATE_EPOCH`` when set; for a clean tree the later of the commit
    time and the model version's time (so a model-only change sorts as newer);
    a dirty tree has no reproducible date and gets the build time.
    """
    env = os.environ if environ is None else environ
    epoch = env.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), UTC)
    if build.source.dirty or build.source.committed is None:
        return build.created.replace(microsecond=0)
    found = build.source.committed
    if build.model is not None and build.model.created > found:
        found = build.model.created
    return found.astimezone(UTC).replace(microsecond=0)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def for_build(build: BuildRecord, created: datetime | None = None) -> dict[str, str]:
    """Labels that trace an image to its commit and model version.

    ``io.shipway.verified`` is set because shipway pushes an image only after
    its verify checks passed: every image carrying these labels in a registry
    is a verified build. Nothing here changes between two builds of the same
    inputs (no build time, no branch name), so identical builds stay identical.
    """
    assert build.model is not None
    assert build.model_digest is not None
    labels = {
        TITLE: build.app,
        APP: build.app,
        REVISION: build.source.commit,
        CREATED: iso(created or source_date(build)),
        DIRTY: "true" if build.source.dirty else "false",
        MODEL_NAME: build.model.name,
        MODEL_VERSION: build.model.version,
        MODEL_DIGEST: build.model_digest,
        VERIFIED: "true",
    }
    if build.source.url:
        labels[SOURCE] = build.source.url
    return labels


def for_image(build: BuildRecord, created: datetime, hook: pluggy.HookRelay) -> dict[str, str]:
    """The labels an image gets: :func:`for_build`, plus each plugin's ``shipway_build_labels`` (never over ours)."""
    labels = for_build(build, created)
    for extra in hook.shipway_build_labels(build=build):
        labels = merge_extra(labels, extra or {})
    return labels


def merge_extra(labels: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """Add plugin labels; shipway's own namespaces cannot be overridden."""
    out = dict(labels)
    for key, value in extra.items():
        if not key.startswith(RESERVED_PREFIXES):
            out[key] = str(value)
    return out
