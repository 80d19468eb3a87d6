"""Readiness polling and the HTTP checks of the ``verify`` section."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipway.config import VerifyCheck
from shipway.domain import CheckResult
from shipway.errors import ConfigError

if TYPE_CHECKING:
    import requests

FAST_POLL_SECONDS = 3.0
"""How long :func:`wait_ready` polls every 50 ms before it backs off."""


def wait_ready(
    base_url: str,
    path: str,
    deadline: float,
    problem: Callable[[], str | None] | None = None,
) -> str | None:
    """Poll ``base_url + path`` until it answers 200; no fixed sleeps.

    ``problem`` is asked between polls and returns a reason to stop early (a
    container that exited, say). Returns None when ready, else why not.
    """
    import requests  # loaded when a check runs, not with the orchestrators that import this module

    start = time.monotonic()
    end = start + deadline
    delay = 0.05
    last = "no answer yet"
    while True:
        try:
            resp = requests.get(base_url + path, timeout=min(5.0, max(0.5, end - time.monotonic())))
            if resp.status_code == 200:
                return None
            last = f"{path} answered {resp.status_code}"
        except requests.RequestException as exc:
            last = f"{path}: {type(exc).__name__}"
        if problem is not None:
            reason = problem()
            if reason:
                return reason
        if time.monotonic() + delay > end:
            return f"not ready after {deadline:.0f}s ({last})"
        time.sleep(delay)
        # Every 50 ms while most apps start (readiness seen within 50 ms, not up to the last back-off
        # step), then backing off to 1 s for apps that take long.
        if time.monotonic() - start > FAST_POLL_SECONDS:
            delay = min(delay * 1.5, 1.0)


def load_body(check: VerifyCheck, base: Path) -> Any:
    if check.body_file is None:
        return check.body
    path = base / check.body_file
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"verify: body_file {path} not found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"verify: body_file {path} is not JSON: {exc}") from None


def run_checks(base_url: str, checks: list[VerifyCheck], base: Path) -> list[CheckResult]:
    """Run every check against ``base_url``; each result says what differed."""
    return [run_check(base_url, check, base) for check in checks]


def run_check(base_url: str, check: VerifyCheck, base: Path) -> CheckResult:
    import requests

    body = load_body(check, base)
    try:
        resp = requests.request(
            check.method,
            base_url + check.path,
            json=body if body is not None else None,
            headers=check.headers,
            timeout=check.timeout,
        )
    except requests.RequestException as exc:
        return CheckResult(check=check.request, ok=False, detail=f"request failed: {type(exc).__name__}: {exc}")
    result = _judge(check, resp)
    return result.model_copy(update={"response": excerpt(resp.text)})


def excerpt(text: str, limit: int = 300) -> str:
    """The first ``limit`` characters of a response body, whitespace collapsed."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _judge(check: VerifyCheck, resp: requests.Response) -> CheckResult:
    """Compare one response with what the check expects."""
    if resp.status_code != check.expect_status:
        return CheckResult(
            check=check.request,
            ok=False,
            detail=f"status {resp.status_code}, expected {check.expect_status}: {resp.text[:200]}",
        )
    if check.expect_json is not None:
        try:
            actual = resp.json()
        except ValueError:
            return CheckResult(check=check.request, ok=False, detail=f"response is not JSON: {resp.text[:200]}")
        mismatch = json_mismatch(check.expect_json, actual)
        if mismatch:
            return CheckResult(check=check.request, ok=False, detail=mismatch)
    return CheckResult(check=check.request, ok=True, detail=f"status {resp.status_code}")


def json_mismatch(expected: Any, actual: Any, where: str = "$") -> str | None:
    """None when every key/item of ``expected`` matches ``actual``; else the first difference."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{where}: expected an object, got {json.dumps(actual)[:80]}"
        for key, value in expected.items():
            if key not in actual:
                return f"{where}.{key}: missing"
            found = json_mismatch(value, actual[key], f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return f"{where}: expected {json.dumps(expected)[:80]}, got {json.dumps(actual)[:80]}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            found = json_mismatch(e, a, f"{where}[{i}]")
            if found:
                return found
        return None
    if expected != actual or (type(expected) is bool and type(actual) is not bool):
        return f"{where}: expected {json.dumps(expected)}, got {json.dumps(actual)[:80]}"
    return None
