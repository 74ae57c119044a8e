"""The runner in-process against the real API server, Azurite and HTTP receivers: ordering of
status and callback, windowed extension, and the fault cases of issue 3."""

from __future__ import annotations

import copy
import socket
import threading

from azure.storage.blob import BlobServiceClient
from kubernetes import client, watch

from stemgen_api import contract as c
from stemgen_api.webhooks import webhook_id
from stemgen_runner.main import run_request
from stemgen_runner.report import StatusReporter
from stemgen_runner.run import RequestRun

from .conftest import TINY_MODEL, TINY_MODEL_EXTENDING
from .runner_audio_checks import assert_stem_blob, download


def _spec(callback_url: str, **overrides):
    spec = {"stems": ["drums"], "durationSeconds": 1, "model": TINY_MODEL, "device": "cpu",
            "generation": {"seed": 7}, "callback": {"url": callback_url, "secretRef": {"name": "hook-secret"}}}
    spec.update(overrides)
    return spec


def _conditions(status) -> dict[str, str]:
    return {condition["type"]: condition["status"] for condition in status.get("conditions", [])}


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/nobody-home"


def test_status_is_final_before_the_callback_arrives_and_reruns_do_not_regenerate(
        create_request, read_request, runner_settings, api_client, azurite, status_probing_receiver) -> None:
    created = create_request("ordered", _spec(status_probing_receiver.url, stems=["vocals", "piano"],
                                              output={"format": "flac"}))
    settings = runner_settings("ordered")
    assert run_request(settings, client.CustomObjectsApi(api_client)) == c.ExitCode.SUCCESS

    assert status_probing_receiver.arrived.wait(30)
    (probe,) = status_probing_receiver.received
    assert probe.verified
    at_arrival = probe.status_at_arrival
    assert at_arrival["phase"] == c.Phase.SUCCEEDED.value, "callback arrived before status said Succeeded"
    assert at_arrival["outputs"] == probe.payload["data"]["outputs"] and len(at_arrival["outputs"]) == 2
    assert "totalSeconds" in at_arrival["timings"] and at_arrival["completionTime"]
    assert any("realistic vocals" in warning for warning in at_arrival["warnings"])
    assert probe.headers["webhook-id"] == webhook_id(created["metadata"]["uid"], c.EventType.SUCCEEDED.value)
    for output in at_arrival["outputs"]:
        assert output["blobName"].endswith(".flac")
        assert_stem_blob(azurite.connection_string, output, request_id="ordered", model=TINY_MODEL, duration=1.0,
                         audio_format="flac")

    # A pod started again after success (e.g. a Job retry) neither regenerates nor re-sends.
    before = {o["stem"]: download(azurite.connection_string, o)[1].last_modified for o in at_arrival["outputs"]}
    assert run_request(settings, client.CustomObjectsApi(api_client)) == c.ExitCode.SUCCESS
    after = {o["stem"]: download(azurite.connection_string, o)[1].last_modified for o in at_arrival["outputs"]}
    assert before == after and len(status_probing_receiver.received) == 1
    assert read_request("ordered")["status"]["callback"]["state"] == c.CallbackState.DELIVERED.value


class StatusRecorder(threading.Thread):
    """Every status the API server stores for one resource, via a watch from its creation on."""

    def __init__(self, custom_objects, namespace: str, created: dict):
        super().__init__(daemon=True)
        self.custom_objects, self.namespace, self.created = custom_objects, namespace, created
        self.statuses: list[dict] = []

    def run(self) -> None:
        stream = watch.Watch()
        for event in stream.stream(self.custom_objects.list_namespaced_custom_object, c.GROUP, c.VERSION,
                                   self.namespace, c.PLURAL, timeout_seconds=120,
                                   field_selector=f"metadata.name={self.created['metadata']['name']}",
                                   resource_version=self.created["metadata"]["resourceVersion"]):
            status = event["object"].get("status") or {}
            self.statuses.append(status)
            if status.get("phase") in {p.value for p in c.TERMINAL_PHASES}:
                stream.stop()


def test_duration_beyond_the_model_window_is_generated_in_overlapping_windows_with_progress(
        create_request, read_request, runner_settings, api_client, custom_objects, namespace, azurite,
        callback_receiver) -> None:
    created = create_request("extended", _spec(callback_receiver.url, model=TINY_MODEL_EXTENDING,
                                               durationSeconds=19.5))
    recorder = StatusRecorder(custom_objects, namespace, created)
    recorder.start()
    assert run_request(runner_settings("extended", progress_interval=0.2),
                       client.CustomObjectsApi(api_client)) == c.ExitCode.SUCCESS
    recorder.join(60)
    status = read_request("extended")["status"]
    assert any("overlapping 18.5 s windows" in warning for warning in status["warnings"])
    (output,) = status["outputs"]
    assert_stem_blob(azurite.connection_string, output, request_id="extended", model=TINY_MODEL_EXTENDING,
                     duration=19.5)

    progress = [s["progress"] for s in recorder.statuses if "progress" in s]
    stages = [p["stage"] for p in progress]
    assert stages[0] == "loading-model" and stages[-1] == "done"
    assert {"generating", "post-processing", "uploading"} <= set(stages)
    percents = [p["percent"] for p in progress]
    assert percents == sorted(percents), f"progress went backwards: {progress}"
    generating = [p["percent"] for p in progress if p["stage"] == "generating"]
    assert any(10 < percent < 80 for percent in generating), generating
    # throttled: no more generating updates than one per progress_interval (plus the stage's first)
    assert len(generating) <= status["timings"]["generateSeconds"] / 0.2 + 3


