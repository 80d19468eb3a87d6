"""The kit's fault proxy does what its plan says, in front of a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from shipway.testing.faults import FaultProxy

BODY = bytes(range(256)) * 1024  # 256 KiB


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def do_PUT(self) -> None:
        size = int(self.headers["Content-Length"])
        got = self.rfile.read(size)
        self.send_response(201 if len(got) == size else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(upstream: str, shipway_fault_proxy: Callable[..., FaultProxy]) -> FaultProxy:
    return shipway_fault_proxy(upstream)


def test_forwards_every_request_and_counts_them(proxy: FaultProxy) -> None:
    with requests.Session() as session:
        for _ in range(3):
            resp = session.get(f"{proxy.url}/x", timeout=5)
            assert resp.content == BODY
    assert proxy.count("forwarded", method="GET", path="/x") == 3


def test_a_burst_of_503_then_forwarding(proxy: FaultProxy) -> None:
    proxy.fail(503, times=2, retry_after=3)
    first = requests.get(f"{proxy.url}/a", timeout=5)
    second = requests.put(f"{proxy.url}/a", data=b"x" * 100_000, timeout=5)  # the body is read, then answered
    third = requests.get(f"{proxy.url}/a", timeout=5)
    assert (first.status_code, second.status_code, third.status_code) == (503, 503, 200)
    assert first.headers["Retry-After"] == "3"
    assert proxy.count("fail") == 2
    assert proxy.count("forwarded") == 1


def test_filters_pick_the_request_a_fault_applies_to(proxy: FaultProxy) -> None:
    proxy.fail(429, times=None, method="PUT")
    assert requests.get(f"{proxy.url}/a", timeout=5).status_code == 200
    assert requests.put(f"{proxy.url}/a", data=b"x", timeout=5).status_code == 429
    assert requests.put(f"{proxy.url}/a", data=b"x", timeout=5).status_code == 429
    proxy.clear()
    assert requests.put(f"{proxy.url}/a", data=b"x", timeout=5).status_code == 201


def test_reset_mid_answer_cuts_the_download(proxy: FaultProxy) -> None:
    proxy.reset(after_bytes=10_000)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(f"{proxy.url}/a", timeout=5).content  # noqa: B018
    assert requests.get(f"{proxy.url}/a", timeout=5).content == BODY  # once only


def test_reset_mid_upload_cuts_the_request(proxy: FaultProxy) -> None:
    proxy.reset(after_bytes=50_000, direction="request")
    with pytest.raises(requests.ConnectionError):
        requests.put(f"{proxy.url}/a", data=b"y" * 2_000_000, timeout=5)
    assert proxy.count("reset") == 1


def test_stall_never_answers_and_the_client_times_out(proxy: FaultProxy) -> None:
    proxy.stall()
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        requests.get(f"{proxy.url}/a", timeout=(2, 0.5))
    assert time.monotonic() - started < 3
    assert proxy.count("stall") == 1


def test_latency_is_added_before_forwarding(proxy: FaultProxy) -> None:
    proxy.latency = 0.3
    started = time.monotonic()
    assert requests.get(f"{proxy.url}/a", timeout=5).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_tcp_mode_forwards_bytes_and_refuses_http_faults(upstream: str, shipway_fault_proxy) -> None:
    proxy = shipway_fault_proxy(upstream, mode="tcp")
    with pytest.raises(ValueError, match="mode='http'"):
        proxy.fail(503)
    assert requests.get(f"{proxy.url}/a", timeout=5).content == BODY
    proxy.reset(after_bytes=0)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{proxy.url}/a", timeout=5)
    assert proxy.count("reset") == 1


def test_close_ends_stalled_connections(upstream: str) -> None:
    proxy = FaultProxy(upstream)
    proxy.stall()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        started = time.monotonic()
        proxy.close()
        assert sock.recv(10) == b""  # closed by the proxy, not left hanging
        assert time.monotonic() - started < 6
