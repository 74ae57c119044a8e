"""Standard Webhooks signing and delivery against a real HTTP receiver on loopback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from stemgen_api import contract as c
from stemgen_api.webhooks import (
    CallbackURLRefused,
    RetryPolicy,
    build_payload,
    callback_status,
    check_callback_url,
    deliver,
    sign,
    verify,
    webhook_id,
)
from stemgen_dev.receiver import CallbackReceiver

FAST = RetryPolicy(max_attempts=4, initial_delay=0.01, max_delay=0.05, max_total_seconds=5, timeout=2)


def test_signature_matches_the_standard_webhooks_definition() -> None:
    secret_key = b"0123456789abcdef0123456789abcdef"
    secret = "whsec_" + base64.b64encode(secret_key).decode()
    body = b'{"type":"x"}'
    expected = base64.b64encode(hmac.new(secret_key, b"msg_1.1700000000." + body, hashlib.sha256).digest())
    assert sign(secret, "msg_1", 1700000000, body) == "v1," + expected.decode()


def test_webhook_id_is_stable_per_resource_and_event() -> None:
    assert webhook_id("uid-1", "stemgeneration.succeeded") == webhook_id("uid-1", "stemgeneration.succeeded")
    assert webhook_id("uid-1", "stemgeneration.succeeded") != webhook_id("uid-1", "stemgeneration.failed")
    assert webhook_id("uid-1", "a").startswith("msg_")


def test_delivered_first_time_and_verified_by_receiver() -> None:
    with CallbackReceiver() as receiver:
        payload = build_payload(c.EventType.SUCCEEDED.value, {"requestId": "r1"})
        result = deliver(receiver.url, receiver.secret, "msg_abc", payload, policy=FAST)
        (received,) = receiver.wait_for(1)
    assert result.delivered and result.state == c.CallbackState.DELIVERED
    assert received.verified and received.webhook_id == "msg_abc"
    assert received.json["type"] == "stemgeneration.succeeded" and received.json["data"] == {"requestId": "r1"}


def test_retries_5xx_with_the_same_webhook_id_and_records_every_attempt() -> None:
    attempts = []
    with CallbackReceiver() as receiver:
        receiver.script([500, 503])
        result = deliver(receiver.url, receiver.secret, "msg_retry", build_payload("t", {}), policy=FAST,
                         on_attempt=attempts.append)
        received = receiver.wait_for(3)
    assert [a.status_code for a in attempts] == [500, 503, 200]
    assert {r.webhook_id for r in received} == {"msg_retry"}
    assert all(r.verified for r in received)
    status = callback_status(result, sent_by="runner")
    assert status["state"] == "Delivered" and status["attempts"] == 3 and status["lastStatusCode"] == 200


def test_honours_retry_after_on_429() -> None:
    waits = []
    with CallbackReceiver() as receiver:
        receiver.script([(429, {"Retry-After": "0.04"}), 503])
        result = deliver(receiver.url, receiver.secret, "msg_429", build_payload("t", {}), policy=FAST,
                         sleep=waits.append)
    assert result.delivered and len(result.attempts) == 3
    assert waits[0] == pytest.approx(0.04)  # the receiver's Retry-After, not our 0.01 s backoff
    assert waits[1] != pytest.approx(0.04)


def test_client_errors_are_final() -> None:
    with CallbackReceiver() as receiver:
        receiver.script([400])
        result = deliver(receiver.url, receiver.secret, "msg_400", build_payload("t", {}), policy=FAST)
    assert not result.delivered and len(result.attempts) == 1
    assert callback_status(result, "runner")["lastError"] == "HTTP 400"


def test_unreachable_receiver_fails_after_bounded_attempts() -> None:
    receiver = CallbackReceiver()  # bound but never serving: connections are refused once closed
    url = receiver.url
    receiver.stop()
    result = deliver(url, "s", "msg_down", build_payload("t", {}), policy=FAST, sleep=lambda _: None)
    assert not result.delivered and len(result.attempts) == FAST.max_attempts
    assert all(a.status_code is None and "ConnectionError" in a.error for a in result.attempts)


def test_verify_rejects_tampered_body_and_stale_timestamp() -> None:
    body = json.dumps({"a": 1}).encode()
    headers = {"webhook-id": "m", "webhook-timestamp": "1700000000",
               "webhook-signature": sign("s", "m", 1700000000, body)}
    assert not verify("s", headers, body)  # 2023: far outside the tolerance
    assert verify("s", headers, body, tolerance_seconds=10**10)
    assert not verify("s", headers, body + b" ", tolerance_seconds=10**10)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/h", "http://localhost/h", "http://169.254.169.254/latest",
                                 "http://[::1]/h", "http://0.0.0.0/h"])
def test_refuses_loopback_and_link_local_callbacks(url: str) -> None:
    with pytest.raises(CallbackURLRefused, match="loopback/link-local"):
        check_callback_url(url)
    check_callback_url(url, allow_private=True)


def test_allows_private_and_public_addresses() -> None:
    check_callback_url("http://receiver.example/h", resolve=lambda host: ["10.0.0.12"])
    check_callback_url("https://api.example/h", resolve=lambda host: ["203.0.113.7"])
    with pytest.raises(CallbackURLRefused):
        check_callback_url("https://api.example/h", resolve=lambda host: ["203.0.113.7", "169.254.169.254"])
