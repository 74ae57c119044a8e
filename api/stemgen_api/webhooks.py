"""Standard Webhooks signing and delivery, shared by the runner and the operator.

Both must sign identically: the runner sends the normal callback, the operator sends the
failure callback when a pod died before the runner could. See https://www.standardwebhooks.com.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from . import contract as c

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def webhook_id(resource_uid: str, event_type: str) -> str:
    """Stable across every retry and every runner attempt, so receivers can de-duplicate."""
    digest = hashlib.sha256(f"{resource_uid}:{event_type}".encode()).hexdigest()[:32]
    return f"msg_{digest}"


def secret_bytes(secret: str) -> bytes:
    """`whsec_<base64>` secrets are decoded as the spec says; any other string is used as-is."""
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret[len(SECRET_PREFIX):])
    return secret.encode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value (`v1,<base64 HMAC-SHA256>`)."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: Mapping[str, str], body: bytes, tolerance_seconds: int = 300) -> bool:
    """Receiver-side check: any listed v1 signature matches and the timestamp is recent."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        message_id = lowered["webhook-id"]
        timestamp = int(lowered["webhook-timestamp"])
        signatures = lowered["webhook-signature"].split()
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_seconds:
        return False
    expected = sign(secret, message_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


def build_payload(event_type: str, data: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(timezone.utc)
    return {"type": event_type, "timestamp": now.isoformat().replace("+00:00", "Z"), "data": data}


class CallbackURLRefused(ValueError):
    """The callback URL points somewhere we must not send to (loopback, link-local metadata)."""


def check_callback_url(url: str, allow_private: bool = False,
                       resolve: Callable[[str], list[str]] | None = None) -> None:
    """Refuse URLs whose host resolves to loopback, link-local or unspecified addresses.

    Link-local covers 169.254.169.254, the cloud metadata endpoint: a callback must never be a
    way to read node credentials. Private ranges stay allowed: in-cluster receivers live there.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbackURLRefused(f"callback URL {url!r} is not an absolute http(s) URL")
    if allow_private:
        return
    resolve = resolve or _resolve
    try:
        addresses = resolve(parts.hostname)
    except OSError as error:  # an unresolvable host is a delivery problem, not a policy one
        log.warning("cannot resolve callback host %s: %s", parts.hostname, error)
        return
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
            raise CallbackURLRefused(
                f"callback URL host {parts.hostname!r} resolves to {ip}, a loopback/link-local address; "
                "allow it in the operator settings (callbackAllowPrivate) if this is intended")


def _resolve(host: str) -> list[str]:
    return sorted({info[4][0] for info in socket.getaddrinfo(host, None)})


@dataclass
class DeliveryAttempt:
    """One POST and what came of it; recorded in `status.callback` after every attempt."""

    number: int
    status_code: int | None
    error: str | None
    at: datetime

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass
class RetryPolicy:
    max_attempts: int = 6
    initial_delay: float = 1.0
    max_delay: float = 30.0
    max_total_seconds: float = 120.0
    jitter: float = 0.2
    timeout: float = 10.0


@dataclass
class DeliveryResult:
    webhook_id: str
    event_type: str
    attempts: list[DeliveryAttempt] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].delivered

    @property
    def state(self) -> c.CallbackState:
        return c.CallbackState.DELIVERED if self.delivered else c.CallbackState.FAILED


def _retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
        except (TypeError, ValueError):
            return None


def deliver(
    url: str,
    secret: str | None,
    message_id: str,
    payload: dict[str, Any],
    policy: RetryPolicy | None = None,
    on_attempt: Callable[[DeliveryAttempt], None] | None = None,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryResult:
    """POST `payload` with Standard Webhooks headers, retrying 429/5xx/network errors.

    Retries back off exponentially with jitter, honour Retry-After, and stop at
    `max_attempts` or `max_total_seconds` so a dead receiver cannot hold a Job forever.
    4xx other than 408/425/429 are final: the receiver has said no.
    """
    policy = policy or RetryPolicy()
    session = session or requests.Session()
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    result = DeliveryResult(webhook_id=message_id, event_type=str(payload.get("type", "")))
    started = time.monotonic()
    delay = policy.initial_delay
    for number in range(1, policy.max_attempts + 1):
        timestamp = int(time.time())
        headers = {"content-type": "application/json", "webhook-id": message_id,
                   "webhook-timestamp": str(timestamp), "user-agent": "stemgen-webhooks/1"}
        if secret:
            headers["webhook-signature"] = sign(secret, message_id, timestamp, body)
        retry_after = None
        try:
            response = session.post(url, data=body, headers=headers, timeout=policy.timeout)
            attempt = DeliveryAttempt(number, response.status_code, None if response.ok else
                                      f"HTTP {response.status_code}", datetime.now(timezone.utc))
            retryable = response.status_code in RETRYABLE_STATUS or response.status_code >= 500
            retry_after = _retry_after_seconds(response)
        except requests.RequestException as error:
            attempt = DeliveryAttempt(number, None, f"{type(error).__name__}: {error}"[:500],
                                      datetime.now(timezone.utc))
            retryable = True
        result.attempts.append(attempt)
        if on_attempt:
            on_attempt(attempt)
        if attempt.delivered or not retryable or number == policy.max_attempts:
            break
        wait = retry_after if retry_after is not None else delay * (1 + random.uniform(-policy.jitter, policy.jitter))
        wait = min(wait, policy.max_delay)
        if time.monotonic() - started + wait > policy.max_total_seconds:
            break
        log.info("callback attempt %d to %s failed (%s); retrying in %.1fs", number, url, attempt.error, wait)
        sleep(wait)
        delay = min(delay * 2, policy.max_delay)
    return result


def callback_status(result: DeliveryResult, sent_by: str) -> dict[str, Any]:
    """The `status.callback` object for a delivery so far."""
    last = result.attempts[-1] if result.attempts else None
    status: dict[str, Any] = {
        "state": result.state.value if last else c.CallbackState.PENDING.value,
        "webhookId": result.webhook_id,
        "eventType": result.event_type,
        "attempts": len(result.attempts),
        "sentBy": sent_by,
    }
    if last:
        status["lastAttemptTime"] = _rfc3339(last.at)
        status["lastStatusCode"] = last.status_code
        status["lastError"] = last.error
        if last.delivered:
            status["deliveredAt"] = _rfc3339(last.at)
    return status


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
