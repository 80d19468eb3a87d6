"""A small TCP proxy in front of a Swarm service's tasks: the stable address of a zero-downtime release.

Runs inside the proxy service (python3 standard library only). For every
client connection it resolves ``tasks.<service>`` through Swarm's DNS
(127.0.0.11, which lists only tasks that passed their health check, and drops
a task before Swarm stops it), connects to one task round-robin, and pipes
bytes both ways. A task that refuses the connection, or closes it before
sending any byte back (stopped mid-request), is marked bad for a few seconds
and the connection moves to another task, re-sending the request bytes read so
far (up to ``--replay-limit``; HAProxy's ``retry-on conn-failure
empty-response``). Once a task has answered, bytes are never replayed.

On SIGTERM (Swarm stopping the proxy's task) it stops accepting, lets open
connections finish for up to ``DRAIN`` seconds, cuts those still open, and
exits: as the container's
first process it would otherwise ignore the signal and wait out its stop
grace period for SIGKILL.

    python3 tcpproxy.py --listen 0.0.0.0:8080 --upstream tasks.app-prod:8000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import signal
import socket
import sys
import time

log = logging.getLogger("shipway-proxy")
CHUNK = 65536
DRAIN = 1.5
"""Seconds a stopping proxy lets open connections finish (under the proxy service's 2 s stop grace period)."""
Address = tuple[str, int]


class Upstreams:
    """The task addresses behind a DNS name: cached briefly, rotated, with recently failed ones skipped."""

    def __init__(self, host: str, port: int, ttl: float = 0.5, penalty: float = 3.0) -> None:
        self.host, self.port, self.ttl, self.penalty = host, port, ttl, penalty
        self._addresses: list[Address] = []
        self._resolved = 0.0
        self._bad: dict[Address, float] = {}
        self._turn = itertools.count()

    async def resolve(self, force: bool = False) -> list[Address]:
        now = time.monotonic()
        if force or now - self._resolved > self.ttl:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    self.host, self.port, family=socket.AF_INET, type=socket.SOCK_STREAM
                )
                self._addresses = sorted({(str(info[4][0]), self.port) for info in infos})
            except OSError:
                self._addresses = []  # no healthy task right now (NXDOMAIN)
            self._resolved = now
        return self._addresses

    def mark_bad(self, address: Address) -> None:
        self._bad[address] = time.monotonic() + self.penalty

    async def pick(self, tried: set[Address]) -> Address | None:
        """The next address not tried by this connection, healthy ones first; None if there is none."""
        for force in (False, True):
            found = [a for a in await self.resolve(force) if a not in tried]
            if found:
                now = time.monotonic()
                good = [a for a in found if self._bad.get(a, 0) < now] or found
                return good[next(self._turn) % len(good)]
        return None


class Proxy:
    """Accepts connections and carries each one to a task, retrying as the module docstring says."""

    def __init__(self, upstreams: Upstreams, connect_timeout: float, retry_window: float, replay_limit: int) -> None:
        self.upstreams = upstreams
        self.connect_timeout = connect_timeout
        self.retry_window = retry_window
        self.replay_limit = replay_limit
        self.retries = 0
        self.clients: set[asyncio.StreamWriter] = set()

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.clients.add(client_w)
        try:
            await self._handle(client_r, client_w)
        except asyncio.CancelledError:  # still open when the stopping proxy ended: cut, as SIGKILL would
            client_w.transport.abort()
        finally:
            self.clients.discard(client_w)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + self.retry_window
        sent = bytearray()  # request bytes a task took but did not answer: replayed on the next task
        state = {"client_eof": False, "replayable": True}
        tried: set[Address] = set()
        try:
            while loop.time() < end:
                address = await self.upstreams.pick(tried)
                if address is None:
                    tried.clear()
                    await asyncio.sleep(0.1)
                    continue
                tried.add(address)
                try:
                    up_r, up_w = await asyncio.wait_for(asyncio.open_connection(*address), self.connect_timeout)
                except (OSError, TimeoutError):
                    self.upstreams.mark_bad(address)
                    self.retries += 1
                    continue
                answered = await self._carry(client_r, client_w, up_r, up_w, sent, state)
                if answered or not state["replayable"]:
                    return
                self.upstreams.mark_bad(address)
                self.retries += 1
                log.info("task %s:%s closed before answering: retrying on another task", *address)
        finally:
            with contextlib.suppress(OSError):
                client_w.close()

    async def _carry(
        self,
        client_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        up_r: asyncio.StreamReader,
        up_w: asyncio.StreamWriter,
        sent: bytearray,
        state: dict[str, bool],
    ) -> bool:
        """Pipe both ways until either side ends; True once the task has sent any byte back."""
        answered = False
        try:
            if sent:
                up_w.write(bytes(sent))
            if state["client_eof"]:
                up_w.write_eof()
            await up_w.drain()
        except OSError:
            return False

        async def upstream() -> None:
            while True:
                if state["client_eof"]:
                    await asyncio.Event().wait()  # nothing more to send; wait for the answer side
                data = await client_r.read(CHUNK)
                if not data:
                    state["client_eof"] = True
                    with contextlib.suppress(OSError):
                        up_w.write_eof()
                    continue
                if not answered:
                    if len(sent) + len(data) <= self.replay_limit:
                        sent.extend(data)
                    else:
                        state["replayable"] = False
                up_w.write(data)
                await up_w.drain()

        to_task = asyncio.ensure_future(upstream())
        try:
            while True:
                try:
                    data = await up_r.read(CHUNK)
                except OSError:
                    break
                if not data:
                    break
                answered = True
                sent.clear()
                client_w.write(data)
                await client_w.drain()
            if answered:
                with contextlib.suppress(OSError):
                    if client_w.can_write_eof():
                        client_w.write_eof()
        except OSError:
            pass
        finally:
            to_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await to_task
            with contextlib.suppress(OSError):
                up_w.close()
        return answered


async def serve(listen: str, upstream: str, args: argparse.Namespace) -> None:
    host, _, port = listen.rpartition(":")
    up_host, _, up_port = upstream.rpartition(":")
    proxy = Proxy(Upstreams(up_host, int(up_port)), args.connect_timeout, args.retry_window, args.replay_limit)
    server = await asyncio.start_server(proxy.handle, host or "0.0.0.0", int(port), reuse_address=True, backlog=512)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    log.info("listening on %s, upstream %s", listen, upstream)
    await stopping.wait()
    server.close()
    log.info("SIGTERM: no new connections, %d open", len(proxy.clients))
    end = loop.time() + DRAIN
    while proxy.clients and loop.time() < end:
        await asyncio.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT to accept connections on")
    parser.add_argument("--upstream", required=True, help="NAME:PORT of the tasks, e.g. tasks.app-prod:8000")
    parser.add_argument("--connect-timeout", type=float, default=1.0)
    parser.add_argument("--retry-window", type=float, default=10.0)
    parser.add_argument("--replay-limit", type=int, default=65536)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.listen, args.upstream, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
