"""The request's callback: a signed Standard Webhooks POST, sent only after status is final.

Signing and delivery are the shared `stemgen_api.webhooks` code, so the operator's failure
callbacks (for pods that died) are byte-for-byte the same kind of message. Every attempt is
written to `status.callback` as it happens, so `kubectl get -o yaml` shows a receiver that is
failing while the runner is still retrying it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stemgen_api import contract as c
from stemgen_api import events, webhooks
from stemgen_api.webhooks import DeliveryAttempt, DeliveryResult, RetryPolicy

log = logging.getLogger(__name__)

SENT_BY = "runner"

StatusSink = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class CallbackTarget:
    url: str
    secret: str | None


def callback_data(*, request_id: str, audio_file_id: str | None, namespace: str, name: str, phase: c.Phase,
                  outputs: list[dict[str, Any]], seed: int | None = None, warnings: list[str] | None = None,
                  timings: dict[str, float] | None = None, reason: str | None = None,
                  message: str | None = None, uid: str = "", stems: list[str] | None = None,
                  attempts: int | None = None, job_name: str | None = None) -> dict[str, Any]:
    """The callback's `data`, in the shape the operator's callbacks share (stemgen_api.events)."""
    return events.callback_data(
        namespace=namespace, name=name, uid=uid, request_id=request_id, audio_file_id=audio_file_id, phase=phase,
        stems=stems or [], outputs=outputs, reason=reason, message=message, seed=seed, warnings=warnings,
        timings=timings, attempts=attempts, job_name=job_name)


def resolve_target(callback_spec: dict[str, Any] | None, secret: str | None,
                   allow_private: bool) -> CallbackTarget | None:
    """Where to send, or None when the spec asks for no callback.

    Raises ValueError (with a message for status) when it must not or cannot be sent: a refused
    URL, or a secretRef whose secret the operator did not put in the pod's env. Sending unsigned
    when the caller asked for a signature would only make the receiver reject it.
    """
    if not callback_spec or not callback_spec.get("url"):
        return None
    url = callback_spec["url"]
    webhooks.check_callback_url(url, allow_private=allow_private)
    if callback_spec.get("secretRef") and not secret:
        raise ValueError(f"spec.callback.secretRef is set but the signing secret is not in the pod's environment "
                         f"({c.ENV_CALLBACK_SECRET}); not sending an unsigned callback")
    return CallbackTarget(url=url, secret=secret)


def _will_retry(attempt: DeliveryAttempt, policy: RetryPolicy) -> bool:
    if attempt.delivered or attempt.number >= policy.max_attempts:
        return False
    code = attempt.status_code
    return code is None or code in webhooks.RETRYABLE_STATUS or code >= 500


def send(target: CallbackTarget, resource_uid: str, phase: c.Phase, data: dict[str, Any], policy: RetryPolicy,
         record: StatusSink) -> DeliveryResult:
    """Deliver, recording each attempt through `record` (a status patch of `callback`)."""
    event_type = c.EVENT_TYPE_BY_PHASE[phase].value
    message_id = webhooks.webhook_id(resource_uid, event_type)
    seen: list[DeliveryAttempt] = []

    def on_attempt(attempt: DeliveryAttempt) -> None:
        seen.append(attempt)
        so_far = DeliveryResult(webhook_id=message_id, event_type=event_type, attempts=list(seen))
        status = webhooks.callback_status(so_far, SENT_BY)
        if _will_retry(attempt, policy):
            status["state"] = c.CallbackState.PENDING.value
        log.info("callback attempt %d: %s", attempt.number, attempt.status_code or attempt.error)
        try:
            record(status)
        except Exception as error:  # a status hiccup must not stop the delivery itself
            log.warning("could not record callback attempt %d: %s", attempt.number, error)

    payload = webhooks.build_payload(event_type, data)
    return webhooks.deliver(target.url, target.secret, message_id, payload, policy=policy, on_attempt=on_attempt)


def refused_status(resource_uid: str, phase: c.Phase, error: str) -> dict[str, Any]:
    """`status.callback` for a callback that was never sent."""
    event_type = c.EVENT_TYPE_BY_PHASE[phase].value
    return {"state": c.CallbackState.FAILED.value, "webhookId": webhooks.webhook_id(resource_uid, event_type),
            "eventType": event_type, "attempts": 0, "sentBy": SENT_BY, "lastError": error[:1000]}
