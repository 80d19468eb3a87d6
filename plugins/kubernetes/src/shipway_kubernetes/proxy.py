"""A local HTTP port forwarded through the API server's service proxy.

``kubectl port-forward`` needs SPDY/websocket streams; the API server's
``/services/NAME:PORT/proxy/`` subresource carries plain HTTP with the same
kubeconfig credentials, which is all verify checks need.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from shipway.localhttp import LocalServer, QuietHandler
from shipway_kubernetes import rawapi


class ServiceProxy:
    """Serve 127.0.0.1:PORT, forwarding each request to ``base`` through ``api_client``."""

    def __init__(self, api_client: Any, base: str) -> None:
        self.api_client = api_client
        self.base = base
        self._server: LocalServer | None = None

    def start(self) -> ServiceProxy:
        owner = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                body = self.read_body() or None
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")}
                path, _, query = self.path.partition("?")
                params = parse_qsl(query, keep_blank_values=True)
                try:
                    status, data, resp_headers = rawapi.send(  # the app's answers as they are: never retried
                        owner.api_client, self.command, owner.base + path, params, headers, body, retries=False
                    )
                except Exception as exc:  # noqa: BLE001 - the cluster went away: answer like a proxy
                    status, data, resp_headers = 502, f"proxy error: {type(exc).__name__}".encode(), {}
                ctype = next((v for k, v in resp_headers.items() if k.lower() == "content-type"), "")
                self.answer(status, data, {"Content-Type": ctype} if ctype else {})

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self._server = LocalServer(Handler)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
