"""The http store through the kit's fault proxy, in front of a real HTTP server on 127.0.0.1.

Transient faults (a burst of 503, a 429 with Retry-After, a download reset
mid-body) are retried and the fetch succeeds, verified; persistent ones give one
error naming the store and the URL, exit code 7, in bounded time; a stall ends
in a timeout.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from shipway.backends.base import BackendContext
from shipway.backends.local_store import LocalModelStore, LocalStoreSettings
from shipway.domain import ModelRef
from shipway.errors import ExitCode
from shipway.retry import GaveUp
from shipway.testing.faults import FaultProxy
from shipway_http_store import HttpModelStore, HttpStoreSettings
from shipway_http_store.contract_tests import QuietHandler
from shipway_http_store.store import write_index

FAST = {"attempts": 4, "max_seconds": 20, "backoff": 0.05, "max_backoff": 0.2}
WEIGHTS = bytes(range(256)) * 8192  # 2 MiB


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A static HTTP server on 127.0.0.1 serving one published model (``m`` version 1); yields host:port."""
    root = tmp_path / "www"
    (root / "models").mkdir(parents=True)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(WEIGHTS)
    LocalModelStore(LocalStoreSettings(kind="local", path=str(root / "models"))).publish(tmp_path / "model", "m")
    write_index(root / "models")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def proxy(server: str, shipway_fault_proxy: Callable[..., FaultProxy]) -> FaultProxy:
    return shipway_fault_proxy(server)


def store(proxy: FaultProxy, tmp_path: Path, **retries: float) -> HttpModelStore:
    settings = HttpStoreSettings(kind="http", url=f"{proxy.url}/models", retries={**FAST, **retries})
    return HttpModelStore(settings, BackendContext(root=tmp_path, cache_dir=tmp_path / "cache"))


def test_transient_faults_are_retried_and_the_fetch_is_verified(proxy: FaultProxy, tmp_path: Path) -> None:
    proxy.fail(503, times=3, path="/index.json")
    proxy.fail(429, times=1, retry_after=1, path="/manifest.json")
    proxy.reset(after_bytes=500_000, path="/files/")
    started = time.monotonic()
    s = store(proxy, tmp_path)
    version = s.resolve(ModelRef(name="m"))
    fetched = s.fetch(version, tmp_path / "out")
    assert (fetched / "weights.bin").read_bytes() == WEIGHTS
    assert time.monotonic() - started >= 1  # the Retry-After was honoured
    assert proxy.count("fail", path="/index.json") == 3
    assert proxy.count("fail", path="/manifest.json") == 1
    assert proxy.count("reset", path="/files/") == 1
    assert proxy.count("forwarded", path="/files/") == 1  # fetched again, whole, once


def test_persistent_503_gives_one_clear_error_in_bounded_time(proxy: FaultProxy, tmp_path: Path) -> None:
    proxy.fail(503, times=None)
    started = time.monotonic()
    with pytest.raises(GaveUp) as caught:
        store(proxy, tmp_path).versions("m")
    assert time.monotonic() - started < 2
    assert str(caught.value).startswith(
        f"http store {proxy.url}/models: GET {proxy.url}/models/m/index.json: answered 503 Service Unavailable (4 tries"
    )
    assert caught.value.exit_code == ExitCode.BACKEND
    assert proxy.count("fail") == 4


def test_a_download_reset_every_time_gives_up(proxy: FaultProxy, tmp_path: Path) -> None:
    s = store(proxy, tmp_path)
    version = s.resolve(ModelRef(name="m"))
    proxy.reset(after_bytes=100_000, times=None, path="/files/")
    with pytest.raises(GaveUp, match="the connection broke mid-answer \\(4 tries"):
        s.fetch(version, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing a later run could use
    assert proxy.count("reset") == 4


def test_a_stall_ends_in_a_timeout(proxy: FaultProxy, tmp_path: Path) -> None:
    proxy.stall()
    started = time.monotonic()
    with pytest.raises(GaveUp, match="no answer in time"):
        store(proxy, tmp_path, attempts=2, read_timeout=1).versions("m")
    assert time.monotonic() - started < 3.5
    assert proxy.count("stall") == 2
