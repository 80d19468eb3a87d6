"""Raw HTTP through the official client's ApiClient: its kubeconfig auth and TLS, our bytes.

The client's own ``call_api`` re-encodes bodies by content type (a JSON body
given as text would be encoded twice), so requests are built with
``param_serialize`` (URL, auth headers) and sent through the client's
connection pool as they are.
"""

from __future__ import annotations

import json
from typing import Any


def send(
    api_client: Any,
    method: str,
    path: str,
    query: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    body: Any = None,
    timeout: Any = 30,
    retries: Any = None,
) -> tuple[int, bytes, dict[str, str]]:
    """(status, body, headers) of one request; never raises for HTTP status codes.

    ``timeout``: seconds, or a ``urllib3.Timeout`` (connect and read apart).
    ``retries``: None for the client's pool policy, False for a single try.

    ``body``: bytes are sent as they are; anything else is JSON-encoded.
    """
    _, url, hdrs, _, _ = api_client.param_serialize(
        method=method, resource_path=path, query_params=query or [], header_params=dict(headers or {}),
        auth_settings=["BearerToken"],
    )  # fmt: skip
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    resp = api_client.rest_client.pool_manager.request(
        method, url, body=data, headers=hdrs, timeout=timeout, preload_content=True, redirect=False, retries=retries
    )
    return resp.status, resp.data or b"", dict(resp.headers or {})
