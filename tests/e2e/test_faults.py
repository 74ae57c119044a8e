"""The fault matrix: every fault ends in a terminal phase with a reason and the right callback."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from stemgen_api import contract as c
from stemgen_dev.stack import pool_settings, request_manifest
from tests.waiting import eventually

pytestmark = pytest.mark.e2e


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    return eventually(check, what, timeout, interval)


def runner_pods(stack, name: str) -> list[client.V1Pod]:
    core = client.CoreV1Api(stack.api_client)
    return core.list_namespaced_pod(stack.namespace, label_selector=f"{c.LABEL_NAME}={name}").items


def running_runner_pid(stack, name: str) -> int | None:
    """The pid of the runner process of the request's pod, once the node agent runs it."""
    for pod in runner_pods(stack, name):
        statuses = pod.status.container_statuses or []
        if pod.status.phase == "Running" and statuses and statuses[0].container_id:
            return int(statuses[0].container_id.rsplit("/", 1)[-1])
    return None


def stage(stack, name: str) -> str:
    return (stack.requests.status(name).get("progress") or {}).get("stage", "")


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def callbacks_of(stack, event_type: c.EventType) -> list[Any]:
    return [cb for cb in stack.receiver.received if (cb.json or {}).get("type") == event_type.value]


def test_runner_killed_mid_run_is_retried_and_succeeds(stack) -> None:
    name = "killed-once"
    stack.requests.create(request_manifest(name, device="cpu", retries=2, duration=8.0,
                                           callback_url=stack.receiver.url))
    pid = wait_for(lambda: running_runner_pid(stack, name), 120, "the runner to run")
    wait_for(lambda: stage(stack, name) in ("loading-model", "generating"), 120, "the runner to get going",
             interval=0.1)
    os.kill(pid, signal.SIGKILL)

    status = stack.requests.wait_terminal(name, timeout=300)
    assert status["phase"] == c.Phase.SUCCEEDED.value, stack.diagnose(name)
    assert status["attempts"] == 2

    def exit_codes() -> list[int] | None:
        # The runner writes Succeeded, then calls back, then exits: wait for the pod to end too.
        states = [p.status.container_statuses[0].state.terminated for p in runner_pods(stack, name)
                  if p.status.container_statuses]
        return sorted(t.exit_code for t in states) if states and all(states) else None

    assert wait_for(exit_codes, 60, "both runner pods to end") == [0, 137]
    stack.receiver.wait_for(1, timeout=60)
    assert [cb.json["type"] for cb in stack.receiver.received] == [c.EventType.SUCCEEDED.value]


def test_runner_killed_without_retries_fails_with_callback(stack) -> None:
    name = "killed-for-good"
    stack.requests.create(request_manifest(name, device="cpu", retries=0, duration=8.0,
                                           callback_url=stack.receiver.url))
    pid = wait_for(lambda: running_runner_pid(stack, name), 120, "the runner to run")
    os.kill(pid, signal.SIGKILL)

    status = stack.requests.wait_terminal(name, timeout=180)
    assert status["phase"] == c.Phase.FAILED.value, stack.diagnose(name)
    assert status.get("reason"), status
    callbacks = stack.receiver.wait_for(1, timeout=90)
    assert [cb.json["type"] for cb in callbacks] == [c.EventType.FAILED.value]
    assert callbacks[0].verified


@pytest.mark.operator_env({"STEMGEN_OPERATOR_CPU_POOL": json.dumps({
    **pool_settings(2, c.Pool.CPU), "resources": {"requests": {"cpu": "500m", "memory": "64Mi"},
                                                  "limits": {"memory": "150Mi"}}})})
def test_runner_over_its_memory_limit_is_oom_killed(stack) -> None:
    name = "greedy"
    stack.requests.create(request_manifest(name, device="cpu", retries=0, callback_url=stack.receiver.url))
    status = stack.requests.wait_terminal(name, timeout=180)
    assert status["phase"] == c.Phase.FAILED.value, stack.diagnose(name)
    assert status["reason"] == c.FailureReason.OOM_KILLED.value, stack.diagnose(name)
    terminated = runner_pods(stack, name)[0].status.container_statuses[0].state.terminated
    assert (terminated.reason, terminated.exit_code) == ("OOMKilled", 137)
    callbacks = stack.receiver.wait_for(1, timeout=90)
    assert callbacks[0].json["type"] == c.EventType.FAILED.value
    data = callbacks[0].json["data"]
    # The operator sends this one (the runner never got to): reason at the top of `data`.
    assert data["reason"] == c.FailureReason.OOM_KILLED.value


