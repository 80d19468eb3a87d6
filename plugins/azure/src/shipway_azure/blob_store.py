"""The ``azure_blob`` model store: versioned models in an Azure Blob Storage container.

Layout under ``<container>/<prefix>``::

    <name>/blobs/sha256/<hex>                 file contents, content-addressed (shared by versions)
    <name>/versions/<version>/manifest.json   files (path, size, sha256), metadata, created
    <name>/aliases.json                       {"production": "3"}

A version becomes visible when its manifest is written, last, with
``If-None-Match: *``: two publishers of one version cannot both win, and the
files a manifest names are immutable blobs that no other publish can change.
Aliases are updated with ETag conditions (optimistic concurrency).

Retries and timeouts: the Azure SDK's storage retry policy (it retries
connection errors, 408 and 5xx but 501/505, re-sending a body from its start),
given the attempts, waits and timeouts of the section's ``retries`` block
(:func:`retry_policy`); shipway does not wrap it a second time.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator

from shipway.backends.base import BackendSettings
from shipway.backends.objectstore import ObjectModelStore
from shipway.domain import ModelFile, ModelVersion
from shipway.errors import AuthError, BackendError, ModelError
from shipway.retry import RETRY_STATUSES, RetrySettings, parse_retry_after

MiB = 1024 * 1024


def _azx() -> Any:
    """azure.core.exceptions, imported on first use: the Azure SDK would add half a second to every command."""
    import azure.core.exceptions

    return azure.core.exceptions


def retry_policy(policy: RetrySettings) -> Any:
    """The storage SDK's ExponentialRetry with shipway's policy: attempts, full-jitter waits, Retry-After."""
    from azure.storage.blob import ExponentialRetry

    class Policy(ExponentialRetry):  # type: ignore[misc]
        def get_backoff_time(self, settings: dict[str, Any]) -> float:
            wait = random.uniform(0, min(policy.max_backoff, policy.backoff * 2 ** settings["count"]))
            history = settings.get("history") or []
            answer = getattr(history[-1], "http_response", None) if history else None
            asked = parse_retry_after(answer.headers.get("Retry-After")) if answer is not None else None
            return max(wait, asked or 0.0)

    tries = policy.attempts - 1
    return Policy(retry_total=tries, retry_connect=tries, retry_read=tries, retry_status=tries, random_jitter_range=0)


class AzureBlobSettings(BackendSettings):
    """``model_store: {kind: azure_blob, account_url: ..., container: models}``.

    Credentials, first found wins: ``connection_string``; ``account_key``;
    ``sas_token``; else ``DefaultAzureCredential`` (managed identity, workload
    identity, environment, Azure CLI, ...). All secret fields come from ``${VAR}``.
    """

    kind: str = "azure_blob"
    account_url: str | None = Field(None, description="https://<account>.blob.core.windows.net")
    connection_string: SecretStr | None = Field(None, description="${AZURE_STORAGE_CONNECTION_STRING}")
    account_key: SecretStr | None = None
    sas_token: SecretStr | None = None
    container: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", description="Container name")
    prefix: str = Field("", description="Folder inside the container, e.g. team-a/")
    max_concurrency: int = Field(8, ge=1, le=64, description="Parallel block transfers per file")
    block_size: int = Field(8 * MiB, ge=MiB, le=4000 * MiB)
    single_put_size: int = Field(
        8 * MiB, ge=MiB, le=5000 * MiB, description="Files above this upload as parallel blocks"
    )

    @model_validator(mode="after")
    def _where(self) -> AzureBlobSettings:
        if self.connection_string is None and self.account_url is None:
            raise ValueError("give account_url, or connection_string (from ${AZURE_STORAGE_CONNECTION_STRING})")
        if self.prefix and not self.prefix.endswith("/"):
            self.prefix += "/"
        return self


class AzureBlobStore(ObjectModelStore):
    """Versioned, content-addressed models in Azure Blob Storage."""

    kind = "azure_blob"
    Settings = AzureBlobSettings
    settings: AzureBlobSettings

    def __init__(self, settings: BackendSettings, context: Any = None) -> None:
        super().__init__(settings, context)
        self._container: Any = None
        self._container_pid = 0
        self._credential_source = ""

    # -- connection ----------------------------------------------------------------
    def describe(self) -> str:
        if self.settings.account_url:
            return f"azure_blob store {self.settings.account_url}/{self.settings.container}/{self.settings.prefix}"
        try:
            where = self._endpoint()  # the connection string's blob endpoint and the container: no key in it
        except Exception:  # noqa: BLE001  a malformed connection string is reported where it is used
            where = f"connection string/{self.settings.container}"
        return f"azure_blob store {where}/{self.settings.prefix} (model_store.connection_string)"

    @property
    def container(self) -> Any:
        """The azure.storage.blob ContainerClient, built on first use (and again in a forked process).

        A forked process must not share the parent's pooled connections: two
        processes on one socket read each other's responses.
        """
        if self._container is None or self._container_pid != os.getpid():
            self._container_pid = os.getpid()
            from azure.storage.blob import BlobServiceClient

            s = self.settings
            options: dict[str, Any] = {
                "max_single_put_size": s.single_put_size,
                "max_block_size": s.block_size,
                "retry_policy": retry_policy(s.retries),
                "connection_timeout": s.retries.connect_timeout,
                "read_timeout": s.retries.read_timeout,
            }
            if s.connection_string is not None:
                service = BlobServiceClient.from_connection_string(s.connection_string.get_secret_value(), **options)
                self._credential_source = "model_store.connection_string"
            else:
                credential: Any
                if s.account_key is not None:
                    credential, self._credential_source = s.account_key.get_secret_value(), "model_store.account_key"
                elif s.sas_token is not None:
                    credential, self._credential_source = s.sas_token.get_secret_value(), "model_store.sas_token"
                else:
                    from azure.identity import DefaultAzureCredential

                    credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
                    self._credential_source = "DefaultAzureCredential"
                assert s.account_url is not None  # the settings require it without a connection string
                service = BlobServiceClient(s.account_url, credential=credential, **options)
            self._container = service.get_container_client(s.container)
        return self._container

    def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one SDK call, turning Azure errors into shipway's (never with a secret in them)."""
        try:
            return func(*args, **kwargs)
        except _azx().ClientAuthenticationError:
            raise AuthError(
                f"{self.describe()}: {what}: the storage account rejected {self._credential_source or 'the credential'}"
                " (check the key or SAS, or the identity's role: Storage Blob Data Reader/Contributor)"
            ) from None
        except _azx().ServiceRequestError as exc:
            raise BackendError(
                f"cannot reach {self.describe()}: {what}: {type(exc).__name__} after "
                f"{self.settings.retries.attempts} tries (check the endpoint and that the storage service is up)"
            ) from None
        except _azx().ServiceResponseError as exc:  # sent, then the answer broke off or never came
            raise BackendError(
                f"{self.describe()}: {what}: no complete answer from {self._endpoint()} ({type(exc).__name__}, "
                f"{self.settings.retries.attempts} tries)"
            ) from None
        except _azx().HttpResponseError as exc:
            if exc.status_code in RETRY_STATUSES | {500}:
                tries = 1 if exc.status_code == 429 else self.settings.retries.attempts  # the SDK retries no 4xx
                raise BackendError(
                    f"{self.describe()}: {what}: {self._endpoint()} answered {exc.status_code} "
                    f"({tries} tries; retries.attempts of this backend sets how many)"
                ) from None
            if exc.status_code == 403:
                raise AuthError(
                    f"{self.describe()}: {what}: access denied for {self._credential_source or 'the credential'}"
                    " (needs Storage Blob Data Reader to read, Contributor to publish)"
                ) from None
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise ModelError(f"{self.describe()}: container {self.settings.container!r} does not exist") from None
            raise

    def _endpoint(self) -> str:
        """The container's URL (no credential in it: keys and SAS go in headers or were given apart)."""
        return str(self.container.url).split("?", 1)[0]

    def _key(self, *parts: str) -> str:
        return self.settings.prefix + "/".join(parts)

    def _read_json(self, blob: str) -> tuple[Any, str] | None:
        client = self.container.get_blob_client(blob)
        try:
            download = self._call(f"read {blob}", client.download_blob)
        except _azx().ResourceNotFoundError:
            return None
        return json.loads(download.readall()), download.properties.etag

    def _write_json(self, key: str, body: bytes, etag: str | None) -> bool:
        client = self.container.get_blob_client(key)
        condition: dict[str, Any] = {"overwrite": False}
        if etag is not None:
            condition = {"overwrite": True, "etag": etag, "match_condition": _if_not_modified()}
        try:
            self._call(f"write {key}", client.upload_blob, body, content_settings=_json_settings(), **condition)
        except (_azx().ResourceExistsError, _azx().ResourceModifiedError):
            return False
        return True

    # -- reading ---------------------------------------------------------------------
    def _manifest_keys(self, name: str) -> list[str]:
        prefix = self._key(name, "versions") + "/"
        try:
            # The pager is lazy: list it inside _call so errors are translated.
            blobs = self._call(f"list {prefix}", lambda: list(self.container.list_blobs(name_starts_with=prefix)))
        except _azx().ResourceNotFoundError:
            return []
        return [blob.name for blob in blobs if blob.name.endswith("/manifest.json")]

    def _download(self, version: ModelVersion, file: ModelFile, dest: Path) -> None:
        blob = self._key(version.name, "blobs", "sha256", file.sha256)
        client = self.container.get_blob_client(blob)
        have = dest.stat().st_size if dest.exists() else 0
        if have >= file.size:
            have = 0  # longer than the file: not a prefix of it, start again
        try:
            stream = self._call(
                f"download {blob}",
                client.download_blob,
                offset=have or None,
                max_concurrency=self.settings.max_concurrency,
            )
        except _azx().ResourceNotFoundError:
            raise ModelError(
                f"{version.name}:{version.version}: file {file.path} is missing from {self.describe()}"
            ) from None
        with dest.open("r+b" if have else "wb") as out:
            out.seek(have)
            out.truncate()
            for chunk in stream.chunks():
                out.write(chunk)

    # -- writing -----------------------------------------------------------------------
    def _upload_blob(self, name: str, src: Path, f: ModelFile, progress: Callable[[int], None]) -> None:
        blob = self._key(name, "blobs", "sha256", f.sha256)
        client = self.container.get_blob_client(blob)
        damaged = False
        try:
            props = self._call(f"read {blob}", client.get_blob_properties)
            if props.size == f.size:
                progress(f.size)
                return  # content-addressed: already there, never sent twice
            damaged = True  # a blob of the wrong size under a content address: replace it
        except _azx().ResourceNotFoundError:
            pass
        with src.open("rb") as data:
            try:
                self._call(
                    f"upload {blob}",
                    client.upload_blob,
                    data,
                    length=f.size,
                    overwrite=damaged,
                    max_concurrency=self.settings.max_concurrency,
                    metadata={"sha256": f.sha256},
                )
            except _azx().ResourceExistsError:
                pass  # a concurrent publish uploaded the same content
        progress(f.size)


def _if_not_modified() -> Any:
    from azure.core import MatchConditions

    return MatchConditions.IfNotModified


def _json_settings() -> Any:
    from azure.storage.blob import ContentSettings

    return ContentSettings(content_type="application/json")
