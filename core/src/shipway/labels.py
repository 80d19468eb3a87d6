"""The OCI labels shipway writes on every image, and reading a build back from them."""

from __future__ import annotations

from shipway.domain import BuildRecord

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


def for_build(build: BuildRecord) -> dict[str, str]:
    """Labels that trace an image to its commit and model version.

    ``io.shipway.verified`` is set because shipway pushes an image only after
    its verify checks passed: every image carrying these labels in a registry
    is a verified build.
    """
    assert build.model is not None
    assert build.model_digest is not None
    labels = {
        TITLE: build.app,
        APP: build.app,
        REVISION: build.source.commit,
        CREATED: build.created.isoformat().replace("+00:00", "Z"),
        DIRTY: "true" if build.source.dirty else "false",
        MODEL_NAME: build.model.name,
        MODEL_VERSION: build.model.version,
        MODEL_DIGEST: build.model_digest,
        VERIFIED: "true",
    }
    if build.source.url:
        labels[SOURCE] = build.source.url
    if build.source.branch:
        labels[BRANCH] = build.source.branch
    return labels


def merge_extra(labels: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """Add plugin labels; shipway's own namespaces cannot be overridden."""
    out = dict(labels)
    for key, value in extra.items():
        if not key.startswith(RESERVED_PREFIXES):
            out[key] = str(value)
    return out
