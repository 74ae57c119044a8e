"""20 requests against a GPU limit of 2: all succeed, none lost, never more than 2 at once,
every callback delivered exactly once per event id."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from kubernetes import client

from stemgen_api import contract as c
from stemgen_dev.stack import request_manifest

pytestmark = pytest.mark.e2e

REQUESTS = 20
GPU_LIMIT = 2


def unfinished_jobs(batch: client.BatchV1Api, namespace: str) -> int:
    jobs = batch.list_namespaced_job(namespace, label_selector=f"{c.LABEL_COMPONENT}={c.COMPONENT_RUNNER}").items
    return sum(1 for job in jobs if not any(cond.type in ("Complete", "Failed") and cond.status == "True"
                                            for cond in job.status.conditions or []))


def admitted_and_unfinished(status: dict) -> bool:
    """Holding a pool slot: Running, or Queued with the Admitted condition (its Job exists)."""
    if status.get("phase") == c.Phase.RUNNING.value:
        return True
    admitted = any(cond.get("type") == c.ConditionType.ADMITTED.value and cond.get("status") == "True"
                   for cond in status.get("conditions") or [])
    return status.get("phase") == c.Phase.QUEUED.value and admitted


@pytest.mark.timeout(1500)
def test_twenty_requests_respect_the_gpu_limit(stack) -> None:
    assert stack.operator.gpu_limit == GPU_LIMIT
    batch = client.BatchV1Api(stack.api_client)
    core = client.CoreV1Api(stack.api_client)
    names = [f"burst-{index:02d}" for index in range(REQUESTS)]
    for name in names:
        stack.requests.create(request_manifest(name, stems=["drums"], device="gpu", callback_url=stack.receiver.url))

    # Sample what is in flight while the burst drains. The limit is on requests running (admitted,
    # not yet terminal); Jobs and pods are recorded too: a pod still sending its callback after
    # writing Succeeded may briefly overlap the next admitted one (the scheduler's GPU count is what
    # guards the device itself).
    peaks = {"running": 0, "jobs": 0, "pods": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                items = stack.requests.custom.list_namespaced_custom_object(
                    c.GROUP, c.VERSION, stack.namespace, c.PLURAL)["items"]
                running = sum(1 for item in items if admitted_and_unfinished(item.get("status") or {}))
                peaks["running"] = max(peaks["running"], running)
                peaks["jobs"] = max(peaks["jobs"], unfinished_jobs(batch, stack.namespace))
                pods = core.list_namespaced_pod(stack.namespace, label_selector=f"{c.LABEL_POOL}=gpu").items
                active = [p for p in pods if p.status.phase in ("Pending", "Running") and p.spec.node_name]
                peaks["pods"] = max(peaks["pods"], len(active))
            except Exception:  # a sampling hiccup must not end the sampler
                pass
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        statuses = {name: stack.requests.wait_terminal(name, timeout=1200) for name in names}
    finally:
        done.set()
        sampler.join(timeout=5)

    failed = {name: (s.get("phase"), s.get("reason"), s.get("message")) for name, s in statuses.items()
              if s.get("phase") != c.Phase.SUCCEEDED.value}
    assert not failed, f"{failed}\n{stack.diagnose(next(iter(failed)))}"
    print(f"peaks while draining {REQUESTS} requests at GPU limit {GPU_LIMIT}: {peaks}")
    assert 1 <= peaks["running"] <= GPU_LIMIT, peaks
    assert all(s["pool"] == "gpu" for s in statuses.values())

    callbacks = stack.receiver.wait_for(REQUESTS, timeout=120)
    time.sleep(2)  # a duplicate would arrive right behind the first delivery
    ids = Counter(callback.webhook_id for callback in stack.receiver.received)
    assert len(ids) == REQUESTS and set(ids.values()) == {1}, ids
    assert all(callback.verified and callback.json["type"] == c.EventType.SUCCEEDED.value for callback in callbacks)
    assert {callback.json["data"]["name"] for callback in callbacks} == set(names)