def test_deadline_exceeded(stack) -> None:
    name = "too-slow"
    stack.requests.create(request_manifest(name, device="cpu", retries=0, duration=300.0, timeoutSeconds=30,
                                           stems=["drums", "bass", "guitar", "piano", "synth", "strings"],
                                           callback_url=stack.receiver.url))
    pid = wait_for(lambda: running_runner_pid(stack, name), 120, "the runner to run")
    status = stack.requests.wait_terminal(name, timeout=180)
    assert status["phase"] == c.Phase.FAILED.value, stack.diagnose(name)
    assert status["reason"] == c.FailureReason.DEADLINE_EXCEEDED.value, stack.diagnose(name)
    wait_for(lambda: pid_gone(pid), 60, "the runner process to be killed")
    callbacks = stack.receiver.wait_for(1, timeout=90)
    assert [cb.json["type"] for cb in callbacks] == [c.EventType.FAILED.value]


def test_operator_killed_and_restarted_mid_flight(stack) -> None:
    name = "survivor"
    stack.requests.create(request_manifest(name, device="gpu", duration=4.0, callback_url=stack.receiver.url))
    wait_for(lambda: running_runner_pid(stack, name), 120, "the runner to run")
    stack.operator.kill()
    time.sleep(2)
    stack.operator.start()

    status = stack.requests.wait_terminal(name, timeout=240)
    assert status["phase"] == c.Phase.SUCCEEDED.value, stack.diagnose(name)
    jobs = client.BatchV1Api(stack.api_client).list_namespaced_job(
        stack.namespace, label_selector=f"{c.LABEL_NAME}={name}").items
    assert len(jobs) == 1
    stack.receiver.wait_for(1, timeout=60)
    time.sleep(3)  # a restarted operator re-sending the callback would show up now
    ids = Counter(cb.webhook_id for cb in stack.receiver.received)
    assert len(ids) == 1 and set(ids.values()) == {1}, ids


def test_callback_receiver_down_then_back(stack) -> None:
    name = "patient-receiver"
    stack.receiver.script([503, 503, 502])
    stack.requests.create(request_manifest(name, device="cpu", callback_url=stack.receiver.url))
    status = stack.requests.wait_terminal(name, timeout=180)
    assert status["phase"] == c.Phase.SUCCEEDED.value, stack.diagnose(name)
    received = stack.receiver.wait_for(4, timeout=120)
    assert [cb.status_returned for cb in received] == [503, 503, 502, 200]
    assert len({cb.webhook_id for cb in received}) == 1  # one event, retried under the same id
    callback_status = wait_for(lambda: (s := stack.requests.status(name).get("callback") or {})
                               .get("state") == c.CallbackState.DELIVERED.value and s, 60, "callback Delivered")
    assert callback_status["attempts"] == 4
    assert callback_status["lastStatusCode"] == 200


def test_azurite_stopped_during_the_run(stack) -> None:
    """The blob store vanishes while the runner generates and comes back: uploads are retried."""
    name = "flaky-storage"
    stack.requests.create(request_manifest(name, device="cpu", retries=2, duration=8.0,
                                           callback_url=stack.receiver.url))
    wait_for(lambda: stage(stack, name) in ("generating", "post-processing", "uploading"), 180,
             "the runner to generate", interval=0.1)
    stack.azurite.stop()
    try:
        time.sleep(4)
    finally:
        stack.azurite.start()
    status = stack.requests.wait_terminal(name, timeout=300)
    assert status["phase"] == c.Phase.SUCCEEDED.value, stack.diagnose(name)
    callbacks = stack.receiver.wait_for(1, timeout=60)
    assert callbacks[0].json["type"] == c.EventType.SUCCEEDED.value


def test_spec_cancel_stops_the_run(stack) -> None:
    name = "never-mind"
    stack.requests.create(request_manifest(name, device="cpu", duration=120.0, callback_url=stack.receiver.url))
    pid = wait_for(lambda: running_runner_pid(stack, name), 120, "the runner to run")
    stack.requests.patch_spec(name, {"cancel": True})
    status = stack.requests.wait_terminal(name, timeout=120)
    assert status["phase"] == c.Phase.CANCELLED.value, stack.diagnose(name)
    wait_for(lambda: pid_gone(pid), 60, "the runner process to be killed")
    callbacks = stack.receiver.wait_for(1, timeout=90)
    assert [cb.json["type"] for cb in callbacks] == [c.EventType.CANCELLED.value]


def test_deleting_the_resource_mid_run(stack) -> None:
    name = "deleted"
    stack.requests.create(request_manifest(name, device="gpu", duration=120.0, callback_url=stack.receiver.url))
    pid = wait_for(lambda: running_runner_pid(stack, name), 120, "the runner to run")
    stack.requests.delete(name)
    wait_for(lambda: pid_gone(pid), 90, "the runner process to be killed")
    batch = client.BatchV1Api(stack.api_client)

    def job_gone() -> bool:
        jobs = batch.list_namespaced_job(stack.namespace, label_selector=f"{c.LABEL_NAME}={name}").items
        return not jobs

    wait_for(job_gone, 90, "the Job to be garbage-collected")
    callbacks = stack.receiver.wait_for(1, timeout=90)
    assert [cb.json["type"] for cb in callbacks] == [c.EventType.CANCELLED.value]
    with pytest.raises(ApiException):
        stack.requests.custom.get_namespaced_custom_object(c.GROUP, c.VERSION, stack.namespace, c.PLURAL, name)
