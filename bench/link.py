"""A network link of a given rate between this machine and some of its own loopback ports.

A bench on one machine talks to its registry and store over loopback, at
many Gbit/s and with no cost but CPU. A hosted CI runner reaches them over a
network. :func:`shaped` limits the traffic to and from the given TCP ports
on ``lo`` to ``mbit`` Mbit/s in each direction (Linux ``tc``: an HTB class
per direction, full duplex like a real link); every other loopback port
(the Docker engine's staging registry, say) is left alone. Rate only: no
latency is added, so request-heavy steps (a registry's HEAD checks, a
store's manifest reads) pay none of a real network's round trips.

Needs root and ``tc`` (Debian's iproute2). The qdisc is removed on exit; a
killed bench leaves it on ``lo``: ``tc qdisc del dev lo root`` removes it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

QUANTUM = "65536"
"""Bytes an HTB class sends per round: one whole loopback packet (64 KiB with GSO), below HTB's 200000 limit."""


def _tc(*args: str) -> None:
    proc = subprocess.run(["tc", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"tc {' '.join(args)} failed: {proc.stderr.strip()}")


def check() -> None:
    """SystemExit unless this process can shape loopback (root, ``tc``, ``lo`` not shaped already)."""
    if os.geteuid() != 0 or shutil.which("tc") is None:
        raise SystemExit("--link-mbit shapes loopback with tc: run as root with iproute2 installed")
    current = subprocess.run(["tc", "qdisc", "show", "dev", "lo"], capture_output=True, text=True).stdout
    if "htb" in current or "tbf" in current:
        raise SystemExit(f"lo is shaped already ({current.strip()}); remove it with: tc qdisc del dev lo root")


@contextmanager
def shaped(ports: list[int], mbit: int) -> Iterator[None]:
    """Traffic to and from ``ports`` on loopback at most ``mbit`` Mbit/s each way, for the block."""
    check()
    _tc("qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "1")
    try:
        _tc("class", "add", "dev", "lo", "parent", "1:", "classid", "1:1", "htb", "rate", "100gbit", "quantum", QUANTUM)
        rate = f"{mbit}mbit"
        for classid, direction in (("1:10", "dport"), ("1:20", "sport")):  # to the port, and back from it
            _tc(
                *("class", "add", "dev", "lo", "parent", "1:", "classid", classid, "htb"),
                *("rate", rate, "ceil", rate, "burst", "256k", "cburst", "256k", "quantum", QUANTUM),
            )
            for port in ports:
                _tc(
                    *("filter", "add", "dev", "lo", "protocol", "ip", "parent", "1:0", "prio", "1"),
                    *("u32", "match", "ip", direction, str(port), "0xffff", "flowid", classid),
                )
        yield
    finally:
        subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)
