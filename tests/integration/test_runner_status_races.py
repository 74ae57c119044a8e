"""The runner never writes over a phase someone else ended (cancel, operator-detected failure)."""

from __future__ import annotations

import pytest
from kubernetes import client

from stemgen_api import contract as c
from stemgen_runner.errors import RequestEnded
from stemgen_runner.report import StatusReporter
from tests.invalid_specs import VALID_SPEC


def _objects(api_client) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


def _create(api_client, namespace: str, name: str, phase: str) -> None:
    objects = _objects(api_client)
    objects.create_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, {
        "apiVersion": c.API_VERSION, "kind": c.KIND, "metadata": {"name": name}, "spec": VALID_SPEC})
    objects.patch_namespaced_custom_object_status(c.GROUP, c.VERSION, namespace, c.PLURAL, name,
                                                  {"status": {"phase": phase, "reason": "ByTest"}})


def test_cancelled_request_is_not_turned_into_succeeded(api_client, namespace) -> None:
    _create(api_client, namespace, "cancelled", c.Phase.CANCELLED.value)
    reporter = StatusReporter(_objects(api_client), namespace, "cancelled")
    with pytest.raises(RequestEnded, match="already Cancelled"):
        reporter.transition({"phase": c.Phase.SUCCEEDED.value, "reason": "Succeeded"},
                            [(c.ConditionType.SUCCEEDED, True, "Succeeded", "done")])
    status = _objects(api_client).get_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.PLURAL, "cancelled")["status"]
    assert status["phase"] == "Cancelled" and status["reason"] == "ByTest"
    assert not status.get("conditions")


def test_running_request_transitions_and_records_the_condition(api_client, namespace) -> None:
    _create(api_client, namespace, "running", c.Phase.RUNNING.value)
    reporter = StatusReporter(_objects(api_client), namespace, "running")
    reporter.read()
    updated = reporter.transition({"phase": c.Phase.SUCCEEDED.value, "reason": "Succeeded"},
                                  [(c.ConditionType.SUCCEEDED, True, "Succeeded", "done")])
    assert updated["status"]["phase"] == "Succeeded"
    assert [cond["type"] for cond in updated["status"]["conditions"]] == ["Succeeded"]


def test_a_write_racing_the_decision_is_re_read_not_overwritten(api_client, namespace) -> None:
    """The operator cancels between the runner's read and its patch: the patch conflicts, the re-read wins."""
    _create(api_client, namespace, "raced", c.Phase.RUNNING.value)
    objects = _objects(api_client)
    reporter = StatusReporter(objects, namespace, "raced")
    real_read = reporter.read
    raced = []

    def read_then_cancel() -> dict:
        live = real_read()
        if not raced:  # the operator's write lands after our read, before our patch
            raced.append(True)
            objects.patch_namespaced_custom_object_status(c.GROUP, c.VERSION, namespace, c.PLURAL, "raced",
                                                          {"status": {"phase": "Cancelled", "reason": "Operator"}})
        return live

    reporter.read = read_then_cancel  # type: ignore[method-assign]
    with pytest.raises(RequestEnded, match="already Cancelled"):
        reporter.transition({"phase": c.Phase.SUCCEEDED.value}, [])
    assert objects.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, "raced")[
        "status"]["phase"] == "Cancelled"
