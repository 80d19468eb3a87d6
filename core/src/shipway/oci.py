"""A small client for the OCI distribution API (manifests, blobs, tags) with registry auth.

Handles both auth schemes registries use: HTTP basic (distribution with
htpasswd) and the bearer-token flow (``WWW-Authenticate: Bearer realm=…``)
used by Docker Hub, ACR, ECR and others. Always sends an ``Accept`` header on
manifests, since a GET without one is downgraded to schema1 with another digest.
Every request has connect and read timeouts and is retried as :mod:`shipway.retry`
says; a blob upload that fails is restarted whole, from a new upload session.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import requests

from shipway import retry
from shipway.errors import AuthError, BackendError, NotFound
from shipway.localhttp import is_loopback
from shipway.retry import Deadline, RetrySettings

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
ACCEPT = ", ".join(MANIFEST_TYPES)
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class OciClient:
    """Distribution API calls against one registry ``address`` (``host[:port]``)."""

    def __init__(
        self,
        address: str,
        username: str | None = None,
        password: str | None = None,
        secure: bool | None = None,
        credential_source: str = "no credentials",
        retries: RetrySettings | None = None,
    ) -> None:
        self.address = address
        self.username = username
        self._password = password
        self.secure = (not is_loopback(address)) if secure is None else secure
        self.base = f"{'https' if self.secure else 'http'}://{address}"
        self.credential_source = credential_source
        self.retries = retries or RetrySettings()
        self.session = requests.Session()
        self._tokens: dict[str, str] = {}

    # -- auth --------------------------------------------------------------
    def _basic(self) -> tuple[str, str] | None:
        if self.username is None or self._password is None:
            return None
        return (self.username, self._password)

    def _token(self, challenge: str, scope: str) -> str:
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", None)
        if not realm:
            raise BackendError(f"registry {self.address} sent a bearer challenge without a realm")
        query: dict[str, Any] = dict(params)
        if scope:
            query["scope"] = scope.split()
        resp = self._send("GET", realm, params=query, auth=self._basic())
        if resp.status_code in (401, 403):
            raise self._auth_error()
        if resp.status_code != 200:
            raise BackendError(f"registry {self.address} token endpoint answered {resp.status_code}")
        body = resp.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise BackendError(f"registry {self.address} token endpoint returned no token")
        return str(token)

    def _auth_error(self) -> AuthError:
        who = f"user {self.username!r} ({self.credential_source})" if self.username else "anonymous access"
        return AuthError(f"registry {self.address} rejected {who}: check the username and password or token")

    def _send(self, method: str, url: str, deadline: Deadline | None = None, **kwargs: Any) -> requests.Response:
        """One request with its retries; with ``deadline``, one try inside an operation that is retried whole."""
        where = f"registry {self.address}"
        idempotent = kwargs.pop("idempotent", None)
        if deadline is not None:  # the operation's retry loop judges what this raises
            return retry.send_once(self.session, method, url, deadline, **kwargs)
        try:
            return retry.send(self.session, method, url, self.retries, where, idempotent, **kwargs)
        except requests.Timeout:
            raise BackendError(f"{where} did not answer in time ({method} {url.split('?')[0]})") from None
        except requests.RequestException as exc:
            raise BackendError(f"cannot reach {where} ({method} {url.split('?')[0]}): {_short(exc)}") from None

    def request(
        self, method: str, path: str, scope: str = "", deadline: Deadline | None = None, **kwargs: Any
    ) -> requests.Response:
        """Send one API request (``path`` from ``/v2/``, or an absolute upload URL), answering challenges once.

        Retried as :mod:`shipway.retry` says; with ``deadline``, tried once and
        transient failures raised (for an operation retried whole, see :meth:`upload_blob`).
        """
        url = path if path.startswith(("http://", "https://")) else self.base + path
        headers = dict(kwargs.pop("headers", {}))
        token = self._tokens.get(scope)
        if token:
            headers["Authorization"] = f"Bearer {token}"
            resp = self._send(method, url, deadline, headers=headers, **kwargs)
        else:
            resp = self._send(method, url, deadline, headers=headers, auth=self._basic(), **kwargs)
        if resp.status_code != 401:
            return resp
        challenge = resp.headers.get("WWW-Authenticate", "")
        if challenge.lower().startswith("bearer"):
            self._tokens[scope] = self._token(challenge, scope)
            headers["Authorization"] = f"Bearer {self._tokens[scope]}"
            resp = self._send(method, url, deadline, headers=headers, **kwargs)
        if resp.status_code == 401:
            raise self._auth_error()
        return resp

    # -- API ---------------------------------------------------------------
    def ping(self) -> None:
        """Check reachability and credentials (``GET /v2/``)."""
        resp = self.request("GET", "/v2/")
        if resp.status_code != 200:
            raise BackendError(f"registry {self.address} answered {resp.status_code} to /v2/")

    def manifest(self, repo: str, reference: str) -> tuple[str, dict[str, Any]]:
        """(digest, manifest) for a tag or digest. NotFound if absent."""
        resp = self.request("GET", f"/v2/{repo}/manifests/{reference}", scope=_pull(repo), headers={"Accept": ACCEPT})
        self._check(resp, f"manifest {repo}:{reference}")
        digest = resp.headers.get("Docker-Content-Digest") or _sha256(resp.content)
        return digest, resp.json()

    def head_manifest(self, repo: str, reference: str) -> str | None:
        """The digest a tag or digest resolves to, or None."""
        resp = self.request("HEAD", f"/v2/{repo}/manifests/{reference}", scope=_pull(repo), headers={"Accept": ACCEPT})
        if resp.status_code == 404:
            return None
        self._check(resp, f"manifest {repo}:{reference}")
        return resp.headers.get("Docker-Content-Digest")

    def blob(self, repo: str, digest: str) -> bytes:
        resp = self.request("GET", f"/v2/{repo}/blobs/{digest}", scope=_pull(repo))
        self._check(resp, f"blob {repo}@{digest}")
        if _sha256(resp.content) != digest:
            raise BackendError(f"registry {self.address} returned blob {digest} with different content")
        return resp.content

    def tags(self, repo: str) -> list[str]:
        """Every tag of ``repo`` (following pagination). Unknown repository: empty list."""
        out: list[str] = []
        path: str | None = f"/v2/{repo}/tags/list?n=1000"
        while path:
            resp = self.request("GET", path, scope=_pull(repo))
            if resp.status_code == 404:
                return out
            self._check(resp, f"tags of {repo}")
            out.extend(resp.json().get("tags") or [])
            link = resp.links.get("next", {}).get("url")
            path = link if link and link.startswith("/") else None
        return out

    def has_blob(self, repo: str, digest: str) -> bool:
        """Whether ``repo`` holds blob ``digest`` (``HEAD``)."""
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=_pull(repo))
        if resp.status_code == 404:
            return False
        self._check(resp, f"blob {repo}@{digest}")
        return True

    def mount_blob(self, repo: str, digest: str, source: str) -> str | None:
        """Cross-repository mount of ``digest`` from ``source``: None when mounted, else an upload URL."""
        scope = f"{_push(repo)} {_pull(source)}"
        path = f"/v2/{repo}/blobs/uploads/?mount={digest}&from={source}"
        resp = self.request("POST", path, scope=scope, idempotent=True)  # a mount or a new session: safe again
        if resp.status_code == 201:
            return None
        self._check(resp, f"blob mount {source}@{digest} into {repo}")
        return self._location(resp)

    def upload_blob(
        self, repo: str, digest: str, size: int, chunks: Callable[[], Iterable[bytes]], location: str | None = None
    ) -> None:
        """Monolithic upload (``POST`` then one streamed ``PUT`` with the digest); the registry checks it.

        The pair is retried whole: a PUT cut short is never resent into its
        session (the registry may hold part of it), a new session is started.
        """
        given = [location]

        def once(deadline: Deadline) -> None:
            start = given.pop() if given else None
            if start is None:
                resp = self.request("POST", f"/v2/{repo}/blobs/uploads/", scope=_push(repo), deadline=deadline)
                self._check(resp, f"blob upload to {repo}")
                start = self._location(resp)
            sep = "&" if "?" in start else "?"
            resp = self.request(
                "PUT",
                f"{start}{sep}digest={digest}",
                scope=_push(repo),
                deadline=deadline,
                data=_Body(chunks, size),
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            )
            self._check(resp, f"blob {digest} upload to {repo}")
            if resp.status_code != 201:
                raise BackendError(f"registry {self.address} answered {resp.status_code} to the upload of {digest}")

        try:
            retry.call(
                once,
                self.retries,
                f"registry {self.address}: upload of {digest} to {repo}",
                transient=retry.requests_transient("PUT"),
                describe=retry.describe_requests,
            )
        except requests.RequestException as exc:
            raise BackendError(f"registry {self.address}: upload of {digest} to {repo}: {_short(exc)}") from None

    def stream_blob(self, repo: str, chunks: Iterable[bytes], size: int) -> str:
        """Chunked upload of bytes still arriving: ``POST``, one streamed ``PATCH`` (``Content-Range``
        0 to size-1), then ``PUT`` with the digest taken on the way; returns the digest.

        The ``PATCH`` is tried once (a stream cannot be read again), with
        timeouts per socket operation, however long the bytes take to arrive;
        the closing ``PUT`` has its own retries, and one that failed after
        the registry took the blob counts as done. An upload that fails is
        cancelled (``DELETE``), best effort.
        """
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/", scope=_push(repo), idempotent=True)
        self._check(resp, f"blob upload to {repo}")
        location = self._location(resp)
        body = _Hashing(chunks, size)
        try:
            resp = self.request(
                "PATCH",
                location,
                scope=_push(repo),
                deadline=Deadline(self.retries),
                data=body,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(size),
                    "Content-Range": f"0-{size - 1}",
                },
            )
            self._check(resp, f"streamed blob upload to {repo}")
            location = self._location(resp)
        except BaseException as exc:
            self._cancel_upload(repo, location)
            if isinstance(exc, requests.RequestException | retry.Transient):
                raise BackendError(f"registry {self.address}: streamed upload to {repo}: {_short(exc)}") from None
            raise
        digest = body.digest()
        sep = "&" if "?" in location else "?"
        try:
            resp = self.request("PUT", f"{location}{sep}digest={digest}", scope=_push(repo), idempotent=True)
        except BackendError:
            if self.has_blob(repo, digest):
                return digest  # the answer was lost, the blob was taken
            raise
        if resp.status_code != 201 and self.has_blob(repo, digest):
            return digest
        self._check(resp, f"blob {digest} upload to {repo}")
        if resp.status_code != 201:
            raise BackendError(f"registry {self.address} answered {resp.status_code} to the upload of {digest}")
        return digest

    def _cancel_upload(self, repo: str, location: str) -> None:
        """Tell the registry an upload session is abandoned (it expires on its own otherwise): one try."""
        with contextlib.suppress(Exception):
            self.request("DELETE", location, scope=_push(repo), deadline=Deadline(self.retries.once()))

    def put_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> str:
        """``PUT`` a manifest under a tag or its digest; returns the digest the registry reports."""
        resp = self.request(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            scope=_push(repo),
            data=body,
            headers={"Content-Type": media_type},
        )
        self._check(resp, f"manifest {repo}:{reference}")
        return resp.headers.get("Docker-Content-Digest") or _sha256(body)

    def _location(self, resp: requests.Response) -> str:
        location = resp.headers.get("Location")
        if not location:
            raise BackendError(f"registry {self.address} started an upload without a Location")
        if location.startswith(("http://", "https://")):
            return location
        return self.base + location if location.startswith("/") else f"{self.base}/{location}"

    def _check(self, resp: requests.Response, what: str) -> None:
        if resp.status_code == 404:
            raise NotFound(f"registry {self.address} has no {what}")
        if resp.status_code == 403:
            raise AuthError(f"registry {self.address} denied access to {what} for user {self.username!r}")
        if resp.status_code >= 400:
            raise BackendError(f"registry {self.address} answered {resp.status_code} for {what}: {resp.text[:200]}")


def _pull(repo: str) -> str:
    return f"repository:{repo}:pull"


def _push(repo: str) -> str:
    return f"repository:{repo}:pull,push"


class _Body:
    """A streamed request body of known length that can be read again (for a retried request)."""

    def __init__(self, chunks: Callable[[], Iterable[bytes]], size: int) -> None:
        self._chunks = chunks
        self._size = size

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks():
            if chunk:
                yield chunk


class _Hashing:
    """A one-shot streamed request body of known length whose sha256 is taken as it is sent."""

    def __init__(self, chunks: Iterable[bytes], size: int) -> None:
        self._chunks = chunks
        self._size = size
        self._sha = hashlib.sha256()
        self._sent = 0
        self._started = False

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        if self._started:
            raise BackendError("a streamed blob cannot be sent twice")
        self._started = True
        for chunk in self._chunks:
            if chunk:
                self._sha.update(chunk)
                self._sent += len(chunk)
                yield chunk

    def digest(self) -> str:
        if self._sent != self._size:
            raise BackendError(f"streamed blob: {self._sent} bytes sent, {self._size} announced")
        return "sha256:" + self._sha.hexdigest()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _short(exc: Exception) -> str:
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] [^'\")]+|Connection refused|Name or service not known", text)
    return match.group(0) if match else text[:160]


def config_labels(config_blob: bytes) -> dict[str, str]:
    data = json.loads(config_blob)
    return dict((data.get("config") or {}).get("Labels") or {})
