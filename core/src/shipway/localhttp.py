"""Plain HTTP on this machine: which addresses are loopback, and a threaded server on 127.0.0.1.

Part of the plugin API (docs/plugins.md, "What a plugin may import"): backends
allow ``http://`` only to a loopback address, and local proxies and test
stand-ins serve on one.
"""

from __future__ import annotations

import ipaddress
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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


class LocalServer:
    """Serve ``handler`` on 127.0.0.1 (a free port) in a daemon thread until :meth:`stop`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
