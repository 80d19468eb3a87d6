"""A fault-injecting TCP/HTTP proxy on 127.0.0.1, to test a backend's retries and timeouts on a real service.

Put it between a client and the service (``FaultProxy("127.0.0.1:5000")``,
or the ``shipway_fault_proxy`` fixture) and give it a plan::

    proxy.fail(503, times=3)                 # answer the next 3 requests with 503 itself
    proxy.fail(429, times=1, retry_after=2)  # one 429 with Retry-After: 2
    proxy.reset(after_bytes=4096)            # forward the next request, reset its connection mid-answer
    proxy.reset(after_bytes=1024, direction="request", method="PUT")  # ... mid-upload of the next PUT
    proxy.stall()                            # read every request, never answer (until the client gives up)
    proxy.latency = 0.2                      # wait this long before forwarding each request
    proxy.clear()                            # no faults: forward everything

Faults queue up in order; each request takes the first one whose ``method`` and
``path`` filters match it (``times=None``: every matching request, for good).
In ``http`` mode (the default) every connection carries one request: the proxy
reads the request head, decides, and forwards it with ``Connection: close``, so
each request is seen and counted (:attr:`FaultProxy.events`). In ``tcp`` mode it
forwards bytes and counts connections (``fail`` is refused there). Everything
is bounded: a stall holds at most ``stall_seconds``, a connection at most
``max_connections`` at once; :meth:`close` ends every connection.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

Direction = Literal["request", "response"]
_REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
            504: "Gateway Timeout"}  # fmt: skip
_HEAD_LIMIT = 64 * 1024


@dataclass
class Fault:
    """One entry of the plan: what to do to ``times`` matching requests (None: all of them)."""

    action: Literal["fail", "reset", "stall"]
    times: int | None = 1
    status: int = 503
    retry_after: float | None = None
    after_bytes: int = 0
    direction: Direction = "response"
    method: str | None = None
    path: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (self.path is None or self.path in path)


@dataclass
class Event:
    """What the proxy did with one request (http mode) or connection (tcp mode)."""

    action: Literal["forwarded", "fail", "reset", "stall"]
    method: str = ""
    path: str = ""
    status: int | None = None
    at: float = field(default_factory=time.monotonic)


class FaultProxy:
    """A loopback proxy to ``target`` (``host:port``) that injects the faults of its plan.

    ``url`` / ``address`` / ``port`` say where clients connect. Thread-safe:
    change the plan while clients use it.
    """

    def __init__(
        self,
        target: str,
        mode: Literal["http", "tcp"] = "http",
        max_connections: int = 64,
        stall_seconds: float = 300,
    ) -> None:
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"target must be host:port, not {target!r}")
        self.target = (host.strip("[]"), int(port))
        self.mode = mode
        self.latency = 0.0
        self.stall_seconds = stall_seconds
        self.events: list[Event] = []
        self._plan: list[Fault] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._closed = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, name=f"fault-proxy-{self.port}", daemon=True)
        self._thread.start()

    # -- where clients connect ---------------------------------------------------------
    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- the plan ------------------------------------------------------------------------
    def fail(
        self,
        status: int = 503,
        times: int | None = 1,
        retry_after: float | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> FaultProxy:
        """Answer the next ``times`` matching requests with ``status`` (and ``Retry-After``) without forwarding."""
        if self.mode != "http":
            raise ValueError("fail() needs mode='http': a tcp proxy does not read requests")
        return self._add(Fault("fail", times, status=status, retry_after=retry_after, method=method, path=path))

    def reset(
        self,
        after_bytes: int = 0,
        times: int | None = 1,
        direction: Direction = "response",
        method: str | None = None,
        path: str | None = None,
    ) -> FaultProxy:
        """Forward the next ``times`` matching requests, then reset the connection after ``after_bytes``.

        ``direction="response"`` counts bytes of the answer, its head included (a
        download cut short); ``"request"`` bytes of the request body after its head
        (an upload cut short). In tcp mode, bytes of the connection either way.
        """
        fault = Fault("reset", times, after_bytes=after_bytes, direction=direction, method=method, path=path)
        return self._add(fault)

    def stall(self, times: int | None = None, method: str | None = None, path: str | None = None) -> FaultProxy:
        """Accept the next ``times`` matching requests and never answer (at most ``stall_seconds``)."""
        return self._add(Fault("stall", times, method=method, path=path))

    def clear(self) -> FaultProxy:
        """No faults from now on (latency stays)."""
        with self._lock:
            self._plan.clear()
        return self

    def count(self, action: str | None = None, method: str | None = None, path: str | None = None) -> int:
        """How many requests (connections in tcp mode) got ``action`` (any when None), filtered like faults."""
        with self._lock:
            return sum(
                1
                for e in self.events
                if (action is None or e.action == action)
                and (method is None or e.method == method)
                and (path is None or path in e.path)
            )

    def _add(self, fault: Fault) -> FaultProxy:
        if fault.times is not None and fault.times < 1:
            raise ValueError("times must be at least 1 (or None: every request)")
        with self._lock:
            self._plan.append(fault)
        return self

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._plan:
                if fault.matches(method, path):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times == 0:
                            self._plan.remove(fault)
                    return fault
            return None

    def _record(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Stop accepting and end every open connection (stalled ones too)."""
        self._closed.set()
        self._listener.close()
        with self._lock:
            open_now = list(self._sockets)
        for sock in open_now:
            _close(sock)
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._slots.acquire(timeout=5):
                _reset(client)  # more connections than allowed at once: refuse this one
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _track(self, sock: socket.socket, on: bool) -> None:
        with self._lock:
            (self._sockets.add if on else self._sockets.discard)(sock)

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        self._track(client, True)
        try:
            client.settimeout(self.stall_seconds)
            if self.mode == "tcp":
                fault = self._take("", "")
                head, method, path = b"", "", ""
            else:
                parsed = _read_head(client)
                if parsed is None:
                    return
                head, method, path, rest = parsed
                fault = self._take(method, path)
            if fault is not None and fault.action == "fail":
                self._record(Event("fail", method, path, fault.status))
                _answer(client, head, rest, fault)
                return
            if fault is not None and fault.action == "stall":
                self._record(Event("stall", method, path))
                _hold(client, self.stall_seconds, self._closed)
                return
            if self.latency:
                time.sleep(self.latency)
            upstream = socket.create_connection(self.target, timeout=10)
            self._track(upstream, True)
            upstream.settimeout(self.stall_seconds)
            limits: dict[Direction, int] = {}
            if fault is not None:  # reset
                limits[fault.direction] = fault.after_bytes
            self._record(Event("reset" if fault else "forwarded", method, path))
            if self.mode == "http":
                upstream.sendall(_close_after(head) + rest)
                if "request" in limits:
                    limits["request"] = max(0, limits["request"] - len(rest))
                    if limits["request"] == 0:
                        _reset(client)
                        return
            _pipe(client, upstream, limits, self.mode == "http", self._closed)
        except (OSError, ValueError):  # a peer went away, or close() closed the sockets under us
            pass
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    self._track(sock, False)
                    _close(sock)
            self._slots.release()


