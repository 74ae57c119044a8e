"""Callback decisions that need no network: target, refusal, payload data, blob metadata."""

from __future__ import annotations

import pytest

from stemgen_api import contract as c
from stemgen_api.webhooks import CallbackURLRefused, webhook_id
from stemgen_runner.callback import callback_data, refused_status, resolve_target
from stemgen_runner.storage import blob_metadata


def test_no_callback_in_spec_means_no_target() -> None:
    assert resolve_target(None, "s", allow_private=False) is None
    assert resolve_target({}, "s", allow_private=False) is None


def test_loopback_callback_is_refused_unless_allowed() -> None:
    spec = {"url": "http://127.0.0.1:9/cb"}
    with pytest.raises(CallbackURLRefused):
        resolve_target(spec, None, allow_private=False)
    assert resolve_target(spec, None, allow_private=True).url == spec["url"]


def test_secret_ref_without_secret_in_env_is_not_sent_unsigned() -> None:
    spec = {"url": "http://127.0.0.1:9/cb", "secretRef": {"name": "hook", "key": "secret"}}
    with pytest.raises(ValueError, match=c.ENV_CALLBACK_SECRET):
        resolve_target(spec, None, allow_private=True)
    assert resolve_target(spec, "whsec_abc", allow_private=True).secret == "whsec_abc"


def test_callback_data_carries_request_and_error_only_on_failure() -> None:
    ok = callback_data(request_id="r1", audio_file_id="a1", namespace="ns", name="n", phase=c.Phase.SUCCEEDED,
                       outputs=[{"stem": "drums"}], seed=5)
    assert ok["requestId"] == "r1" and ok["audioFileId"] == "a1" and ok["phase"] == "Succeeded"
    assert ok["outputs"] == [{"stem": "drums"}] and ok["error"] is None and ok["seed"] == 5
    failed = callback_data(request_id="r1", audio_file_id=None, namespace="ns", name="n", phase=c.Phase.FAILED,
                           outputs=[], reason="StorageError", message="down")
    assert failed["error"] == {"reason": "StorageError", "message": "down"}


def test_refused_status_uses_the_same_webhook_id_as_a_delivery_would() -> None:
    status = refused_status("uid-1", c.Phase.SUCCEEDED, "refused")
    assert status["webhookId"] == webhook_id("uid-1", c.EventType.SUCCEEDED.value)
    assert status["state"] == "Failed" and status["attempts"] == 0


def test_blob_metadata_is_ascii_and_drops_empty_values() -> None:
    metadata = blob_metadata({"requestid": "r-1", "audiofileid": "café 1", "seed": 7,
                              "model": "facebook/musicgen-small", "empty": None})
    assert metadata == {"requestid": "r-1", "audiofileid": "caf%C3%A9 1", "seed": "7",
                        "model": "facebook/musicgen-small"}
    assert all(value.isascii() for value in metadata.values())
