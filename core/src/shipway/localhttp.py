"""Plain HTTP on this machine: which addresses are loopback, and a threaded server on 127.0.0.1.

Part of the plugin API (docs/plugins.md, "What a plugin may import"): backends
allow ``http://`` only to a loopback address, and local proxies and test
stand-ins serve on one.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def is_loopback(address: str) -> bool:
    """Whether ``address`` (``host``, ``host:port``, ``[v6]:port``) names this machine: localhost or a loopback IP."""
    if address.startswith("["):
        host = address[1:].split("]", 1)[0]
    else:
        host = address.rsplit(":", 1)[0] if address.count(":") == 1 else address
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


STOP_POLL_SECONDS = 0.05
"""How often a serving thread looks for stop(): socketserver's default (0.5 s) was a warm build's largest wait."""


class QuietHandler(BaseHTTPRequestHandler):
    """Base of a local server's request handler: no log line per request; read the body, answer with a length."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def read_body(self) -> bytes:
        """The request body: ``Content-Length`` bytes, empty without one."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def answer(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None) -> None:
        """Send ``status``, ``headers`` and ``body`` with its ``Content-Length`` (to HEAD: the length, no body).

        When the connection ends after this answer (the client asked for ``Connection: close``, or spoke
        HTTP/1.0), the answer says so: a client told nothing keeps the connection in its pool and may send
        its next request on it while this side closes, and that request gets no answer.
        """
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection and not any(k.lower() == "connection" for k in headers or {}):
            self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def answer_json(self, status: int, data: Any) -> None:
        """Answer ``data`` as JSON."""
        self.answer(status, json.dumps(data).encode(), {"Content-Type": "application/json"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    """socketserver's default backlog is 5: a burst of clients (a load test, parallel probes) gets refused."""


class LocalServer:
    """Serve ``handler`` on 127.0.0.1 (a free port) in a daemon thread until :meth:`stop`."""

    def __init__(self, handler: Callable[..., BaseHTTPRequestHandler]) -> None:
        self._server = _Server(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, args=(STOP_POLL_SECONDS,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
