"""The ``oci`` registry: any OCI distribution registry, basic or token auth.

Pushes go through the Docker engine (its stream is read to the end, since a
failed push does not raise) and are confirmed by digest through the
distribution API; tags, labels and the newest verified build are read through
that API directly.
"""

from __future__ import annotations

import json
from typing import Any

import docker.auth
from pydantic import Field, SecretStr

from shipway import dockerutil, labels
from shipway.backends.base import BackendContext, BackendSettings, Registry
from shipway.domain import ImageRef
from shipway.errors import BackendError, NotFound
from shipway.hookspecs import hookimpl
from shipway.oci import OciClient, config_labels


class OciRegistrySettings(BackendSettings):
    """``registry: {kind: oci, address: host:port, repository: name, ...}``."""

    kind: str = "oci"
    address: str = Field(description="Registry host[:port], e.g. 127.0.0.1:5000 or ghcr.io")
    repository: str = Field(pattern=r"^[a-z0-9]+([._/-][a-z0-9]+)*$", description="Repository, e.g. team/digits-api")
    username: str | None = Field(None, description="Basic-auth user; else the docker config is used")
    password: SecretStr | None = Field(None, description="From the environment: ${REGISTRY_PASSWORD}")
    secure: bool | None = Field(None, description="HTTPS; default: HTTP only for loopback addresses")


class OciRegistry(Registry):
    """Any registry speaking the OCI distribution API."""

    kind = "oci"
    Settings = OciRegistrySettings
    settings: OciRegistrySettings

    def __init__(self, settings: BackendSettings, context: BackendContext | None = None) -> None:
        super().__init__(settings, context)
        self._client: OciClient | None = None
        self._creds: tuple[dict[str, str] | None, str] | None = None

    # -- identity and credentials ------------------------------------------
    @property
    def address(self) -> str:
        return self.settings.address

    def repository(self) -> str:
        return f"{self.address}/{self.settings.repository}"

    def describe(self) -> str:
        return f"{self.kind} registry {self.repository()}"

    def _credentials(self) -> tuple[dict[str, str] | None, str]:
        """(auth_config, where it came from). Subclasses (ACR, ECR) override this."""
        s = self.settings
        if s.username and s.password:
            return (
                {"username": s.username, "password": s.password.get_secret_value(), "serveraddress": self.address},
                "registry.username/password",
            )
        if s.username or s.password:
            from shipway.errors import ConfigError

            raise ConfigError("registry: give both username and password, or neither (to use the docker config)")
        found = docker.auth.resolve_authconfig(docker.auth.load_config(), self.address)
        if found and found.get("username") and found.get("password"):
            auth = {"username": found["username"], "password": found["password"], "serveraddress": self.address}
            return auth, "docker config"
        return None, "no credentials"

    def credentials(self) -> dict[str, str] | None:
        if self._creds is None:
            self._creds = self._credentials()
        return self._creds[0]

    @property
    def api(self) -> OciClient:
        if self._client is None:
            auth = self.credentials()
            assert self._creds is not None
            self._client = OciClient(
                self.address,
                username=auth["username"] if auth else None,
                password=auth["password"] if auth else None,
                secure=self.settings.secure,
                credential_source=self._creds[1],
            )
        return self._client

    def login(self) -> None:
        self.api.ping()

    # -- images --------------------------------------------------------------
    def push(self, local_image: str, tag: str) -> ImageRef:
        client = dockerutil.client()
        repo = self.repository()
        try:
            image = client.images.get(local_image)
            image.tag(repo, tag=tag)
            stream = client.api.push(repo, tag=tag, auth_config=self.credentials(), stream=True, decode=True)
            events = dockerutil.follow(stream, f"push of {repo}:{tag}")
        except docker.errors.APIError as exc:
            raise BackendError(f"push of {repo}:{tag} failed: {exc.explanation or exc}") from None
        pushed = next(
            (e["aux"]["Digest"] for e in events if isinstance(e.get("aux"), dict) and "Digest" in e["aux"]), None
        )
        confirmed = self.api.head_manifest(self.settings.repository, tag)
        if not confirmed or (pushed and confirmed != pushed):
            raise BackendError(f"push of {repo}:{tag}: registry holds {confirmed}, engine reported {pushed}")
        return ImageRef(repository=repo, tag=tag, digest=confirmed)

    def resolve(self, tag: str) -> ImageRef:
        repo = self.settings.repository
        digest = self.api.head_manifest(repo, tag)
        if digest is None:
            raise NotFound(f"{self.repository()}:{tag} does not exist")
        return ImageRef(repository=self.repository(), tag=tag, digest=digest)

    def exists(self, ref: ImageRef) -> bool:
        return self.api.head_manifest(self.settings.repository, ref.digest or ref.tag or "latest") is not None

    def labels(self, ref: ImageRef) -> dict[str, str]:
        repo = self.settings.repository
        _, manifest = self.api.manifest(repo, ref.digest or ref.tag or "latest")
        return self._config_labels(repo, manifest)

    def _config_labels(self, repo: str, manifest: dict[str, Any]) -> dict[str, str]:
        config = manifest.get("config") or {}
        config_digest = config.get("digest")
        if not config_digest:
            return {}
        cache = self.context.cache_dir / "oci-configs" / config_digest.replace(":", "-")
        if cache.is_file():
            return dict(json.loads(cache.read_text()))
        found = config_labels(self.api.blob(repo, config_digest))
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(found))
        return found

    def builds(self, app: str) -> list[tuple[ImageRef, dict[str, str]]]:
        repo = self.settings.repository
        seen: dict[str, tuple[ImageRef, dict[str, str]]] = {}
        for tag in self.api.tags(repo):
            try:
                digest, manifest = self.api.manifest(repo, tag)
            except NotFound:
                continue  # deleted between listing and reading
            if digest in seen:
                continue
            found = self._config_labels(repo, manifest)
            if found.get(labels.APP) == app and found.get(labels.VERIFIED) == "true":
                seen[digest] = (ImageRef(repository=self.repository(), tag=tag, digest=digest), found)
        return sorted(seen.values(), key=lambda item: item[1].get(labels.CREATED, ""), reverse=True)


# The shipway.testing contract version this backend passes (shown by `shipway plugins`).
SHIPWAY_CONTRACT_VERSION = 1


@hookimpl
def shipway_register_registries(register):  # type: ignore[no-untyped-def]
    register(OciRegistry)
