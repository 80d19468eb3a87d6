"""The Secrets shipway keeps in a cluster: registry pull credentials and the app's secret files.

Neither is part of the rendered manifests (``render``/plan output): they hold
values, and are built here only at deploy time, applied with server-side apply,
and never logged. The Deployment refers to them by name only.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from shipway.domain import Release
from shipway.errors import ConfigError
from shipway_kubernetes.render import MANAGED_BY, SECRETS_MOUNT, pull_secret_name, secrets_name, selector_for

DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"
_KEY = re.compile(r"^[A-Za-z0-9_][-._A-Za-z0-9]{0,252}$")


def registry_host(address: str) -> str:
    """The host[:port] of a registry address or an auths key (scheme and path dropped)."""
    host = re.sub(r"^[a-z]+://", "", address.strip()).split("/", 1)[0]
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host


def image_host(repository: str) -> str:
    """The registry host of an image repository, as a kubelet reads it (no host part: Docker Hub)."""
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return registry_host(first)
    return "docker.io"


def _metadata(name: str, release: Release, namespace: str, role: str) -> dict[str, Any]:
    labels = {**selector_for(release.app, release.environment), "app.kubernetes.io/managed-by": MANAGED_BY}
    return {"name": name, "namespace": namespace, "labels": {**labels, "shipway.io/role": role}}


def _b64(value: str | bytes) -> str:
    return base64.b64encode(value.encode() if isinstance(value, str) else value).decode()


def pull_secret(release: Release, auth: dict[str, str], namespace: str) -> dict[str, Any]:
    """A ``kubernetes.io/dockerconfigjson`` Secret holding ``auth`` (a docker auth_config) for the image's registry."""
    username, password = auth.get("username") or "", auth.get("password") or ""
    if not username or not password:
        raise ConfigError("registry: the credentials for pulling need a username and a password")
    host = registry_host(auth.get("serveraddress") or image_host(release.image.repository))
    config = {"auths": {host: {"username": username, "password": password, "auth": _b64(f"{username}:{password}")}}}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(pull_secret_name(release.app, release.environment), release, namespace, "image-pull"),
        "type": DOCKERCONFIGJSON,
        "data": {".dockerconfigjson": _b64(json.dumps(config, sort_keys=True))},
    }


def check_names(release: Release) -> None:
    """Every secret name must be a Secret key and a plain file name (never shows a value)."""
    for name in release.secrets:
        if not _KEY.match(name):
            raise ConfigError(
                f"app.secrets: {name[:80]!r} cannot be a Kubernetes Secret key and a file under {SECRETS_MOUNT}: "
                "letters, digits, '_', '.', '-', starting with a letter, digit or '_'"
            )


def app_secret(release: Release, namespace: str) -> dict[str, Any]:
    """An ``Opaque`` Secret with one key per ``Release.secrets`` entry."""
    check_names(release)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(secrets_name(release.app, release.environment), release, namespace, "app-secrets"),
        "type": "Opaque",
        "data": {name: _b64(value.get_secret_value()) for name, value in sorted(release.secrets.items())},
    }


def secret_values(manifest: dict[str, Any]) -> list[str]:
    """Every form a Secret's values could be shown in: base64 as stored, and decoded (whole and per field)."""
    out: list[str] = []
    for encoded in (manifest.get("data") or {}).values():
        out.append(encoded)
        raw = base64.b64decode(encoded).decode(errors="replace")
        out.append(raw)
        if manifest.get("type") == DOCKERCONFIGJSON:
            for entry in json.loads(raw).get("auths", {}).values():
                out.extend(str(v) for k, v in entry.items() if k in ("password", "auth"))
    return [v for v in out if len(v) >= 4]


def scrub(text: str, values: list[str]) -> str:
    """``text`` with every value replaced by ``***`` (for error messages about a Secret)."""
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, "***")
    return text
