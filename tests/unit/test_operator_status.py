"""Phase/condition transitions as pure status patches."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from stemgen_api import contract as c
from stemgen_operator import status as s
from stemgen_operator.testing import request_body

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
LATER = NOW + timedelta(minutes=5)


def conditions(patch: dict) -> dict[str, dict]:
    return {item["type"]: item for item in patch["conditions"]}


def test_accepted_queues_with_conditions_and_observed_generation():
    body = request_body(generation=2, requestId="abc")
    patch = s.accepted(body, c.Pool.GPU, NOW)
    assert patch["phase"] == "Queued"
    assert patch["pool"] == "gpu"
    assert patch["requestId"] == "abc"
    assert patch["queuedTime"] == "2026-03-01T12:00:00Z"
    assert patch["observedGeneration"] == 2
    admitted = conditions(patch)["Admitted"]
    assert admitted["status"] == "False"
    assert admitted["reason"] == s.REASON_WAITING_FOR_SLOT
    assert admitted["observedGeneration"] == 2
    assert admitted["lastTransitionTime"] == "2026-03-01T12:00:00Z"


def test_accepted_for_kueue_says_so():
    patch = s.accepted(request_body(), c.Pool.CPU, NOW, kueue_queue="team")
    assert patch["reason"] == s.REASON_WAITING_FOR_KUEUE
    assert "team" in patch["message"]


def test_transition_time_moves_only_when_status_flips():
    body = request_body(status=s.accepted(request_body(), c.Pool.GPU, NOW))
    same = s.set_conditions(body["status"]["conditions"], [(c.ConditionType.ADMITTED, False, "Still", "waiting")],
                            LATER, 1)
    assert {x["type"]: x for x in same}["Admitted"]["lastTransitionTime"] == "2026-03-01T12:00:00Z"
    assert {x["type"]: x for x in same}["Admitted"]["reason"] == "Still"
    flipped = s.admitted(body, "sg-song-1", c.Pool.GPU, LATER)
    admitted = conditions(flipped)["Admitted"]
    assert admitted["status"] == "True"
    assert admitted["lastTransitionTime"] == "2026-03-01T12:05:00Z"
    assert flipped["jobName"] == "sg-song-1"
    assert flipped["queuePosition"] is None, "merge patch null removes the position"
    assert conditions(flipped)["Ready"]["status"] == "False", "other conditions are kept"


def test_queue_position_message_names_pool_and_place():
    patch = s.queue_position(c.Pool.CPU, 3, 2)
    assert patch["queuePosition"] == 3
    assert "position 3" in patch["message"] and "cpu" in patch["message"]
    assert s.queue_position(c.Pool.GPU, 1, 0)["reason"] == s.REASON_POOL_PAUSED


def test_running_sets_phase_once_then_only_attempts():
    queued = request_body(status=s.accepted(request_body(), c.Pool.GPU, NOW))
    patch = s.running(queued, 1, NOW, LATER)
    assert patch["phase"] == "Running"
    assert patch["startTime"] == "2026-03-01T12:00:00Z"
    assert conditions(patch)["Running"]["status"] == "True"
    assert conditions(patch)["Admitted"]["status"] == "True", "a running pod proves admission (Kueue, restarts)"
    running = request_body(status={**queued["status"], **patch})
    assert s.running(running, 2, NOW, LATER) == {"attempts": 2}


def test_finished_failed_sets_every_terminal_condition():
    body = request_body(status=s.accepted(request_body(), c.Pool.GPU, NOW))
    patch = s.finished(body, c.Phase.FAILED, "OOMKilled", "out of memory", LATER)
    assert patch["phase"] == "Failed"
    assert patch["reason"] == "OOMKilled"
    assert patch["completionTime"] == "2026-03-01T12:05:00Z"
    found = conditions(patch)
    assert found["Failed"]["status"] == "True"
    assert found["Succeeded"]["status"] == "False"
    assert found["Succeeded"]["reason"] == "OOMKilled"
    assert found["Cancelled"]["status"] == "False"
    assert found["Running"]["status"] == "False"
    assert found["Ready"]["status"] == "False"


def test_missing_terminal_conditions_completes_a_bare_runner_write():
    body = request_body(status={"phase": "Succeeded", "reason": "Done"})
    patch = s.missing_terminal_conditions(body, NOW)
    assert patch is not None
    assert conditions(patch)["Succeeded"]["status"] == "True"
    assert conditions(patch)["Ready"]["status"] == "True"
    assert patch["completionTime"] == "2026-03-01T12:00:00Z"
    complete = request_body(status={**body["status"], **patch})
    assert s.missing_terminal_conditions(complete, LATER) is None
    assert s.missing_terminal_conditions(request_body(status={"phase": "Running"}), NOW) is None


def test_combine_queues_and_admits_in_one_write():
    body = request_body(generation=1)
    patch = s.combine(body, lambda b: s.accepted(b, c.Pool.CPU, NOW), lambda b: s.admitted(b, "sg-x", c.Pool.CPU, NOW))
    assert patch["phase"] == "Queued" and patch["reason"] == s.REASON_ADMITTED and patch["jobName"] == "sg-x"
    assert patch["queuedTime"] == patch["admittedTime"] == "2026-03-01T12:00:00Z"
    found = conditions(patch)
    assert found["Admitted"]["status"] == "True" and found["Ready"]["status"] == "False"
    assert "queuePosition" not in s.applied(body, patch)["status"]
