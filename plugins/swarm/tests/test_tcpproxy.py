"""The front proxy on its own, on 127.0.0.1: which failures move a connection to another task, and which do not."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

from shipway.testing.services import free_port
from shipway_swarm.tcpproxy import DRAIN, Address, Proxy, Upstreams

REQUEST = b"POST /score HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello"


class FixedUpstreams(Upstreams):
    """Tasks at fixed addresses, in order (instead of Swarm's DNS)."""

    def __init__(self, addresses: list[Address]) -> None:
        super().__init__("tasks.test", 0)
        self.fixed = addresses

    async def resolve(self, force: bool = False) -> list[Address]:
        return list(self.fixed)

    async def pick(self, tried: set[Address]) -> Address | None:
        return next((a for a in self.fixed if a not in tried), None)


async def _task(behaviour: str, seen: list[bytes]) -> tuple[asyncio.Server, Address]:
    """A fake task: ``answer`` echoes the request, ``close`` reads it and hangs up, ``partial`` answers half."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readexactly(len(REQUEST))
        seen.append(data)
        if behaviour == "answer":
            writer.write(b"HTTP/1.0 200 OK\r\n\r\n" + data)
        elif behaviour == "partial":
            writer.write(b"HTTP/1.0 200 OK\r\n")
        await writer.drain()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    return server, ("127.0.0.1", port)


async def _through_proxy(addresses: list[Address]) -> tuple[bytes, Proxy]:
    proxy = Proxy(FixedUpstreams(addresses), connect_timeout=1, retry_window=5, replay_limit=1024)
    port = free_port()
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", port)
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    return answer, proxy


def test_a_refused_connection_and_a_task_that_hangs_up_unanswered_move_the_request() -> None:
    async def scenario() -> None:
        closed_seen: list[bytes] = []
        good_seen: list[bytes] = []
        closing, closing_at = await _task("close", closed_seen)
        good, good_at = await _task("answer", good_seen)
        nothing = ("127.0.0.1", free_port())  # no task listens here: connection refused
        async with closing, good:
            answer, proxy = await _through_proxy([nothing, closing_at, good_at])
        assert answer == b"HTTP/1.0 200 OK\r\n\r\n" + REQUEST  # the request bytes were replayed whole
        assert closed_seen == [REQUEST]
        assert good_seen == [REQUEST]
        assert proxy.retries == 2

    asyncio.run(scenario())


def test_an_answered_request_is_never_replayed() -> None:
    async def scenario() -> None:
        partial_seen: list[bytes] = []
        good_seen: list[bytes] = []
        partial, partial_at = await _task("partial", partial_seen)
        good, good_at = await _task("answer", good_seen)
        async with partial, good:
            answer, proxy = await _through_proxy([partial_at, good_at])
        assert answer == b"HTTP/1.0 200 OK\r\n"  # what the task sent, then the close: no second try
        assert good_seen == []
        assert proxy.retries == 0

    asyncio.run(scenario())


def test_replay_limit_zero_never_replays() -> None:
    async def scenario() -> None:
        closed_seen: list[bytes] = []
        good_seen: list[bytes] = []
        closing, closing_at = await _task("close", closed_seen)
        good, good_at = await _task("answer", good_seen)
        async with closing, good:
            proxy = Proxy(FixedUpstreams([closing_at, good_at]), connect_timeout=1, retry_window=5, replay_limit=0)
            port = free_port()
            server = await asyncio.start_server(proxy.handle, "127.0.0.1", port)
            async with server:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(REQUEST)
                await writer.drain()
                answer = await asyncio.wait_for(reader.read(), 10)
                writer.close()
        assert answer == b""  # the client sees the task's hang-up, as without a proxy
        assert good_seen == []

    asyncio.run(scenario())


def test_a_task_that_failed_recently_is_picked_last() -> None:
    class Two(Upstreams):
        async def resolve(self, force: bool = False) -> list[Address]:
            return [("10.0.0.2", 8000), ("10.0.0.3", 8000)]

    async def scenario() -> None:
        upstreams = Two("tasks.test", 8000)
        upstreams.mark_bad(("10.0.0.2", 8000))
        picks = {await upstreams.pick(set()) for _ in range(4)}
        assert picks == {("10.0.0.3", 8000)}
        assert await upstreams.pick({("10.0.0.3", 8000)}) == ("10.0.0.2", 8000)  # still better than nothing
        assert await upstreams.pick({("10.0.0.2", 8000), ("10.0.0.3", 8000)}) is None

    asyncio.run(scenario())


def _start_proxy(upstream_port: int) -> tuple[subprocess.Popen[bytes], int]:
    """The proxy as Swarm runs it: its own process, stopped by SIGTERM."""
    port = free_port()
    args = ["--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{upstream_port}"]
    proc = subprocess.Popen([sys.executable, "-m", "shipway_swarm.tcpproxy", *args], stderr=subprocess.PIPE)
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()  # no probe connection: it would be an open one to drain
    if "listening on" not in line:
        proc.kill()
        raise AssertionError(f"the proxy did not start: {line}{proc.communicate()[1].decode()}")
    return proc, port


def _refused(port: int, within: float) -> bool:
    """Whether a connection to ``port`` is refused within ``within`` seconds."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            return True
        time.sleep(0.05)
    return False


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)


def test_sigterm_stops_an_idle_proxy_at_once() -> None:
    proc, _ = _start_proxy(free_port())
    try:
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - started < DRAIN  # nothing open: no drain, no wait for SIGKILL
    finally:
        proc.kill()


@contextlib.contextmanager
def _request_in_flight() -> Iterator[tuple[subprocess.Popen[bytes], int, socket.socket, socket.socket]]:
    """A proxy carrying one request that reached its task, unanswered: (proxy, its port, client, task)."""
    upstream = socket.create_server(("127.0.0.1", 0))
    proc, port = _start_proxy(upstream.getsockname()[1])
    try:
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        client.sendall(REQUEST)
        task, _ = upstream.accept()
        assert task.recv(len(REQUEST)) == REQUEST
        with task, client:
            yield proc, port, client, task
    finally:
        proc.kill()
        upstream.close()


def test_sigterm_lets_an_open_request_finish_and_refuses_new_ones() -> None:
    with _request_in_flight() as (proc, port, client, task):
        proc.send_signal(signal.SIGTERM)  # Swarm stops the proxy while a request is open
        assert _refused(port, within=DRAIN), "the stopping proxy still accepts connections"
        task.sendall(b"HTTP/1.0 200 OK\r\n\r\ndone")
        task.close()
        assert _read_all(client) == b"HTTP/1.0 200 OK\r\n\r\ndone"
        assert proc.wait(timeout=5) == 0


def test_sigterm_cuts_a_request_still_open_after_the_drain() -> None:
    with _request_in_flight() as (proc, _, client, _task):  # a task that never answers
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert DRAIN <= time.monotonic() - started < DRAIN + 1  # within the 2 s grace: never SIGKILLed
        assert _read_all(client) == b""  # cut, not answered
        assert proc.stderr is not None
        assert "Traceback" not in proc.stderr.read().decode()
