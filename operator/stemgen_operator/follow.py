"""What happened to a Job and its pods, in the request's terms.

The Job controller only says *that* a Job failed (BackoffLimitExceeded, DeadlineExceeded,
PodFailurePolicy); the pods say *why* (OOMKilled, Evicted, an image that will not pull). A user
wants the why, so the pod's reason wins whenever it is more specific than the Job's.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stemgen_api import contract as c

from . import resource as r

IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
MESSAGE_LIMIT = 1024


class JobState(str, enum.Enum):
    SUSPENDED = "Suspended"
    ACTIVE = "Active"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


def _condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for item in (job.get("status") or {}).get("conditions") or []:
        if item.get("type") == type_ and item.get("status") == "True":
            return item
    return None


def job_state(job: Mapping[str, Any]) -> JobState:
    """FailureTarget counts as failed: it is set the moment the controller decides, before the
    pods are gone, and the final Failed condition only follows once they have terminated."""
    if _condition(job, "Failed") or _condition(job, "FailureTarget"):
        return JobState.FAILED
    if _condition(job, "Complete") or _condition(job, "SuccessCriteriaMet"):
        return JobState.SUCCEEDED
    if (job.get("spec") or {}).get("suspend"):
        return JobState.SUSPENDED
    return JobState.ACTIVE


def job_failure_reason(job: Mapping[str, Any]) -> tuple[str, str]:
    """(reason, message) of the Job controller's own failure verdict."""
    found = _condition(job, "Failed") or _condition(job, "FailureTarget") or {}
    return str(found.get("reason") or "Failed"), str(found.get("message") or "")


@dataclass(frozen=True)
class PodFacts:
    """The failure-relevant part of one pod."""

    name: str
    created: datetime
    phase: str
    reason: str | None
    exit_code: int | None
    terminated_reason: str | None
    waiting_reason: str | None
    message: str
    disrupted: bool

    @property
    def started(self) -> bool:
        return self.phase in ("Running", "Succeeded") or self.exit_code is not None


def pod_facts(pod: Mapping[str, Any], container: str = "runner") -> PodFacts:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    exit_code = terminated_reason = waiting_reason = None
    message = str(status.get("message") or "")
    for item in status.get("containerStatuses") or []:
        if item.get("name") != container:
            continue
        state = item.get("state") or {}
        last = item.get("lastState") or {}
        terminated = state.get("terminated") or last.get("terminated")
        if terminated:
            exit_code = terminated.get("exitCode")
            terminated_reason = terminated.get("reason")
            message = str(terminated.get("message") or message)
        waiting = state.get("waiting")
        if waiting:
            waiting_reason = waiting.get("reason")
            message = str(waiting.get("message") or message)
    disrupted = any(cond.get("type") == "DisruptionTarget" and cond.get("status") == "True"
                    for cond in status.get("conditions") or [])
    return PodFacts(
        name=meta.get("name", ""), created=r.parse_time(meta.get("creationTimestamp")) or datetime.min,
        phase=str(status.get("phase") or "Pending"), reason=status.get("reason"), exit_code=exit_code,
        terminated_reason=terminated_reason, waiting_reason=waiting_reason, message=message.strip(),
        disrupted=disrupted)


def attempts(pods: Iterable[Mapping[str, Any]]) -> int:
    """Runner pods that actually started: a pod stuck Pending is no attempt."""
    return sum(1 for pod in pods if pod_facts(pod).started)


def first_start(pods: Iterable[Mapping[str, Any]]) -> datetime | None:
    times = [r.parse_time((pod.get("status") or {}).get("startTime")) for pod in pods if pod_facts(pod).started]
    known = [moment for moment in times if moment is not None]
    return min(known) if known else None


def pod_failure(facts: PodFacts) -> tuple[c.FailureReason, str] | None:
    """The specific reason one pod failed (or cannot start), if it has one."""
    if facts.reason == "Evicted" or facts.disrupted:
        return c.FailureReason.EVICTED, f"pod {facts.name} was evicted: {facts.message or 'no detail'}"
    if facts.terminated_reason == "OOMKilled":
        return c.FailureReason.OOM_KILLED, (f"pod {facts.name} ran out of memory (OOMKilled, exit code "
                                            f"{facts.exit_code}); give the pool more memory or ask for fewer stems "
                                            "or a shorter duration")
    if facts.waiting_reason in IMAGE_PULL_REASONS:
        return c.FailureReason.IMAGE_PULL, f"pod {facts.name} cannot pull the runner image ({facts.waiting_reason}): " \
                                           f"{facts.message or 'no detail'}"
    return None


def _describe_exit(facts: PodFacts) -> str:
    detail = f"exit code {facts.exit_code}" if facts.exit_code is not None else f"phase {facts.phase}"
    if facts.terminated_reason:
        detail += f", {facts.terminated_reason}"
    tail = f": {facts.message}" if facts.message else ""
    return f"pod {facts.name} failed ({detail}){tail}"


def classify(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> tuple[c.FailureReason, str]:
    """Why a failed Job failed, naming the most specific cause and keeping the message short."""
    job_reason, job_message = job_failure_reason(job)
    facts = sorted((pod_facts(pod) for pod in pods), key=lambda f: f.created, reverse=True)
    specific = next((found for f in facts if (found := pod_failure(f))), None)
    if job_reason == "DeadlineExceeded":
        if specific and specific[0] is c.FailureReason.IMAGE_PULL:
            reason, message = specific
        else:
            limit = (job.get("spec") or {}).get("activeDeadlineSeconds")
            reason, message = c.FailureReason.DEADLINE_EXCEEDED, (
                f"the run exceeded its timeout of {limit}s (spec.timeoutSeconds)" if limit else
                job_message or "the Job exceeded its deadline")
    elif specific:
        reason, message = specific
    elif job_reason == "BackoffLimitExceeded":
        failed = next((f for f in facts if f.phase == "Failed"), None)
        detail = f"; last: {_describe_exit(failed)}" if failed else ""
        reason, message = c.FailureReason.BACKOFF_LIMIT_EXCEEDED, (
            f"all {(job.get('spec') or {}).get('backoffLimit', 0) + 1} attempt(s) failed (spec.retries){detail}")
    else:
        failed = next((f for f in facts if f.phase == "Failed"), None)
        reason = c.FailureReason.POD_FAILED
        message = _describe_exit(failed) if failed else (job_message or f"the Job failed ({job_reason})")
    return reason, message[:MESSAGE_LIMIT]


def stuck(pods: Sequence[Mapping[str, Any]]) -> tuple[c.FailureReason, str] | None:
    """A live pod that cannot start (image pull): worth an event and a status message now,
    though the Job keeps trying until its deadline because the image may yet appear."""
    for pod in pods:
        facts = pod_facts(pod)
        if facts.phase == "Pending" and facts.waiting_reason in IMAGE_PULL_REASONS:
            return pod_failure(facts)
    return None
