"""A bounded HTTP load generator for release tests: how many requests a cut-over drops, and for how long.

``with Load("http://127.0.0.1:8080/version") as load: ...`` runs ``workers``
threads, each at most ``limit`` requests and ``seconds`` long, until the block
ends. Each worker has its own ``requests.Session``; by default every request
asks for ``Connection: close``, so each one is a new connection (the case a
release can break). Every request is counted: successes (with the bodies
seen), failures by reason, and the longest outage: the longest stretch
between two successful requests that only failed requests started in.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import requests

__all__ = ["Load"]


@dataclass
class Load:
    """Bounded load on one URL; use as a context manager, then read the counts (see the module doc)."""

    url: str
    workers: int = 4
    limit: int = 5000
    """Requests per worker, at most."""
    seconds: float = 240.0
    """Wall time per worker, at most (the block may end sooner)."""
    timeout: float = 5.0
    pause: float = 0.01
    headers: Mapping[str, str] = field(default_factory=dict)
    new_connections: bool = True
    key: Callable[[str], str] = lambda body: body[:40]
    ok: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    bodies: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    """The first few failures in full (what, and when after the load started), to tell what broke."""
    _samples: list[tuple[float, bool]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _mutex: threading.Lock = field(default_factory=threading.Lock)
    _began: float = 0.0

    @classmethod
    def on_port(cls, port: int, path: str = "/version", **options: object) -> Load:
        """Load on ``http://127.0.0.1:PORT/PATH``."""
        return cls(f"http://127.0.0.1:{port}{path}", **options)  # type: ignore[arg-type]

    def _worker(self) -> None:
        end = time.monotonic() + self.seconds
        headers = {**self.headers, **({"Connection": "close"} if self.new_connections else {})}
        with requests.Session() as session:
            for _ in range(self.limit):
                if self._stop.is_set() or time.monotonic() > end:
                    return
                started = time.monotonic()
                try:
                    resp = session.get(self.url, headers=headers, timeout=self.timeout)
                    good, reason = resp.status_code == 200, f"HTTP {resp.status_code}"
                    body = resp.text.strip()
                except requests.RequestException as exc:
                    good, reason, body = False, type(exc).__name__, str(exc)
                with self._mutex:
                    self._samples.append((started, good))
                    if good:
                        self.ok += 1
                        self.bodies[self.key(body)] += 1
                    else:
                        self.failed[reason] += 1
                        if len(self.errors) < 5:
                            self.errors.append(f"+{started - self._began:.3f}s {reason}: {body[:300]}")
                time.sleep(self.pause)

    def __enter__(self) -> Load:
        self._began = time.monotonic()
        self._threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(self.workers)]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout + 30)

    @property
    def total(self) -> int:
        return self.ok + self.failures

    @property
    def failures(self) -> int:
        return sum(self.failed.values())

    @property
    def outage_ms(self) -> float:
        """The longest stretch between two successful requests (by start time) in which only failures started.

        Failures before the first success count from the first request; failures after
        the last success count until the last request started.
        """
        samples = sorted(self._samples)
        longest, since, failing = 0.0, samples[0][0] if samples else 0.0, False
        for started, good in samples:
            if good:
                if failing:
                    longest = max(longest, started - since)
                since, failing = started, False
            else:
                failing = True
        if failing:
            longest = max(longest, samples[-1][0] - since)
        return round(longest * 1000, 1)

    def report(self, what: str) -> str:
        """Print and return one line with every count (CI logs keep it)."""
        line = (
            f"[load] {what}: {self.total} requests, {self.ok} ok, {self.failures} failed"
            f" {dict(self.failed) or ''}; longest outage {self.outage_ms:.0f} ms; bodies {dict(self.bodies)}"
        )
        print(line + "".join(f"\n  {e}" for e in self.errors))
        return line
