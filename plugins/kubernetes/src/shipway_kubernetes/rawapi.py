"""Raw HTTP calls through the official client's ApiClient (auth, TLS, kubeconfig), across client versions."""

from __future__ import annotations

from typing import Any


def send(
    api_client: Any,
    method: str,
    path: str,
    query: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    body: Any = None,
    timeout: float = 30,
) -> tuple[int, bytes, dict[str, str]]:
    """(status, body bytes, headers) of one request; never raises for HTTP status codes."""
    from kubernetes.client.exceptions import ApiException

    if hasattr(api_client, "param_serialize"):  # kubernetes >= 35 (new openapi-generator)
        m, url, hdrs, data, post = api_client.param_serialize(
            method=method, resource_path=path, query_params=query or [], header_params=headers or {},
            body=body, auth_settings=["BearerToken"],
        )  # fmt: skip
        resp = api_client.call_api(m, url, header_params=hdrs, body=data, post_params=post, _request_timeout=timeout)
        return resp.status, resp.read() or b"", dict(resp.headers or {})
    try:  # kubernetes <= 34
        resp = api_client.call_api(
            path, method, query_params=query or [], header_params=headers or {}, body=body,
            auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
            _request_timeout=timeout,
        )  # fmt: skip
        return resp.status, resp.data or b"", dict(resp.headers or {})
    except ApiException as exc:
        raw = exc.body or b""
        return exc.status, raw.encode() if isinstance(raw, str) else raw, dict(exc.headers or {})
