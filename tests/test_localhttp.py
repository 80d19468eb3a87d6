"""shipway.localhttp: which addresses count as this machine (plain http is allowed only to them)."""

from __future__ import annotations

import pytest
import requests

from shipway.localhttp import LocalServer, is_loopback


@pytest.mark.parametrize(
    "address", ["localhost", "localhost:5000", "127.0.0.1", "127.0.0.1:5000", "127.8.0.1", "::1", "[::1]:5000"]
)
def test_loopback_addresses(address: str) -> None:
    assert is_loopback(address)


@pytest.mark.parametrize(
    "address",
    ["registry.example.com", "registry.example.com:5000", "10.0.0.1:5000", "[2001:db8::1]:443", "localhost.evil.com"],
)
def test_other_addresses(address: str) -> None:
    assert not is_loopback(address)


def test_local_server_serves_on_loopback() -> None:
    from http.server import BaseHTTPRequestHandler

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hi")

        def log_message(self, *args: object) -> None:
            pass

    server = LocalServer(Hello)
    try:
        assert is_loopback(server.url.removeprefix("http://"))
        assert requests.get(server.url, timeout=5).text == "hi"
    finally:
        server.stop()
