"""Retries and timeouts for the network calls backends make: one policy, set per backend.

Every backend section takes a ``retries`` block (:class:`RetrySettings`, defaults
below). What this module retries, and nothing else:

- a connection that could not be opened (refused, connect timeout): any request,
  since nothing was sent;
- a connection dropped or reset mid-way, or no answer within the read timeout:
  idempotent requests only (GET, HEAD, PUT of a whole object, DELETE, OPTIONS);
- the answers 429, 502, 503 and 504: idempotent requests, and 429 for any
  request (the server says it did not process it).

Waits grow exponentially with full jitter (a random wait up to ``backoff``,
``2 * backoff``, ..., capped at ``max_backoff``); a ``Retry-After`` the server sends
is honoured when longer. Tries stop after ``attempts`` or when the next wait
would pass ``max_seconds`` since the first try; each try's timeouts shrink to the
time left, so one call never runs much past ``max_seconds``. Giving up raises
:class:`GaveUp` (exit code 7) naming the endpoint, what it answered last and the
tries made. Never retried: other 4xx answers (credentials, not found,
conflicts), 500, and a non-idempotent request the server may have processed; an
operation made of several requests (the OCI blob upload: POST a session, PUT the
bytes) is retried whole, from a new session, through :func:`call`.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from shipway.errors import BackendError

if TYPE_CHECKING:  # requests and tenacity load on the first network call, not with the config
    import requests
    from tenacity import RetryCallState

log = logging.getLogger("shipway.retry")
T = TypeVar("T")

RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""Answers worth another try: too many requests, bad gateway, unavailable, gateway timeout."""
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
"""Methods whose repetition leaves the same state as one request."""