# -- helpers -------------------------------------------------------------------------------


def _read_head(sock: socket.socket) -> tuple[bytes, str, str, bytes] | None:
    """(head, method, path, body bytes already read) of one HTTP request, or None if the client went away."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
        if len(data) > _HEAD_LIMIT:
            return None
    head, _, rest = data.partition(b"\r\n\r\n")
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    if len(parts) < 2:
        return None
    return head + b"\r\n\r\n", parts[0].decode("latin-1"), parts[1].decode("latin-1"), rest


def _headers(head: bytes) -> dict[str, str]:
    out = {}
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            out[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
    return out


def _close_after(head: bytes) -> bytes:
    """The request head with ``Connection: close``: one request per connection, so every request is seen."""
    lines = [line for line in head.rstrip(b"\r\n").split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n"


def _answer(client: socket.socket, head: bytes, rest: bytes, fault: Fault) -> None:
    """Answer a request with the fault's status, after reading its body (unless the client awaits 100-continue)."""
    headers = _headers(head)
    if headers.get("expect", "").lower() != "100-continue":
        _drain(client, headers, rest)
    body = f"fault injected by shipway.testing.faults: {fault.status}\n".encode()
    lines = [
        f"HTTP/1.1 {fault.status} {_REASONS.get(fault.status, 'Error')}",
        "Content-Type: text/plain",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if fault.retry_after is not None:
        lines.append(f"Retry-After: {fault.retry_after:g}")
    client.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    client.shutdown(socket.SHUT_WR)
    # Read until the client closes (briefly): closing with unread bytes would reset the answer away.
    client.settimeout(1.0)
    while client.recv(65536):
        pass


def _drain(client: socket.socket, headers: dict[str, str], rest: bytes) -> None:
    """Read (and drop) the request body, so the client reads the answer instead of a broken pipe."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        data = rest
        while not data.endswith(b"0\r\n\r\n"):
            chunk = client.recv(65536)
            if not chunk:
                return
            data = data[-8:] + chunk
        return
    left = int(headers.get("content-length", "0") or 0) - len(rest)
    while left > 0:
        chunk = client.recv(min(left, 1 << 20))
        if not chunk:
            return
        left -= len(chunk)


def _hold(client: socket.socket, seconds: float, closed: threading.Event) -> None:
    """Keep the connection open without answering until the client leaves, the proxy closes, or ``seconds``."""
    end = time.monotonic() + seconds
    client.settimeout(0.2)
    while not closed.is_set() and time.monotonic() < end:
        try:
            if not client.recv(65536):
                return
        except TimeoutError:
            continue


def _pipe(
    client: socket.socket, upstream: socket.socket, limits: dict[Direction, int], http: bool, closed: threading.Event
) -> None:
    """Copy bytes both ways (one thread, select) until the answer ends; reset the client at a direction's limit."""
    left: dict[Direction, int | None] = {"request": limits.get("request"), "response": limits.get("response")}
    head: bytes | None = b"" if http else None
    peers: dict[socket.socket, tuple[socket.socket, Direction]] = {
        client: (upstream, "request"),
        upstream: (client, "response"),
    }
    open_ = {client, upstream}
    while upstream in open_ and not closed.is_set():
        ready, _, _ = select.select(list(open_), [], [], 0.5)
        for src in ready:
            dst, direction = peers[src]
            chunk = src.recv(65536)
            if not chunk:
                open_.discard(src)
                if direction == "request":
                    upstream.shutdown(socket.SHUT_WR)
                continue
            if direction == "response" and head is not None:  # the answer says Connection: close too
                head += chunk
                if b"\r\n\r\n" not in head and len(head) < _HEAD_LIMIT:
                    continue
                first, sep, body = head.partition(b"\r\n\r\n")
                chunk, head = (_close_after(first + sep) + body if sep else head), None
            limit = left[direction]
            if limit is not None and len(chunk) >= limit:
                dst.sendall(chunk[:limit])
                _reset(client)
                return
            dst.sendall(chunk)
            if limit is not None:
                left[direction] = limit - len(chunk)


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): the peer sees 'connection reset', not a clean end."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
