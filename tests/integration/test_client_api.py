"""StemGenClient against the real API server: create/get/list/watch/wait/cancel/delete,
idempotent create by request id, and validation before any round trip."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client as k8s

from stemgen_api import contract as c
from stemgen_api.validation import SpecError
from stemgen_client import StemGenClient
from stemgen_client.errors import NotFound, RequestCancelled, RequestConflict, RequestFailed, WaitTimeout
from stemgen_client.spec import StemGenerationSpec, name_for_request
from tests.integration.client_helpers import PROGRESSION, StatusPlayer, failed, patch_status, succeeded

OUTPUTS = [{"stem": "drums", "url": "http://blob/stems/x/drums.wav", "container": "stems",
            "blobName": "x/drums.wav", "format": "wav", "seconds": 8.0, "sampleRate": 32000, "channels": 1,
            "bytes": 512044, "sha256": "0" * 64}]


@pytest.fixture
def stemgen(control_plane, namespace) -> StemGenClient:
    return StemGenClient(kubeconfig=control_plane.kubeconfig, namespace=namespace)


def _names(stemgen: StemGenClient) -> list[str]:
    return [item.name for item in stemgen.list()]


def test_create_from_keywords_applies_server_defaults(stemgen: StemGenClient, namespace: str) -> None:
    created = stemgen.create(stems=["drums", "bass"], prompt="dusty breakbeat", bpm=92, key="E minor",
                             duration_seconds=8, generation={"seed": 3})
    assert created.namespace == namespace and created.name.startswith("sg-")
    assert created.request_id == created.name  # no request id: the contract defaults it to the name
    fetched = stemgen.get(created.name)
    assert fetched.uid == created.uid
    assert fetched.spec["model"] == c.DEFAULT_MODEL and fetched.spec["generation"]["seed"] == 3
    assert fetched.spec["durationSeconds"] == 8 and fetched.labels[c.LABEL_PART_OF] == c.PART_OF


def test_create_from_a_spec_object(stemgen: StemGenClient) -> None:
    created = stemgen.create(StemGenerationSpec(stems=["piano"], request_id="typed-1", bpm=70), name="typed")
    assert created.name == "typed" and created.spec["bpm"] == 70 and created.request_id == "typed-1"
    assert created.labels[c.LABEL_REQUEST_ID] == "typed-1"


def test_create_is_idempotent_by_request_id(stemgen: StemGenClient) -> None:
    first, created_first = stemgen.create_or_get(stems=["drums"], request_id="order:1234")
    again, created_again = stemgen.create_or_get(stems=["drums"], request_id="order:1234")
    assert (created_first, created_again) == (True, False)
    assert again.uid == first.uid and first.name == name_for_request("order:1234")
    # An explicit, different name still finds the request by its request-id label.
    named = stemgen.create(stems=["drums"], request_id="order:1234", name="another-name")
    assert named.uid == first.uid
    assert _names(stemgen) == [first.name]


def test_same_request_id_with_another_spec_is_a_conflict(stemgen: StemGenClient) -> None:
    first = stemgen.create(stems=["drums"], request_id="order-77", bpm=100)
    # Asking for a default explicitly, or leaving it out, is the same request.
    assert stemgen.create(stems=["drums"], request_id="order-77", bpm=100, model=c.DEFAULT_MODEL).uid == first.uid
    with pytest.raises(RequestConflict, match=r"different spec \(spec.bpm, spec.stems\)"):
        stemgen.create(stems=["drums", "bass"], request_id="order-77", bpm=110)
    assert _names(stemgen) == [first.name]


def test_a_retried_create_by_name_alone_returns_the_request(stemgen: StemGenClient) -> None:
    first, created = stemgen.create_or_get(stems=["piano"], name="by-name")
    again, created_again = stemgen.create_or_get(stems=["piano"], name="by-name")
    assert (created, created_again) == (True, False) and again.uid == first.uid


def test_concurrent_creates_make_one_request(stemgen: StemGenClient) -> None:
    results: list[str] = []
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            results.append(stemgen.create(stems=["bass"], request_id="race-1").uid or "")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 4 and len(set(results)) == 1
    assert len(stemgen.list(request_id="race-1")) == 1


def test_name_taken_by_another_request_is_a_conflict(stemgen: StemGenClient) -> None:
    stemgen.create(stems=["drums"], request_id="a-1", name="shared")
    with pytest.raises(RequestConflict, match="'a-1'"):
        stemgen.create(stems=["drums"], request_id="b-2", name="shared")


def test_invalid_spec_is_refused_before_any_round_trip(stemgen: StemGenClient) -> None:
    with pytest.raises(SpecError) as raised:
        stemgen.create(stems=["drums", "drums"], bpm=20, request_id="bad")
    assert {e.field for e in raised.value.errors} == {"spec.stems[1]", "spec.bpm"}
    assert _names(stemgen) == []


def test_list_filters_by_label_and_phase(stemgen: StemGenClient, api_client, namespace: str) -> None:
    one = stemgen.create(stems=["drums"], name="one", labels={"team": "audio"})
    stemgen.create(stems=["bass"], name="two", labels={"team": "video"})
    patch_status(api_client, namespace, "one", {"phase": c.Phase.RUNNING.value})
    assert [r.name for r in stemgen.list(labels={"team": "audio"})] == ["one"]
    assert [r.name for r in stemgen.list(labels="team in (audio,video)")] == ["one", "two"]
    assert [r.name for r in stemgen.list(phase=c.Phase.RUNNING)] == ["one"]
    assert [r.name for r in stemgen.list(phase="Pending")] == ["two"]  # no status yet counts as Pending
    assert one.name in [r.name for r in stemgen.list(all_namespaces=True)]


def test_wait_returns_outputs_and_reports_every_change(stemgen: StemGenClient, api_client, namespace: str) -> None:
    resource = stemgen.create(stems=["drums"], request_id="wait-ok")
    seen: list[tuple[str, str | None, int | None]] = []
    with StatusPlayer(api_client, namespace, resource.name, [*PROGRESSION, succeeded(OUTPUTS)], interval=0.2):
        outputs = stemgen.wait(resource.name, timeout=60,
                               on_update=lambda r: seen.append((r.phase_name, r.progress.stage, r.progress.percent)))
    assert [o.stem for o in outputs] == ["drums"] and outputs[0].sha256 == "0" * 64
    assert outputs[0].blob_name == "x/drums.wav" and outputs[0].sample_rate == 32000
    assert seen[0] == ("Pending", None, None)
    assert seen[-1] == ("Succeeded", "done", 100)
    assert ("Running", "generating", 70) in seen
    percents = [p for _, _, p in seen if p is not None]
    assert percents == sorted(percents)


def test_wait_raises_with_the_failure_reason(stemgen: StemGenClient, api_client, namespace: str) -> None:
    resource = stemgen.create(stems=["drums"], name="doomed")
    updates = [PROGRESSION[1], failed(c.FailureReason.OOM_KILLED.value, "runner pod OOMKilled")]
    with StatusPlayer(api_client, namespace, "doomed", updates), pytest.raises(RequestFailed) as raised:
        stemgen.wait(resource.name, timeout=60)
    assert raised.value.reason == "OOMKilled" and "runner pod OOMKilled" in str(raised.value)


def test_wait_times_out_with_the_last_state(stemgen: StemGenClient, api_client, namespace: str) -> None:
    stemgen.create(stems=["drums"], name="slow")
    patch_status(api_client, namespace, "slow", PROGRESSION[2])
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as raised:
        stemgen.wait("slow", timeout=1.5)
    assert time.monotonic() - started < 15
    assert raised.value.resource is not None and raised.value.resource.progress.percent == 30
    assert "did not finish within 1.5s" in str(raised.value) and "generating 30%" in str(raised.value)


def test_cancel_sets_spec_cancel_and_wait_reports_cancelled(stemgen: StemGenClient, api_client,
                                                            namespace: str) -> None:
    stemgen.create(stems=["drums"], name="stop-me")
    patch_status(api_client, namespace, "stop-me", PROGRESSION[2])  # accepted: the spec is now frozen
    updated = stemgen.cancel("stop-me")
    assert updated.cancel_requested and stemgen.get("stop-me").spec["cancel"] is True
    updates = [{"phase": c.Phase.CANCELLED.value, "reason": "Cancelled", "message": "cancelled by the user"}]
    with StatusPlayer(api_client, namespace, "stop-me", updates), \
            pytest.raises(RequestCancelled, match="cancelled by the user"):
        stemgen.wait("stop-me", timeout=60)


def test_delete_and_not_found(stemgen: StemGenClient) -> None:
    stemgen.create(stems=["drums"], name="gone")
    stemgen.delete("gone")
    with pytest.raises(NotFound, match="gone"):
        stemgen.get("gone")
    with pytest.raises(NotFound):
        stemgen.delete("gone")
    stemgen.delete("gone", missing_ok=True)
    with pytest.raises(NotFound):
        stemgen.cancel("gone")


def test_wait_notices_deletion(stemgen: StemGenClient, namespace: str) -> None:
    stemgen.create(stems=["drums"], name="vanish")
    timer = threading.Timer(0.5, lambda: stemgen.delete("vanish"))
    timer.start()
    try:
        with pytest.raises(NotFound, match="deleted while waiting"):
            stemgen.wait("vanish", timeout=60)
    finally:
        timer.join()


def test_watch_yields_changes_of_one_request(stemgen: StemGenClient, api_client, namespace: str) -> None:
    first = stemgen.create(stems=["drums"], name="watched")
    stemgen.create(stems=["drums"], name="other")
    with StatusPlayer(api_client, namespace, "watched", PROGRESSION[:2], interval=0.3):
        events = []
        for event_type, resource in stemgen.watch("watched", resource_version=first.resource_version, timeout=20):
            events.append((event_type, resource.name, resource.phase_name))
            if resource.phase_name == "Running":
                break
    assert events == [("MODIFIED", "watched", "Queued"), ("MODIFIED", "watched", "Running")]


def test_runner_pods_are_found_by_the_operator_label(stemgen: StemGenClient, api_client, namespace: str) -> None:
    stemgen.create(stems=["drums"], name="with-pod")
    with pytest.raises(NotFound, match="no runner pod"):
        list(stemgen.logs("with-pod"))
    core = k8s.CoreV1Api(api_client)
    for attempt in ("a", "b"):
        core.create_namespaced_pod(namespace, k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name=f"with-pod-runner-{attempt}", labels={c.LABEL_NAME: "with-pod"}),
            spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="runner", image="stemgen-runner")])))
        time.sleep(1.1)  # distinct creation timestamps (second resolution)
    core.create_namespaced_pod(namespace, k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="unrelated", labels={c.LABEL_NAME: "other"}),
        spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="x", image="x")])))
    assert [p.metadata.name for p in stemgen.runner_pods("with-pod")] == ["with-pod-runner-a", "with-pod-runner-b"]
