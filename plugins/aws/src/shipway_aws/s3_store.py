"""The ``s3`` model store: versioned models in an S3 bucket (or any S3-compatible store).

Layout under ``<bucket>/<prefix>``::

    <name>/blobs/sha256/<hex>                 file contents, content-addressed (shared by versions)
    <name>/versions/<version>/manifest.json   files (path, size, sha256), metadata, created
    <name>/aliases.json                       {"production": "3"}

A version becomes visible when its manifest is written, last, with
``If-None-Match: *`` (S3 conditional writes): two publishers of one version
cannot both win, and the files a manifest names are immutable objects that no
other publish changes. Aliases are rewritten under ``If-Match: <ETag>``.
Files above ``multipart_threshold`` go up and come down as parallel parts;
an interrupted download resumes with a ranged GET.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from shipway import retry
from shipway.backends.base import BackendSettings
from shipway.backends.objectstore import ObjectModelStore
from shipway.domain import ModelFile, ModelVersion
from shipway.errors import BackendError, ModelError
from shipway_aws.session import NoLiteralCredentials, botocore_config, error_code, http_status, session, translate

MiB = 1024 * 1024
READ_ACTIONS = "s3:ListBucket and s3:GetObject"
WRITE_ACTIONS = "s3:ListBucket, s3:GetObject and s3:PutObject"


class _Missing(Exception):
    """The object (or its version) is not there: 404 / NoSuchKey."""


class _Precondition(Exception):
    """A conditional write lost: 412 PreconditionFailed, or 409 ConditionalRequestConflict."""


def _body_errors() -> tuple[type[BaseException], ...]:
    """What reading a response body raises when the connection breaks or stalls mid-way."""
    import botocore.exceptions as bx
    import urllib3.exceptions as ux

    return (
        bx.ResponseStreamingError,
        bx.IncompleteReadError,
        bx.ReadTimeoutError,
        ux.ProtocolError,
        ux.ReadTimeoutError,
    )


def _body_broke(exc: BaseException) -> bool:
    return isinstance(exc, _body_errors())


class S3Settings(NoLiteralCredentials, BackendSettings):
    """``model_store: {kind: s3, bucket: ml-models, prefix: team-a/, region: eu-west-1}``.

    Credentials come from the boto3 chain only (environment, ``profile``,
    web identity / IRSA, container or instance role); keys in the file are refused.
    """

    kind: str = "s3"
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", description="Bucket name")
    prefix: str = Field("", description="Folder inside the bucket, e.g. team-a/")
    region: str | None = Field(None, description="Bucket region; default: the boto3 chain (AWS_REGION, profile)")
    endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, Ceph...); default: AWS, or AWS_ENDPOINT_URL_S3"
    )
    profile: str | None = Field(None, description="Named profile from the AWS config files")
    max_concurrency: int = Field(8, ge=1, le=64, description="Parallel part transfers per file")
    multipart_threshold: int = Field(8 * MiB, ge=5 * MiB, description="Files above this move as parallel parts")
    multipart_chunksize: int = Field(8 * MiB, ge=5 * MiB, le=5000 * MiB, description="Part size")

    @model_validator(mode="after")
    def _slash(self) -> S3Settings:
        if self.prefix and not self.prefix.endswith("/"):
            self.prefix += "/"
        return self


class S3Store(ObjectModelStore):
    """Versioned, content-addressed models in S3."""

    kind = "s3"
    Settings = S3Settings
    settings: S3Settings

    def __init__(self, settings: BackendSettings, context: Any = None) -> None:
        super().__init__(settings, context)
        self._client: Any = None
        self._client_pid = 0
        self._session: Any = None

    # -- connection ----------------------------------------------------------------
    def describe(self) -> str:
        s = self.settings
        where = f" in {s.region}" if s.region else ""
        return f"s3 store s3://{s.bucket}/{s.prefix}{where}"

    @property
    def client(self) -> Any:
        """The boto3 S3 client, built on first use (boto3 costs every command a fraction of a second).

        A forked process builds its own: two processes must not share pooled connections.
        """
        if self._client is None or self._client_pid != os.getpid():
            self._client_pid = os.getpid()
            s = self.settings
            self._session = session(s.region, s.profile)
            config = botocore_config(
                s.retries,
                max_pool_connections=max(10, s.max_concurrency * 2),
                s3={"addressing_style": "path" if s.endpoint_url else "auto"},
            )
            self._client = self._session.client("s3", endpoint_url=s.endpoint_url, config=config)
        return self._client

    @property
    def transfer(self) -> Any:
        """boto3's TransferConfig: parallel parts above the threshold, in both directions."""
        from boto3.s3.transfer import TransferConfig

        s = self.settings
        return TransferConfig(
            multipart_threshold=s.multipart_threshold,
            multipart_chunksize=s.multipart_chunksize,
            max_concurrency=s.max_concurrency,
            use_threads=s.max_concurrency > 1,
            num_download_attempts=s.retries.attempts,  # a part whose body breaks mid-way is fetched again
        )

    def _call(self, what: str, func: Any, *args: Any, write: bool = False, **kwargs: Any) -> Any:
        """Run one SDK call; AWS errors become one clear shipway error (never with a secret in it)."""
        import boto3.exceptions
        import botocore.exceptions as bx

        try:
            return func(*args, **kwargs)
        except (bx.BotoCoreError, bx.ClientError) as exc:
            raise self._error(exc, what, write) from None
        except boto3.exceptions.S3UploadFailedError as exc:  # upload_file wraps the ClientError it met
            cause = exc.__context__ if isinstance(exc.__context__, bx.ClientError) else exc
            raise self._error(cause, what, write) from None

    def _error(self, exc: Exception, what: str, write: bool) -> Exception:
        import botocore.exceptions as bx

        where = f"{self.describe()}: {what}"
        if isinstance(exc, bx.ClientError):
            code, status = error_code(exc), http_status(exc)
            if code == "NoSuchBucket":
                return BackendError(f"{self.describe()}: bucket {self.settings.bucket!r} does not exist")
            if code in ("NoSuchKey", "NotFound", "404") or (status == 404 and code != "NoSuchBucket"):
                return _Missing(what)
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                return _Precondition(what)
            if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException") or (
                status == 301
            ):
                headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
                actual = headers.get("x-amz-bucket-region") or exc.response.get("Error", {}).get("Region")
                hint = f"it is in {actual}" if actual else "it is in another region"
                return BackendError(
                    f"{where}: bucket {self.settings.bucket!r} is not in region "
                    f"{self.settings.region or self.client.meta.region_name} ({hint}): set model_store.region"
                )
        found = translate(exc, where, WRITE_ACTIONS if write else READ_ACTIONS)
        if found is not None:
            return found
        if isinstance(exc, bx.ClientError) and http_status(exc) in retry.RETRY_STATUSES | {500}:
            tries = int(exc.response.get("ResponseMetadata", {}).get("RetryAttempts") or 0) + 1
            return BackendError(
                f"{where}: {self.client.meta.endpoint_url} answered {http_status(exc)} {error_code(exc)} "
                f"({tries} tries; retries.attempts of this backend sets how many)"
            )
        return BackendError(f"{where}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")

    def _key(self, *parts: str) -> str:
        return self.settings.prefix + "/".join(parts)

    def _read_json(self, key: str) -> tuple[Any, str] | None:
        """(parsed JSON, ETag) of an object, or None when it does not exist.

        botocore retries the request; a body that breaks while it is read is read
        again, whole, under the backend's ``retries`` policy.
        """

        def once(_: retry.Deadline) -> tuple[bytes, str] | None:
            try:
                obj = self._call(f"read {key}", self.client.get_object, Bucket=self.settings.bucket, Key=key)
            except _Missing:
                return None
            return obj["Body"].read(), str(obj["ETag"])

        try:
            got = retry.call(once, self.settings.retries, f"{self.describe()}: read {key}", transient=_body_broke)
        except _body_errors() as exc:
            raise BackendError(f"{self.describe()}: read {key}: {type(exc).__name__}") from None
        if got is None:
            return None
        body, etag = got
        try:
            return json.loads(body), etag
        except ValueError:
            raise BackendError(f"{self.describe()}: {key} is not valid JSON") from None

    def _put(self, key: str, body: bytes, **conditions: str) -> None:
        self._call(
            f"write {key}",
            self.client.put_object,
            Bucket=self.settings.bucket,
            Key=key,
            Body=body,
            ContentType="application/json",
            write=True,
            **conditions,
        )

    def _write_json(self, key: str, body: bytes, etag: str | None) -> bool:
        try:
            self._put(key, body, **({"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}))
        except _Precondition:
            return False
        return True

    # -- reading ---------------------------------------------------------------------
    def _manifest_keys(self, name: str) -> list[str]:
        prefix = self._key(name, "versions") + "/"
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.settings.bucket, Prefix=prefix)
        return [
            o["Key"]
            for page in self._call(f"list {prefix}", list, pages)
            for o in page.get("Contents", [])
            if o["Key"].endswith("/manifest.json")
        ]

    def _download(self, version: ModelVersion, file: ModelFile, dest: Path) -> None:
        """Write the file to ``dest``, resuming after the bytes it holds; a body cut short resumes again.

        A ranged GET's body that breaks mid-way is retried under the store's
        ``retries`` policy, each try resuming after the bytes written so far.
        """
        key = self._key(version.name, "blobs", "sha256", file.sha256)
        bucket = self.settings.bucket

        def once(_: retry.Deadline) -> None:
            have = dest.stat().st_size if dest.exists() else 0
            if have >= file.size:
                have = 0  # as long as the file or longer: not a resumable prefix, start again
            with dest.open("r+b" if have else "wb") as out:
                out.seek(have)
                out.truncate()
                if have:  # resume: only the bytes after the ones we have, one ranged GET
                    obj = self._call(f"download {key}", self.client.get_object, Bucket=bucket, Key=key,
                                     Range=f"bytes={have}-")  # fmt: skip
                    for chunk in obj["Body"].iter_chunks(MiB):
                        out.write(chunk)
                else:  # whole file: parallel ranged GETs above the multipart threshold
                    self._call(f"download {key}", self.client.download_fileobj, bucket, key, out, Config=self.transfer)

        try:
            retry.call(once, self.settings.retries, f"{self.describe()}: download {key}", transient=_body_broke)
        except _Missing:
            raise ModelError(
                f"{version.name}:{version.version}: file {file.path} is missing from {self.describe()}"
            ) from None

    # -- writing -----------------------------------------------------------------------
    def _exists(self, name: str, version: str) -> bool:
        key = self._key(name, "versions", version, "manifest.json")
        try:
            self._call(f"read {key}", self.client.head_object, Bucket=self.settings.bucket, Key=key)
        except _Missing:
            return False
        return True

    def _upload_blob(self, name: str, src: Path, f: ModelFile, progress: Any) -> None:
        key = self._key(name, "blobs", "sha256", f.sha256)
        bucket = self.settings.bucket
        try:
            head = self._call(f"read {key}", self.client.head_object, Bucket=bucket, Key=key, write=True)
            if head["ContentLength"] == f.size:
                progress(f.size)
                return  # content-addressed: already there, never sent twice
            # a short object under a content address (an interrupted copy): replace it
        except _Missing:
            pass
        self._call(
            f"upload {key}",
            self.client.upload_file,
            str(src),
            bucket,
            key,
            ExtraArgs={"Metadata": {"sha256": f.sha256}},
            Config=self.transfer,
            Callback=progress,
            write=True,
        )
