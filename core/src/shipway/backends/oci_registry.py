"""The ``oci`` registry: any OCI distribution registry, basic or token auth.

Assembled images are pushed through the distribution API: each blob is
``HEAD``-ed first and uploaded only when the registry lacks it (or mounted
from another repository of the same registry that has it), then the manifest
is put under tags that do not exist yet; a tag is never moved. ``push()`` of a
plain local image goes through the Docker engine (its stream is read to the
end, since a failed push does not raise) and is confirmed by digest. Tags,
labels and the newest verified build are read through the API directly.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, SecretStr

from shipway import dockerutil, inputs, labels
from shipway.backends.base import BackendContext, BackendSettings, Registry
from shipway.domain import ImageRef
from shipway.errors import BackendError, NotFound, TagExists
from shipway.hookspecs import hookimpl
from shipway.manifest import MANIFEST_V2, Image

if TYPE_CHECKING:
    from shipway.oci import OciClient


class OciRegistrySettings(BackendSettings):
    """``registry: {kind: oci, address: host:port, repository: name, ...}``."""

    kind: str = "oci"
    address: str = Field(description="Registry host[:port], e.g. 127.0.0.1:5000 or ghcr.io")
    repository: str = Field(pattern=r"^[a-z0-9]+([._/-][a-z0-9]+)*$", description="Repository, e.g. team/digits-api")
    username: str | None = Field(None, description="Basic-auth user; else the docker config is used")
    password: SecretStr | None = Field(None, description="From the environment: ${REGISTRY_PASSWORD}")
    secure: bool | None = Field(None, description="HTTPS; default: HTTP only for loopback addresses")
    mount_from: list[str] = Field(
        default_factory=list,
        description="Other repositories of this registry to mount blobs from (e.g. another app with the same "
        "model) instead of uploading them",
    )


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
        import docker.auth  # the SDK loads on first use, not with the plugin (validate, --help)

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
            from shipway.oci import OciClient  # requests loads with the first registry call

            auth = self.credentials()
            assert self._creds is not None
            self._client = OciClient(
                self.address,
                username=auth["username"] if auth else None,
                password=auth["password"] if auth else None,
                secure=self.settings.secure,
                credential_source=self._creds[1],
                retries=self.settings.retries,
            )
        return self._client

    def login(self) -> None:
        self.api.ping()

    # -- images --------------------------------------------------------------
    def push(self, local_image: str, tag: str) -> ImageRef:
        import docker.errors

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

    # -- assembled images through the distribution API -------------------------
    def upload_blobs(self, image: Image) -> int:
        sent = 0
        repo = self.settings.repository
        for blob in (*image.layers, image.config_blob):
            if self.api.has_blob(repo, blob.digest):
                continue
            location = None
            for source in self._mount_sources(blob.digest):
                location = self.api.mount_blob(repo, blob.digest, source)
                if location is None:
                    break
            else:
                if blob.opener is None:
                    raise BackendError(f"{self.repository()} lacks blob {blob.digest} and shipway does not have it")
                self.api.upload_blob(repo, blob.digest, blob.size, blob.opener, location)
                sent += blob.size
            self._remember_blob(blob.digest)
        self.bytes_uploaded += sent
        return sent

    def has_model_layer(self, tag: str) -> bool:
        """The tag in this repository, or in one of ``mount_from`` (the push mounts the layer from there)."""
        if self.find(tag) is not None:
            return True
        for source in self.settings.mount_from:
            with contextlib.suppress(BackendError):
                if self.api.head_manifest(source, tag) is not None:
                    return True
        return False

    streams_blobs = True

    def stream_blob(self, chunks: Iterable[bytes], size: int) -> str:
        sent = 0

        def counted() -> Iterator[bytes]:
            nonlocal sent
            for chunk in chunks:
                sent += len(chunk)
                yield chunk

        try:
            digest = self.api.stream_blob(self.settings.repository, counted(), size)
        finally:
            self.bytes_uploaded += sent  # what left this machine, whether or not the registry kept it
        self._remember_blob(digest)
        return digest

    def push_image(self, image: Image, tags: Sequence[str]) -> ImageRef:
        if not tags:
            raise ValueError("push_image needs at least one tag")
        repo = self.settings.repository
        self.upload_blobs(image)
        manifest = image.manifest()
        digest = image.digest
        first: str | None = None
        for tag in tags:
            found = self.api.head_manifest(repo, tag)
            if found is None:
                pushed = self.api.put_manifest(repo, tag, manifest, MANIFEST_V2)
                self.bytes_uploaded += len(manifest)
                if pushed != digest:
                    raise BackendError(f"{self.repository()}:{tag}: the registry reports {pushed}, expected {digest}")
            elif found != digest:
                raise TagExists(
                    f"{self.repository()}:{tag} already names {found}; shipway never moves a tag "
                    f"(this image is {digest})"
                )
            first = first or tag
        return ImageRef(repository=self.repository(), tag=first, digest=digest)

    def _blob_index(self) -> Path:
        return self.context.cache_dir / "oci-blobs" / f"{self.address.replace(':', '_')}.json"

    def _mount_sources(self, digest: str) -> list[str]:
        """Repositories of this registry that may hold ``digest``: those shipway put it in, then mount_from."""
        path = self._blob_index()
        known: list[str] = json.loads(path.read_text()).get(digest, []) if path.is_file() else []
        out = [r for r in [*known, *self.settings.mount_from] if r != self.settings.repository]
        return list(dict.fromkeys(out))

    def _remember_blob(self, digest: str) -> None:
        if not digest.startswith("sha256:"):
            return
        path = self._blob_index()
        data: dict[str, list[str]] = json.loads(path.read_text()) if path.is_file() else {}
        repos = data.setdefault(digest, [])
        if self.settings.repository in repos:
            return
        repos.append(self.settings.repository)
        data[digest] = repos[-5:]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)

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
        from shipway.oci import config_labels

        found = config_labels(self.api.blob(repo, config_digest))
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(found))
        return found

    def builds(self, app: str) -> list[tuple[ImageRef, dict[str, str]]]:
        """One tag listing, then a manifest request only for tags not seen before.

        shipway never moves a tag, so the digest and config of a tag seen once
        are kept in the cache (per registry and repository); configs are cached
        by digest. Lookup tags (``inputs-…``, ``model-…``) are skipped:
        each also has a readable tag.
        """
        repo = self.settings.repository
        index_path = self.context.cache_dir / "oci-tags" / self.address.replace(":", "_") / f"{repo}.json"
        index: dict[str, list[str]] = json.loads(index_path.read_text()) if index_path.is_file() else {}
        current: dict[str, list[str]] = {}
        seen: dict[str, tuple[ImageRef, dict[str, str]]] = {}
        for tag in self.api.tags(repo):
            if inputs.is_lookup_tag(tag):
                continue
            entry = index.get(tag)
            if entry is None:
                try:
                    digest, manifest = self.api.manifest(repo, tag)
                except NotFound:
                    continue  # deleted between listing and reading
                entry = [digest, json.dumps(manifest.get("config") or {})]
            current[tag] = entry
            digest = entry[0]
            if digest in seen:
                continue
            found = self._config_labels(repo, {"config": json.loads(entry[1])})
            if found.get(labels.APP) == app and found.get(labels.VERIFIED) == "true":
                seen[digest] = (ImageRef(repository=self.repository(), tag=tag, digest=digest), found)
        if current != index:
            index_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = index_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(current))
            tmp.replace(index_path)
        return sorted(
            seen.values(), key=lambda item: (item[1].get(labels.CREATED, ""), item[0].digest or ""), reverse=True
        )


# The shipway.testing contract version this backend passes (shown by `shipway plugins`).
SHIPWAY_CONTRACT_VERSION = 2


@hookimpl
def shipway_register_registries(register):  # type: ignore[no-untyped-def]
    register(OciRegistry)