def test_blob_store_down_fails_with_reason_and_failure_callback(
        create_request, read_request, runner_settings, api_client, azurite, callback_receiver) -> None:
    created = create_request("no-blobs", _spec(callback_receiver.url, retries=0))
    azurite.stop()
    try:
        code = run_request(runner_settings("no-blobs", callback_secret=callback_receiver.secret),
                           client.CustomObjectsApi(api_client))
    finally:
        azurite.start()
    assert code == c.ExitCode.RETRYABLE_FAILURE
    status = read_request("no-blobs")["status"]
    assert status["phase"] == c.Phase.FAILED.value
    assert status["reason"] == c.FailureReason.STORAGE_ERROR.value and "stems" in status["message"]
    assert _conditions(status)["Failed"] == "True" and _conditions(status)["Running"] == "False"
    (received,) = callback_receiver.wait_for(1, timeout=30)
    assert received.verified and received.json["type"] == c.EventType.FAILED.value
    assert received.webhook_id == webhook_id(created["metadata"]["uid"], c.EventType.FAILED.value)
    assert received.json["data"]["error"]["reason"] == c.FailureReason.STORAGE_ERROR.value
    assert received.json["data"]["phase"] == c.Phase.FAILED.value
    assert status["callback"]["state"] == c.CallbackState.DELIVERED.value


def _count_attempts(custom_objects, namespace: str, name: str, attempts: int) -> None:
    """What the operator does when a runner pod becomes ready (status.attempts is its count)."""
    custom_objects.patch_namespaced_custom_object_status(c.GROUP, c.VERSION, namespace, c.PLURAL, name,
                                                         {"status": {"attempts": attempts}})


def test_retryable_failure_with_attempts_left_stays_running_and_the_retry_succeeds(
        create_request, read_request, runner_settings, api_client, custom_objects, namespace, azurite,
        callback_receiver) -> None:
    create_request("flaky", _spec(callback_receiver.url, retries=1))
    settings = runner_settings("flaky", callback_secret=callback_receiver.secret)
    _count_attempts(custom_objects, namespace, "flaky", 1)
    azurite.stop()
    try:
        first = run_request(settings, client.CustomObjectsApi(api_client))
    finally:
        azurite.start()
    assert first == c.ExitCode.RETRYABLE_FAILURE
    status = read_request("flaky")["status"]
    assert status["phase"] == c.Phase.RUNNING.value
    assert status["reason"] == c.FailureReason.STORAGE_ERROR.value and "will be retried" in status["message"]
    assert callback_receiver.received == []  # no failure callback for an attempt that will be retried
    first_start = status["startTime"]

    _count_attempts(custom_objects, namespace, "flaky", 2)
    assert run_request(settings, client.CustomObjectsApi(api_client)) == c.ExitCode.SUCCESS
    status = read_request("flaky")["status"]
    assert status["phase"] == c.Phase.SUCCEEDED.value and status["startTime"] == first_start
    assert [r.json["type"] for r in callback_receiver.wait_for(1)] == [c.EventType.SUCCEEDED.value]


def test_retryable_failure_on_the_last_attempt_is_final(
        create_request, read_request, runner_settings, api_client, custom_objects, namespace, azurite,
        callback_receiver) -> None:
    create_request("last-try", _spec(callback_receiver.url, retries=1))
    _count_attempts(custom_objects, namespace, "last-try", 2)
    azurite.stop()
    try:
        code = run_request(runner_settings("last-try", callback_secret=callback_receiver.secret),
                           client.CustomObjectsApi(api_client))
    finally:
        azurite.start()
    assert code == c.ExitCode.RETRYABLE_FAILURE
    assert read_request("last-try")["status"]["phase"] == c.Phase.FAILED.value
    assert [r.json["type"] for r in callback_receiver.wait_for(1)] == [c.EventType.FAILED.value]


def test_receiver_failing_twice_gets_the_callback_on_the_third_attempt_with_the_same_id(
        create_request, read_request, runner_settings, api_client, callback_receiver) -> None:
    created = create_request("retry-hook", _spec(callback_receiver.url))
    callback_receiver.script([500, 500])
    settings = runner_settings("retry-hook", callback_secret=callback_receiver.secret)
    assert run_request(settings, client.CustomObjectsApi(api_client)) == c.ExitCode.SUCCESS
    received = callback_receiver.wait_for(3, timeout=30)
    assert [r.status_returned for r in received] == [500, 500, 200]
    expected_id = webhook_id(created["metadata"]["uid"], c.EventType.SUCCEEDED.value)
    assert {r.webhook_id for r in received} == {expected_id}
    assert all(r.verified for r in received)
    status = read_request("retry-hook")["status"]
    assert status["phase"] == c.Phase.SUCCEEDED.value
    assert status["callback"]["state"] == c.CallbackState.DELIVERED.value
    assert status["callback"]["attempts"] == 3 and status["callback"]["lastStatusCode"] == 200
    assert status["callback"]["webhookId"] == expected_id
    assert _conditions(status)["CallbackDelivered"] == "True"


