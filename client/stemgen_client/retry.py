"""Retrying the API server's transient answers (429, 5xx) and lost connections.

Every client call goes through `call_with_retries`. Creates are safe to retry because names
are deterministic per request id: a create whose first attempt reached etcd but whose answer was
lost gets 409 on the retry, and the client then returns the existing resource.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import urllib3
from kubernetes.client.exceptions import ApiException

from .errors import TransientAPIError

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    initial_delay: float = 0.5
    max_delay: float = 10.0
    jitter: float = 0.2


def is_transient(error: BaseException) -> bool:
    if isinstance(error, ApiException):
        # status 0 is what the kubernetes client reports when no HTTP answer came back at all
        return error.status in RETRYABLE_STATUS or error.status == 0
    return isinstance(error, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


def retry_after(error: BaseException) -> float | None:
    """The server's Retry-After (seconds) on a 429/503, which the API server sets under load."""
    headers = getattr(error, "headers", None) or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def delays(policy: RetryPolicy) -> list[float]:
    """Exponential backoff between attempts (one fewer than attempts), before jitter."""
    return [min(policy.initial_delay * 2**n, policy.max_delay) for n in range(max(policy.attempts - 1, 0))]


def call_with_retries(func: Callable[[], T], what: str, policy: RetryPolicy | None = None,
                      sleep: Callable[[float], None] = time.sleep) -> T:
    policy = policy or RetryPolicy()
    waits = delays(policy)
    for attempt in range(policy.attempts):
        try:
            return func()
        except Exception as error:
            if not is_transient(error):
                raise
            if attempt >= len(waits):
                raise TransientAPIError(f"{what}: giving up after {policy.attempts} attempts: {_describe(error)}") \
                    from error
            wait = retry_after(error)
            if wait is None:
                wait = waits[attempt] * (1 + random.uniform(-policy.jitter, policy.jitter))
            wait = min(wait, policy.max_delay)
            log.warning("%s: transient error (%s); retry %d/%d in %.1fs", what, _describe(error),
                        attempt + 1, policy.attempts - 1, wait)
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def _describe(error: BaseException) -> str:
    """`HTTP 500 Internal Server Error: <the API server's own message>`, which usually says what
    broke (e.g. that it cannot reach the node's kubelet for a pod log)."""
    if isinstance(error, ApiException):
        text = f"HTTP {error.status} {error.reason}"
        try:
            message = json.loads(error.body or "").get("message")
        except (TypeError, ValueError, AttributeError):
            message = None
        return f"{text}: {message}" if message else text
    return f"{type(error).__name__}: {error}"
