"""docs/api.md is exactly what the generator makes from the contract, covers every field and enum
value, and its receiver example really verifies signatures."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import HTTPServer
from pathlib import Path

import pytest

from stemgen_api import contract as c
from stemgen_api import events, webhooks
from stemgen_api.schema import Schema, spec_schema, status_schema
from stemgen_client import apidoc

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_committed_api_doc_matches_the_generator() -> None:
    assert API_DOC.read_text() == apidoc.render(), "docs/api.md is stale: run `python -m stemgen_client.apidoc`"
    assert apidoc.main(["--check"]) == 0


def test_check_mode_reports_a_stale_copy(tmp_path: Path) -> None:
    stale = tmp_path / "api.md"
    stale.write_text(apidoc.render().replace("≤ 300", "≤ 301"))
    assert apidoc.main(["--check", "--output", str(stale)]) == 1
    assert apidoc.main(["--output", str(stale)]) == 0
    assert apidoc.main(["--check", "--output", str(stale)]) == 0


def _paths(schema: Schema, prefix: str) -> Iterator[str]:
    for name, sub in schema.get("properties", {}).items():
        yield f"{prefix}.{name}"
        if sub.get("type") == "object":
            yield from _paths(sub, f"{prefix}.{name}")
        if sub.get("type") == "array":
            yield from _paths(sub.get("items", {}), f"{prefix}.{name}[]")


def _row(text: str, field: str) -> str:
    match = re.search(rf"^\| `{re.escape(field)}` \|.*$", text, re.MULTILINE)
    assert match, f"{field} has no row in docs/api.md"
    return match.group(0)


def test_every_spec_and_status_field_has_a_row_with_its_default_and_bounds() -> None:
    text = apidoc.render()
    for path in [*_paths(spec_schema(), "spec"), *_paths(status_schema(), "status")]:
        _row(text, path)
    assert "| `120` | ≥ 30, ≤ 300 |" in _row(text, "spec.bpm")
    assert "| yes |" in _row(text, "spec.stems") and "1 to 8 items; unique items" in _row(text, "spec.stems")
    assert "> 0, ≤ 5" in _row(text, "spec.generation.temperature")
    assert "must not contain consecutive hyphens" in _row(text, "spec.output.container")
    assert r"(#\|b)" in _row(text, "spec.key")  # pipes escaped, so the table stays a table
    assert f"`{c.DEFAULT_MODEL}`" in _row(text, "spec.model")


@pytest.mark.parametrize("values", [c.Phase, c.ConditionType, c.FailureReason, c.ProgressStage, c.CallbackState,
                                    c.EventType], ids=lambda e: e.__name__)
def test_every_contract_value_is_documented(values) -> None:
    text = apidoc.render()
    for member in values:
        assert f"| `{member.value}` |" in text, member


def test_a_new_contract_value_without_prose_stops_the_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(apidoc.FAILURE_REASONS, c.FailureReason.EVICTED)
    with pytest.raises(apidoc.UndocumentedValue, match="FAILURE_REASONS"):
        apidoc.render()


def test_callback_headers_and_event_types_are_documented() -> None:
    text = apidoc.render()
    for header in ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type"):
        assert f"| `{header}` |" in text
    for phase, event in c.EVENT_TYPE_BY_PHASE.items():
        assert f"| `{phase.value}` | `{event.value}` |" in text


def test_callback_data_sent_by_runner_and_operator_is_documented() -> None:
    """Both senders' `data` keys must be in the reference; an undocumented new key fails here."""
    runner_callback = pytest.importorskip("stemgen_runner.callback")
    operator_callbacks = pytest.importorskip("stemgen_operator.callbacks")
    runner_keys = set(runner_callback.callback_data(
        request_id="r", audio_file_id="a", namespace="ns", name="n", phase=c.Phase.FAILED, outputs=[],
        reason="GenerationError", message="m"))
    body = {"metadata": {"name": "n", "namespace": "ns", "uid": "u"},
            "spec": {"stems": ["drums"], "audioFileId": "a"}, "status": {"jobName": "j", "outputs": []}}
    operator_keys = set(operator_callbacks.payload_data(body, c.Phase.FAILED, "OOMKilled", "m"))
    # One shape whoever sends it (stemgen_api.events), and every key documented.
    assert runner_keys == operator_keys == set(apidoc.CALLBACK_DATA) == set(events.CALLBACK_DATA_KEYS)


def _receiver_example() -> str:
    text = apidoc.render()
    match = re.search(r"### Receiver example.*?```python\n(.*?)```", text, re.DOTALL)
    assert match
    return match.group(1)


@pytest.fixture
def example_receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[dict], str]]:
    secret = "whsec_" + "c2VjcmV0LWZvci10aGUtZG9jcy1leGFtcGxl"
    monkeypatch.setenv("STEMGEN_WEBHOOK_SECRET", secret)
    namespace: dict = {"__name__": "docs_example"}
    exec(compile(_receiver_example(), "docs/api.md", "exec"), namespace)
    handled: list[dict] = []
    namespace["handle"] = handled.append
    server = HTTPServer(("127.0.0.1", 0), namespace["Receiver"])
    server.RequestHandlerClass.log_message = lambda *args: None
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", handled, secret
    finally:
        server.shutdown()
        server.server_close()


def test_the_receiver_example_accepts_signed_callbacks_once(example_receiver) -> None:
    url, handled, secret = example_receiver
    payload = webhooks.build_payload(c.EventType.SUCCEEDED.value, {"requestId": "order-1", "outputs": []})
    message_id = webhooks.webhook_id("uid-1", c.EventType.SUCCEEDED.value)
    first = webhooks.deliver(url, secret, message_id, payload)
    again = webhooks.deliver(url, secret, message_id, payload)  # a retry of the same message
    assert first.delivered and again.delivered and first.attempts[0].status_code == 204
    assert handled == [payload]


def test_the_receiver_example_rejects_a_wrong_signature(example_receiver) -> None:
    url, handled, _ = example_receiver
    payload = webhooks.build_payload(c.EventType.FAILED.value, {"requestId": "order-2"})
    result = webhooks.deliver(url, "whsec_" + "d3Jvbmc=", webhooks.webhook_id("uid-2", "x"), payload)
    unsigned = webhooks.deliver(url, None, webhooks.webhook_id("uid-3", "x"), payload)
    assert [a.status_code for a in result.attempts] == [401]  # a 4xx is final: not retried
    assert [a.status_code for a in unsigned.attempts] == [401]
    assert handled == []
