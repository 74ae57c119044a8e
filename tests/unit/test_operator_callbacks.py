"""Operator-sent callbacks: URL policy, payload, the Pending promise, delivery to a real receiver."""

from __future__ import annotations

from stemgen_api import contract as c
from stemgen_api import webhooks
from stemgen_dev.receiver import CallbackReceiver
from stemgen_operator import callbacks
from stemgen_operator.settings import OperatorSettings
from stemgen_operator.testing import request_body


class SecretsOnly:
    """The one Cluster method callbacks.send uses; everything else here is real (HTTP, signing)."""

    def __init__(self, secrets: dict[tuple[str, str, str], str]):
        self.secrets = secrets

    def read_secret_value(self, namespace: str, name: str, key: str) -> str | None:
        return self.secrets.get((namespace, name, key))


def settings(**extra) -> OperatorSettings:
    return OperatorSettings(metrics_port=0, liveness_port=0, callback_initial_delay=0.01,
                            callback_max_total_seconds=5, **extra)


def failed(url: str, **spec) -> dict:
    return request_body(callback={"url": url, "secretRef": {"name": "hook"}}, audioFileId="file-9",
                        status={"phase": "Failed", "reason": "OOMKilled", "message": "out of memory",
                                "jobName": "sg-song-1", "attempts": 1}, **spec)


def test_loopback_and_metadata_urls_are_refused_unless_allowed():
    assert "loopback" in callbacks.refusal(failed("http://127.0.0.1:9/cb"), settings())
    assert "link-local" in callbacks.refusal(failed("http://169.254.169.254/latest"), settings())
    assert callbacks.refusal(failed("http://127.0.0.1:9/cb"), settings(callback_allow_private=True)) is None
    assert callbacks.refusal(request_body(), settings()) is None


def test_pending_status_and_the_promise_it_makes():
    body = failed("https://api.example/cb")
    pending = callbacks.pending_status(body, c.Phase.FAILED)
    assert pending["state"] == "Pending" and pending["sentBy"] == "operator"
    assert pending["webhookId"] == webhooks.webhook_id("uid-1", "stemgeneration.failed")
    body["status"]["callback"] = pending
    assert callbacks.owes_callback(body)
    body["status"]["callback"] = {**pending, "state": "Delivered"}
    assert not callbacks.owes_callback(body)


def test_failure_callback_is_signed_retried_and_recorded():
    recorded: list[dict] = []
    with CallbackReceiver() as receiver:
        receiver.script([503])
        body = failed(receiver.url)
        outcome = callbacks.send(SecretsOnly({("music", "hook", "secret"): receiver.secret}), body,
                                 settings(callback_allow_private=True), recorded.append)
        received = receiver.wait_for(2, timeout=10)
    assert outcome is not None and outcome.delivered
    assert [item.status_returned for item in received] == [503, 200]
    assert all(item.verified for item in received)
    assert received[0].webhook_id == received[1].webhook_id
    payload = received[1].json
    assert payload["type"] == "stemgeneration.failed"
    assert payload["data"]["reason"] == "OOMKilled"
    assert payload["data"]["requestId"] == "song"
    assert payload["data"]["audioFileId"] == "file-9"
    assert [item["attempts"] for item in recorded] == [1, 2]
    assert recorded[-1]["state"] == "Delivered" and recorded[-1]["sentBy"] == "operator"


def test_missing_secret_or_refused_url_is_recorded_not_sent():
    recorded: list[dict] = []
    with CallbackReceiver() as receiver:
        outcome = callbacks.send(SecretsOnly({}), failed(receiver.url), settings(callback_allow_private=True),
                                 recorded.append)
        assert not outcome.delivered and "hook" in recorded[-1]["lastError"]
        outcome = callbacks.send(SecretsOnly({}), failed(receiver.url), settings(), recorded.append)
        assert not outcome.delivered and "loopback" in recorded[-1]["lastError"]
        assert receiver.received == []
