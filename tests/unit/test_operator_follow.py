"""Job + pods → what happened, in the request's terms."""

from __future__ import annotations

from stemgen_api import contract as c
from stemgen_operator import follow


def job(reason: str | None = None, *, complete: bool = False, suspend: bool = False, failure_target: bool = False,
        deadline: int = 600, backoff: int = 2) -> dict:
    conditions = []
    if reason:
        conditions.append({"type": "FailureTarget" if failure_target else "Failed", "status": "True",
                           "reason": reason, "message": f"job says {reason}"})
    if complete:
        conditions.append({"type": "Complete", "status": "True"})
    return {"metadata": {"name": "sg-x-1"}, "spec": {"suspend": suspend, "activeDeadlineSeconds": deadline,
                                                     "backoffLimit": backoff},
            "status": {"conditions": conditions}}


def pod(name: str = "p1", created: str = "2026-03-01T12:00:00Z", phase: str = "Failed", *,
        terminated: dict | None = None, waiting: dict | None = None, reason: str | None = None,
        disrupted: bool = False, started: str | None = None) -> dict:
    state = {}
    if terminated:
        state["terminated"] = terminated
    if waiting:
        state["waiting"] = waiting
    status = {"phase": phase, "containerStatuses": [{"name": "runner", "state": state}],
              "conditions": [{"type": "DisruptionTarget", "status": "True"}] if disrupted else []}
    if reason:
        status["reason"] = reason
    if started:
        status["startTime"] = started
    return {"metadata": {"name": name, "creationTimestamp": created}, "status": status}


def test_job_states():
    assert follow.job_state(job()) is follow.JobState.ACTIVE
    assert follow.job_state(job(suspend=True)) is follow.JobState.SUSPENDED
    assert follow.job_state(job("BackoffLimitExceeded")) is follow.JobState.FAILED
    assert follow.job_state(job("DeadlineExceeded", failure_target=True)) is follow.JobState.FAILED
    assert follow.job_state(job(complete=True)) is follow.JobState.SUCCEEDED


def test_oom_killed_pod_beats_the_jobs_backoff_reason():
    reason, message = follow.classify(job("BackoffLimitExceeded"), [
        pod(terminated={"exitCode": 137, "reason": "OOMKilled"})])
    assert reason is c.FailureReason.OOM_KILLED
    assert "OOMKilled" in message and "p1" in message


def test_deadline_is_reported_with_the_timeout():
    reason, message = follow.classify(job("DeadlineExceeded", deadline=45), [pod(phase="Running")])
    assert reason is c.FailureReason.DEADLINE_EXCEEDED
    assert "45s" in message and "timeoutSeconds" in message


def test_deadline_while_the_image_never_pulled_names_the_image():
    reason, message = follow.classify(job("DeadlineExceeded"), [
        pod(phase="Pending", waiting={"reason": "ImagePullBackOff", "message": "no such image"})])
    assert reason is c.FailureReason.IMAGE_PULL
    assert "no such image" in message


def test_evicted_pod():
    reason, _ = follow.classify(job("BackoffLimitExceeded"), [pod(reason="Evicted")])
    assert reason is c.FailureReason.EVICTED
    reason, _ = follow.classify(job("PodFailurePolicy"), [pod(disrupted=True)])
    assert reason is c.FailureReason.EVICTED


def test_plain_crash_after_all_retries_describes_the_last_pod():
    pods = [pod("old", "2026-03-01T12:00:00Z", terminated={"exitCode": 1, "message": "first"}),
            pod("new", "2026-03-01T12:05:00Z", terminated={"exitCode": 75, "reason": "Error", "message": "boom"})]
    reason, message = follow.classify(job("BackoffLimitExceeded", backoff=1), pods)
    assert reason is c.FailureReason.BACKOFF_LIMIT_EXCEEDED
    assert "all 2 attempt(s)" in message and "new" in message and "exit code 75" in message and "boom" in message


def test_pod_failure_policy_exit_without_runner_report():
    reason, message = follow.classify(job("PodFailurePolicy"), [pod(terminated={"exitCode": 42})])
    assert reason is c.FailureReason.POD_FAILED
    assert "exit code 42" in message


def test_message_is_bounded():
    _, message = follow.classify(job("PodFailurePolicy"), [pod(terminated={"exitCode": 1, "message": "x" * 5000})])
    assert len(message) <= follow.MESSAGE_LIMIT


def test_attempts_count_only_started_pods():
    pods = [pod(phase="Pending"), pod(phase="Running", started="2026-03-01T12:01:00Z"),
            pod(phase="Failed", terminated={"exitCode": 1}, started="2026-03-01T12:00:30Z")]
    assert follow.attempts(pods) == 2
    assert follow.first_start(pods).minute == 0
