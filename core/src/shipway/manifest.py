"""An image as the registry sees it: a config blob, layer blobs, and the manifest naming them.

Pure data: no engine, no network. The builder assembles one, the registry
backends push it (only the blobs the registry lacks), and its ``digest`` is
what orchestrators pull.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_V1 = "application/vnd.docker.container.image.v1+json"
LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
"""Uncompressed layers: the blob digest is the diff ID, so it is known before a byte moves."""
LAYER_TAR_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    """A layer blob: digest, size, media type, and how to read its bytes (None if not at hand)."""

    digest: str
    size: int
    media_type: str = LAYER_TAR
    opener: Callable[[], Iterable[bytes]] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Image:
    """A config blob plus layer blobs, in order; ``local_id`` names it in the Docker engine."""

    config: bytes
    layers: tuple[Blob, ...]
    local_id: str = ""

    @property
    def config_digest(self) -> str:
        """Also the image ID in the Docker engine."""
        return sha256(self.config)

    @property
    def config_blob(self) -> Blob:
        data = self.config
        return Blob(self.config_digest, len(data), CONFIG_V1, opener=lambda: [data])

    def manifest(self) -> bytes:
        """The schema 2 manifest, serialised canonically (so one image has one digest)."""
        body = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": {"mediaType": CONFIG_V1, "size": len(self.config), "digest": self.config_digest},
            "layers": [{"mediaType": b.media_type, "size": b.size, "digest": b.digest} for b in self.layers],
        }
        return json.dumps(body, indent=3).encode()

    @property
    def digest(self) -> str:
        """The manifest digest: what a registry returns and orchestrators pull by."""
        return sha256(self.manifest())