def test_receiver_down_records_a_failed_callback_and_the_request_stays_succeeded(
        create_request, read_request, runner_settings, api_client) -> None:
    create_request("dead-hook", _spec(_closed_port_url()))
    settings = runner_settings("dead-hook", callback_max_attempts=3)
    assert run_request(settings, client.CustomObjectsApi(api_client)) == c.ExitCode.SUCCESS
    status = read_request("dead-hook")["status"]
    assert status["phase"] == c.Phase.SUCCEEDED.value and len(status["outputs"]) == 1
    assert status["callback"]["state"] == c.CallbackState.FAILED.value
    assert status["callback"]["attempts"] == 3 and "ConnectionError" in status["callback"]["lastError"]
    assert _conditions(status)["CallbackDelivered"] == "False"
    assert _conditions(status)["Succeeded"] == "True"


def test_invalid_spec_fails_permanently_naming_the_field(
        create_request, read_request, runner_settings, api_client, callback_receiver) -> None:
    """The API server refuses bad specs, so this plays a runner that got its spec another way
    (an older CRD without the rule): it reads a valid object, but sees bpm 10."""
    created = create_request("bad-bpm", _spec(callback_receiver.url, retries=5))
    api = client.CustomObjectsApi(api_client)
    settings = runner_settings("bad-bpm", callback_secret=callback_receiver.secret)
    reporter = StatusReporter(api, settings.namespace, settings.name)
    seen = copy.deepcopy(reporter.read())
    seen["spec"]["bpm"] = 10
    assert RequestRun(settings, reporter, seen).execute() == c.ExitCode.PERMANENT_FAILURE
    status = read_request("bad-bpm")["status"]
    assert status["phase"] == c.Phase.FAILED.value and status["reason"] == c.FailureReason.INVALID_SPEC.value
    assert "spec.bpm" in status["message"]
    (received,) = callback_receiver.wait_for(1, timeout=30)
    assert received.json["data"]["error"]["reason"] == c.FailureReason.INVALID_SPEC.value
    assert received.webhook_id == webhook_id(created["metadata"]["uid"], c.EventType.FAILED.value)


def test_secret_ref_without_the_secret_is_not_sent_unsigned(
        create_request, read_request, runner_settings, api_client, callback_receiver) -> None:
    create_request("no-secret", _spec(callback_receiver.url, model="stemgen/absent"))
    settings = runner_settings("no-secret", callback_secret=None)
    assert run_request(settings, client.CustomObjectsApi(api_client)) == c.ExitCode.PERMANENT_FAILURE
    status = read_request("no-secret")["status"]
    assert status["reason"] == c.FailureReason.MODEL_NOT_FOUND.value
    assert status["callback"]["state"] == c.CallbackState.FAILED.value
    assert c.ENV_CALLBACK_SECRET in status["callback"]["lastError"]
    assert callback_receiver.received == []


def test_a_rerun_after_a_crash_overwrites_the_same_blobs(
        create_request, read_request, runner_settings, api_client, custom_objects, namespace, azurite,
        callback_receiver) -> None:
    """A pod that uploaded and then died before writing Succeeded is retried: same blob names, overwritten."""
    create_request("again", _spec(callback_receiver.url, stems=["bass", "drums"]))
    settings = runner_settings("again", callback_secret=callback_receiver.secret)
    assert run_request(settings, client.CustomObjectsApi(api_client)) == c.ExitCode.SUCCESS
    first = read_request("again")["status"]["outputs"]
    before = {o["blobName"]: download(azurite.connection_string, o)[1] for o in first}
    # Play the crash: status as it was before the first run finished.
    custom_objects.patch_namespaced_custom_object_status(
        c.GROUP, c.VERSION, namespace, c.PLURAL, "again",
        {"status": {"phase": c.Phase.RUNNING.value, "outputs": None, "callback": None}})
    assert run_request(settings, client.CustomObjectsApi(api_client)) == c.ExitCode.SUCCESS
    second = read_request("again")["status"]["outputs"]
    assert [o["blobName"] for o in second] == [o["blobName"] for o in first]
    for output in second:
        properties = download(azurite.connection_string, output)[1]
        assert properties.etag != before[output["blobName"]].etag  # rewritten, not a second copy
        assert output["sha256"] == properties.metadata["sha256"]
    container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client("stems")
    assert sorted(b.name for b in container.list_blobs(name_starts_with=f"{namespace}/again/")) == \
        sorted(o["blobName"] for o in second)
