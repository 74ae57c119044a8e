"""Pure parts of the demo: the request it applies and what it prints."""

from __future__ import annotations

from datetime import datetime, timezone

from stemgen_api import contract as c
from stemgen_api.validation import validate_spec
from stemgen_dev.demo import _progress_text, callback_summary, demo_request
from stemgen_dev.receiver import ReceivedCallback


def test_demo_request_is_the_example_pointed_at_local_parts() -> None:
    manifest = demo_request("http://127.0.0.1:9999/callback", "tiny", 2.0)
    spec = manifest["spec"]
    assert spec["stems"] == ["drums", "bass", "guitar", "piano"]
    assert (spec["model"], spec["durationSeconds"], spec["device"]) == ("tiny", 2.0, "gpu")
    assert spec["callback"]["url"] == "http://127.0.0.1:9999/callback"
    assert spec["callback"]["secretRef"] == {"name": "stemgen-callback", "key": "secret"}
    assert validate_spec(spec) == []


def test_progress_text() -> None:
    assert _progress_text({}) == ("Pending · -", 0)
    running = {"phase": "Running", "pool": "gpu", "progress": {"stage": "generating", "percent": 40}}
    assert _progress_text(running) == ("Running on gpu pool · generating", 40)
    assert _progress_text({"phase": "Succeeded", "progress": {"stage": "done", "percent": 90}})[1] == 100


def test_callback_summary() -> None:
    callback = ReceivedCallback(headers={"webhook-id": "msg_1"}, body=b"{}", verified=True, status_returned=200,
                                at=datetime.now(timezone.utc),
                                json={"type": c.EventType.SUCCEEDED.value,
                                      "data": {"requestId": "req-1", "phase": "Succeeded",
                                               "outputs": [{"stem": "drums"}]}})
    lines = callback_summary([callback])
    assert lines[0] == "POST msg_1  type=stemgeneration.succeeded  signature=valid  answered=200"
    assert "requestId=req-1 phase=Succeeded stems=['drums']" in lines[1]
