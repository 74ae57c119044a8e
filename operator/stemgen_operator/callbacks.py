"""Callbacks the operator sends itself: a request that failed before its runner could report
(OOM, deadline, eviction) or was cancelled.

Signing, retries and the URL policy are `stemgen_api.webhooks`, the very code the runner uses,
so a receiver cannot tell (and need not care) which side sent a callback. The webhook-id is
derived from the resource uid and the event type, so a callback the runner already delivered
and one the operator re-sends after a restart de-duplicate at the receiver.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stemgen_api import contract as c
from stemgen_api import events, webhooks

from . import resource as r
from .kube import Cluster
from .settings import OperatorSettings

log = logging.getLogger(__name__)

SENT_BY = "operator"


def refusal(body: r.Body, settings: OperatorSettings) -> str | None:
    """Why the request's callback URL must not be used, or None when it may."""
    url = r.callback_url(body)
    if not url:
        return None
    try:
        webhooks.check_callback_url(url, allow_private=settings.callback_allow_private)
    except webhooks.CallbackURLRefused as error:
        return str(error)
    return None


def payload_data(body: r.Body, final: c.Phase, reason: str, message: str) -> dict[str, Any]:
    """The `data` of the callback, in the shape the runner's callbacks share (stemgen_api.events)."""
    ref = r.ref(body)
    spec = r.spec(body)
    status = r.status(body)
    return events.callback_data(
        namespace=ref.namespace, name=ref.name, uid=ref.uid, request_id=r.request_id(body),
        audio_file_id=spec.get("audioFileId"), phase=final, stems=list(spec.get("stems") or []),
        outputs=list(status.get("outputs") or []), reason=reason, message=message,
        seed=(spec.get("generation") or {}).get("seed"), warnings=status.get("warnings"),
        timings=status.get("timings"), attempts=status.get("attempts", 0), job_name=status.get("jobName"))


@dataclass
class Outcome:
    status: dict[str, Any]
    delivered: bool


def pending_status(body: r.Body, final: c.Phase) -> dict[str, Any]:
    """status.callback written together with the terminal phase, before the first attempt.

    If the operator dies mid-delivery, the next one finds `Pending` + `sentBy: operator` and
    sends again: the promise to call back survives restarts.
    """
    event_type = c.EVENT_TYPE_BY_PHASE[final].value
    return {"state": c.CallbackState.PENDING.value, "webhookId": webhooks.webhook_id(r.ref(body).uid, event_type),
            "eventType": event_type, "attempts": 0, "sentBy": SENT_BY}


def owes_callback(body: r.Body) -> bool:
    """A terminal request whose callback the operator took on and has not finished sending."""
    callback = r.status(body).get("callback") or {}
    return (r.is_terminal(body) and bool(r.callback_url(body)) and callback.get("sentBy") == SENT_BY
            and callback.get("state") == c.CallbackState.PENDING.value)


def send(cluster: Cluster, body: r.Body, settings: OperatorSettings,
         record: Callable[[dict[str, Any]], None]) -> Outcome | None:
    """Deliver the terminal callback for `body` (already terminal in status); blocking.

    `record` gets the status.callback object after every attempt. Returns None when there is
    no callback to send.
    """
    url = r.callback_url(body)
    if not url:
        return None
    final = r.phase(body)
    event_type = c.EVENT_TYPE_BY_PHASE[final].value
    message_id = webhooks.webhook_id(r.ref(body).uid, event_type)
    status = r.status(body)
    data = payload_data(body, final, str(status.get("reason") or final.value), str(status.get("message") or ""))

    def fail(error: str) -> Outcome:
        outcome = {"state": c.CallbackState.FAILED.value, "webhookId": message_id, "eventType": event_type,
                   "attempts": 0, "sentBy": SENT_BY, "lastError": error}
        record(outcome)
        return Outcome(outcome, False)

    problem = refusal(body, settings)
    if problem:
        return fail(problem)
    secret = None
    secret_ref = r.callback_secret_ref(body)
    if secret_ref:
        try:
            secret = cluster.read_secret_value(r.ref(body).namespace, *secret_ref)
        except Exception as error:  # e.g. 403: the operator may not read Secrets in this namespace
            return fail(f"cannot read signing secret {secret_ref[0]}: {error}"[:500])
        if secret is None:
            # Sending unsigned would teach receivers to accept unsigned callbacks; say why instead.
            return fail(f"signing secret {secret_ref[0]}/{secret_ref[1]} not found")

    result = webhooks.DeliveryResult(webhook_id=message_id, event_type=event_type)

    def on_attempt(attempt: webhooks.DeliveryAttempt) -> None:
        result.attempts.append(attempt)
        record(webhooks.callback_status(result, SENT_BY))

    delivered = webhooks.deliver(url, secret, message_id, webhooks.build_payload(event_type, data),
                                 policy=settings.retry_policy(), on_attempt=on_attempt)
    final_status = webhooks.callback_status(delivered, SENT_BY)
    return Outcome(final_status, delivered.delivered)
