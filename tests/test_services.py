"""The kit's start-and-poll helper: ready when the service answers, a clear error when it exits or stays silent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shipway.testing.services import ServiceError, free_port, start_registry, wait_for_http


def test_ready_once_the_service_answers(tmp_path: Path) -> None:
    reg = start_registry(tmp_path / "registry")  # the real registry, through wait_for_http
    try:
        wait_for_http(f"http://{reg.address}/v2/", "registry", 5, ready=lambda r: r.status_code == 401)
    finally:
        reg.stop()


def test_a_process_that_exits_is_named_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", "print('bad config: port'); raise SystemExit(3)"], stdout=out, stderr=out
        )
        with pytest.raises(ServiceError, match=r"^svc exited with 3: bad config: port"):
            wait_for_http(f"http://127.0.0.1:{free_port()}/", "svc", 30, process=process, log=log)


def test_silence_is_an_error_after_the_deadline_and_the_process_is_killed() -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with pytest.raises(ServiceError, match=r"svc did not answer on http://127\.0\.0\.1:\d+/ within 1s"):
        wait_for_http(f"http://127.0.0.1:{free_port()}/", "svc", 1, process=process)
    assert process.wait(timeout=10) != 0
