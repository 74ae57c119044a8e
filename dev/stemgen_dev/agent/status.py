"""Pod status as a kubelet reports it, built from what happened to the local process.

The Job controller reads exactly these fields: the pod `phase` to count successes and
failures, `containerStatuses[].state.terminated.exitCode` for `podFailurePolicy` exit-code
rules, and `reason` (`OOMKilled`, `DeadlineExceeded`) which the operator turns into the
request's failure reason. Keeping the builders pure lets the unit tests pin that shape.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .nodes import rfc3339

REASON_COMPLETED = "Completed"
REASON_ERROR = "Error"
REASON_OOM_KILLED = "OOMKilled"
REASON_START_ERROR = "StartError"
REASON_CONFIG_ERROR = "CreateContainerConfigError"
REASON_CONTAINER_CREATING = "ContainerCreating"
POD_REASON_DEADLINE = "DeadlineExceeded"
POD_MESSAGE_DEADLINE = "Pod was active on the node longer than the specified deadline"
MAX_MESSAGE_BYTES = 4096
"""The kubelet caps a termination message at 4 KiB."""
FALLBACK_LOG_LINES = 80
EXIT_SIGKILL = 137


@dataclass(frozen=True)
class Termination:
    exit_code: int
    reason: str
    message: str
    started_at: dt.datetime
    finished_at: dt.datetime


@dataclass(frozen=True)
class ContainerReport:
    """What the agent knows about one container; exactly one of waiting/running/terminated."""

    name: str
    image: str
    container_id: str = ""
    restart_count: int = 0
    waiting_reason: str = ""
    waiting_message: str = ""
    running_since: dt.datetime | None = None
    terminated: Termination | None = None
    last_termination: Termination | None = None


def exit_code_of(returncode: int) -> int:
    """Popen's -N (killed by signal N) becomes the shell-style 128+N a container runtime reports."""
    return 128 - returncode if returncode < 0 else returncode


def container_reason(exit_code: int, oom_killed: bool) -> str:
    if oom_killed:
        return REASON_OOM_KILLED
    return REASON_COMPLETED if exit_code == 0 else REASON_ERROR


def termination_message(file_text: str, log_tail: str, *, policy: str, exit_code: int) -> str:
    """The file's text; for `FallbackToLogsOnError` the log's tail when the file is empty and it failed."""
    message = file_text
    if not message.strip() and policy == "FallbackToLogsOnError" and exit_code != 0:
        message = "\n".join(log_tail.splitlines()[-FALLBACK_LOG_LINES:])
    encoded = message.encode("utf-8", errors="replace")
    if len(encoded) > MAX_MESSAGE_BYTES:
        message = encoded[-MAX_MESSAGE_BYTES:].decode("utf-8", errors="ignore")
    return message


def _termination_dict(termination: Termination, container_id: str) -> dict[str, Any]:
    terminated: dict[str, Any] = {
        "exitCode": termination.exit_code,
        "reason": termination.reason,
        "startedAt": rfc3339(termination.started_at),
        "finishedAt": rfc3339(termination.finished_at),
    }
    if termination.message:
        terminated["message"] = termination.message
    if container_id:
        terminated["containerID"] = container_id
    return terminated


def container_status(report: ContainerReport) -> dict[str, Any]:
    state: dict[str, Any]
    if report.terminated is not None:
        state = {"terminated": _termination_dict(report.terminated, report.container_id)}
    elif report.running_since is not None:
        state = {"running": {"startedAt": rfc3339(report.running_since)}}
    else:
        waiting: dict[str, str] = {"reason": report.waiting_reason or REASON_CONTAINER_CREATING}
        if report.waiting_message:
            waiting["message"] = report.waiting_message
        state = {"waiting": waiting}
    status: dict[str, Any] = {
        "name": report.name,
        "image": report.image,
        "imageID": "",
        "ready": report.running_since is not None and report.terminated is None,
        "started": report.running_since is not None and report.terminated is None,
        "restartCount": report.restart_count,
        "state": state,
        "lastState": ({"terminated": _termination_dict(report.last_termination, "")}
                      if report.last_termination else {}),
    }
    if report.container_id:
        status["containerID"] = report.container_id
    return status


def phase_of(containers: Sequence[ContainerReport], init_containers: Sequence[ContainerReport] = ()) -> str:
    """Pod phase for restartPolicy Never/OnFailure: terminal once the (last) main container ended."""
    for init in init_containers:
        if init.terminated is not None and init.terminated.exit_code != 0:
            return "Failed"
    if containers and all(c.terminated is not None for c in containers):
        return "Succeeded" if all(c.terminated.exit_code == 0 for c in containers if c.terminated) else "Failed"
    if any(c.running_since is not None for c in containers):
        return "Running"
    return "Pending"


def _conditions(phase: str, initialized: bool, now: dt.datetime) -> list[dict[str, str]]:
    stamp = rfc3339(now)

    def condition(kind: str, value: bool, reason: str = "") -> dict[str, str]:
        item = {"type": kind, "status": "True" if value else "False", "lastTransitionTime": stamp}
        if reason:
            item["reason"] = reason
        return item

    terminal = phase in ("Succeeded", "Failed")
    running = phase == "Running"
    reason = "PodCompleted" if terminal else ("" if running else "ContainersNotReady")
    return [
        condition("PodReadyToStartContainers", not terminal),
        condition("Initialized", initialized or terminal or running, "" if initialized or terminal or running
                  else "ContainersNotInitialized"),
        condition("ContainersReady", running, reason),
        condition("Ready", running, reason),
    ]


def pod_status_patch(containers: Sequence[ContainerReport], *, ip: str, start_time: dt.datetime,
                     now: dt.datetime, init_containers: Sequence[ContainerReport] = (),
                     phase: str | None = None, reason: str = "", message: str = "") -> dict[str, Any]:
    """A strategic-merge patch for pods/status (conditions merge by type, container statuses replace)."""
    phase = phase or phase_of(containers, init_containers)
    initialized = all(init.terminated is not None and init.terminated.exit_code == 0 for init in init_containers)
    status: dict[str, Any] = {
        "phase": phase,
        "hostIP": ip,
        "hostIPs": [{"ip": ip}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": rfc3339(start_time),
        "conditions": _conditions(phase, initialized, now),
        "containerStatuses": [container_status(container) for container in containers],
    }
    if init_containers:
        status["initContainerStatuses"] = [container_status(init) for init in init_containers]
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    return {"status": status}