class RetrySettings(BaseModel):
    """``retries: {attempts: 5, max_seconds: 120}``: how a backend retries and times out its network calls."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    attempts: int = Field(5, ge=1, le=20, description="Tries of one request or operation, the first included")
    max_seconds: float = Field(
        120, gt=0, le=3600, description="Time one request or operation may take, its tries and waits included"
    )
    backoff: float = Field(0.5, ge=0, le=60, description="Cap of the first wait; doubles each try (full jitter)")
    max_backoff: float = Field(8, ge=0, le=300, description="Longest wait between tries (a Retry-After may be longer)")
    connect_timeout: float = Field(10, gt=0, le=300, description="Seconds to open a connection")
    read_timeout: float = Field(30, gt=0, le=3600, description="Seconds to wait for an answer (between bytes)")

    def once(self) -> RetrySettings:
        """The same timeouts with a single try (for requests inside an operation that is retried whole)."""
        return self.model_copy(update={"attempts": 1})


class Transient(Exception):
    """A try failed in a way worth another one (raised by the function :func:`call` runs)."""

    def __init__(self, reason: str, retry_after: float | None = None, response: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.response = response


class GaveUp(BackendError):
    """The retries of one request or operation are spent; the message names the endpoint and the last failure."""

    def __init__(self, message: str, tries: int, elapsed: float) -> None:
        super().__init__(message)
        self.tries = tries
        self.elapsed = elapsed


class Deadline:
    """The time budget of one call: timeouts for the next try, never past the end."""

    def __init__(self, policy: RetrySettings) -> None:
        self.policy = policy
        self.start = time.monotonic()

    def remaining(self) -> float:
        return self.policy.max_seconds - (time.monotonic() - self.start)

    def timeout(self) -> tuple[float, float]:
        """(connect, read) seconds for the next try."""
        left = max(self.remaining(), 0.5)
        return min(self.policy.connect_timeout, left), min(self.policy.read_timeout, left)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def call(
    fn: Callable[[Deadline], T],
    policy: RetrySettings,
    what: str,
    transient: Callable[[BaseException], bool] | None = None,
    describe: Callable[[BaseException], str] | None = None,
) -> T:
    """``fn(deadline)`` until it returns, raises a non-transient error, or the policy is spent.

    ``transient(exc)`` says whether an exception is worth another try
    (:class:`Transient` always is); ``what`` names the endpoint and operation in
    the :class:`GaveUp` message; ``describe(exc)`` words the last failure.
    """
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_before_delay
    from tenacity.wait import wait_random_exponential

    deadline = Deadline(policy)
    jitter = wait_random_exponential(multiplier=policy.backoff, max=policy.max_backoff)

    def is_transient(exc: BaseException) -> bool:
        return isinstance(exc, Transient) or (transient is not None and transient(exc))

    def wait(state: RetryCallState) -> float:
        delay = float(jitter(state))
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Transient) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        return delay

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wording = (describe or _describe)(exc) if exc else "failed"
        upcoming = state.upcoming_sleep
        log.info("%s: %s; try %d of %d in %.1fs", what, wording, state.attempt_number + 1, policy.attempts, upcoming)

    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts) | stop_before_delay(policy.max_seconds),
        wait=wait,
        retry=retry_if_exception(is_transient),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(fn, deadline)
    except Exception as exc:
        if not is_transient(exc):
            raise
        tries = retrying.statistics.get("attempt_number", 1)
        elapsed = time.monotonic() - deadline.start
        wording = (describe or _describe)(exc)
        plural = "try" if tries == 1 else "tries"
        lead = what if isinstance(exc, Transient) else f"cannot reach {what}"
        raise GaveUp(
            f"{lead}: {wording} ({tries} {plural} in {elapsed:.1f}s; retries.attempts and retries.max_seconds "
            "of this backend set how long shipway keeps trying)",
            tries,
            elapsed,
        ) from None


# -- requests -----------------------------------------------------------------------------


def requests_transient(method: str) -> Callable[[BaseException], bool]:
    """Which exceptions of a ``requests`` call with ``method`` are worth another try."""
    import requests

    idempotent = method.upper() in IDEMPOTENT_METHODS

    def check(exc: BaseException) -> bool:
        if isinstance(exc, requests.ConnectTimeout):
            return True  # nothing was sent
        if isinstance(exc, requests.ConnectionError | requests.Timeout | requests.exceptions.ChunkedEncodingError):
            return idempotent or _not_connected(exc)
        return False

    return check


def _not_connected(exc: BaseException) -> bool:
    """Whether a ConnectionError happened before the request was sent (connection refused, no route)."""
    text = repr(exc)
    return "NewConnectionError" in text or "Connection refused" in text


def describe_requests(exc: BaseException) -> str:
    """A short wording of a failed try: ``answered 503``, ``connection refused``, ``no answer within 5.0s``."""
    if isinstance(exc, Transient):
        return exc.reason
    import requests

    if isinstance(exc, requests.ConnectTimeout):
        return "could not connect in time (connect timeout)"
    if isinstance(exc, requests.ReadTimeout):
        return "no answer in time (read timeout)"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the connection broke mid-answer"
    return _describe(exc)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, Transient):
        return exc.reason
    text = str(exc)
    for pattern, wording in (
        (r"Connection refused", "connection refused"),
        (r"Connection reset|ConnectionResetError|RemoteDisconnected|closed connection", "connection reset"),
        (r"Name or service not known|nodename nor servname|getaddrinfo failed", "host name not found"),
        (r"timed out|Timeout", "timed out"),
    ):
        if re.search(pattern, text):
            return wording
    return f"{type(exc).__name__}: {text[:160]}"


def send_once(
    session: requests.Session,
    method: str,
    url: str,
    deadline: Deadline,
    statuses: Collection[int] = RETRY_STATUSES,
    **kwargs: Any,
) -> requests.Response:
    """One try: the response, or :class:`Transient` when its status is in ``statuses``."""
    resp = session.request(method, url, timeout=deadline.timeout(), **kwargs)
    if resp.status_code in statuses:
        reason = f"answered {resp.status_code} {resp.reason or ''}".rstrip()
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        resp.close()
        raise Transient(reason, retry_after, resp)
    return resp


def send(
    session: requests.Session,
    method: str,
    url: str,
    policy: RetrySettings,
    where: str,
    idempotent: bool | None = None,
    **kwargs: Any,
) -> requests.Response:
    """``session.request`` under ``policy``: timeouts on every try, the retries this module describes.

    Returns the first response that is not worth retrying (any status: the
    caller judges it); raises :class:`GaveUp` naming ``where`` and ``url`` when
    the tries are spent. ``idempotent`` overrides what the method says (a POST
    that only starts something, e.g. an OCI blob mount, is safe to repeat). A
    streamed body must be readable again (bytes, or an object whose ``__iter__``
    starts over).
    """
    method = method.upper()
    safe = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
    statuses = RETRY_STATUSES if safe else frozenset({429})
    return call(
        lambda deadline: send_once(session, method, url, deadline, statuses, **kwargs),
        policy,
        f"{where}: {method} {_strip_query(url)}",
        transient=requests_transient("GET" if safe else method),
        describe=describe_requests,
    )


def _strip_query(url: str) -> str:
    """A URL without its query (upload session URLs carry state, presigned ones carry signatures)."""
    return url.split("?", 1)[0]


# -- SDKs with retry policies of their own --------------------------------------------------


def urllib3_retry(policy: RetrySettings, methods: Collection[str] = IDEMPOTENT_METHODS) -> Any:
    """A ``urllib3.util.Retry`` with this policy's statuses, attempts and backoff (for SDKs on urllib3).

    ``methods`` are retried after a broken answer or a retryable status; a
    connection that could not be opened is retried for any method. urllib3
    honours Retry-After; it cannot bound the total time (the timeouts of each
    request still do).
    """
    from urllib3.util.retry import Retry

    return Retry(
        total=policy.attempts - 1,
        connect=policy.attempts - 1,
        read=policy.attempts - 1,
        status=policy.attempts - 1,
        other=0,
        allowed_methods=frozenset(methods),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=policy.backoff,
        backoff_max=policy.max_backoff,
        backoff_jitter=policy.backoff,
        respect_retry_after_header=True,
        raise_on_status=False,
        raise_on_redirect=False,
        redirect=0,
    )
