"""shipway.localhttp: which addresses count as this machine (plain http is allowed only to them)."""

from __future__ import annotations

import pytest
import requests

from shipway.localhttp import LocalServer, QuietHandler, is_loopback


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


def test_local_server_and_quiet_handler_answer_with_a_length() -> None:
    class Echo(QuietHandler):
        def do_POST(self) -> None:
            self.answer_json(201, {"got": self.read_body().decode()})

        def do_HEAD(self) -> None:
            self.answer(200, b"twelve bytes", {"X-Kind": "head"})

    server = LocalServer(Echo)
    try:
        assert is_loopback(server.url.removeprefix("http://"))
        posted = requests.post(server.url, data=b"hello", timeout=5)
        assert posted.status_code == 201
        assert posted.json() == {"got": "hello"}
        assert posted.headers["Content-Type"] == "application/json"
        head = requests.head(server.url, timeout=5)
        assert head.headers["Content-Length"] == "12"
        assert head.headers["X-Kind"] == "head"
        assert head.content == b""
    finally:
        server.stop()


def test_an_answer_that_ends_the_connection_says_so() -> None:
    """A client asking for ``Connection: close`` is told the connection ends, so its pool never reuses it.

    Told nothing, urllib3 keeps the connection and may send the next request on it while the server
    closes: that request fails with RemoteDisconnected (a load test counted such a drop once).
    """

    class Keep(QuietHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.answer(200, b"ok")

    server = LocalServer(Keep)
    try:
        with requests.Session() as session:
            closing = session.get(server.url, headers={"Connection": "close"}, timeout=5)
            kept = session.get(server.url, timeout=5)
        assert closing.headers.get("Connection") == "close"
        assert "Connection" not in kept.headers  # a kept connection is not said to close
    finally:
        server.stop()
