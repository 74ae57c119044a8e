"""Phase and condition transitions, as pure functions from (resource, facts, now) to a status patch.

Patches are JSON merge patches for the status subresource. A merge patch replaces a list whole,
so `conditions` is always the resource's current list with the changed entries swapped in; the
caller sends the patch with the resourceVersion it read, and the API server refuses it if
anybody (the runner) wrote in between. That is what keeps the operator from ever overwriting
a terminal status the runner wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from stemgen_api import contract as c

from . import resource as r

Patch = dict[str, Any]
Condition = dict[str, Any]
ConditionChange = tuple[c.ConditionType, bool, str, str]
Step = Callable[[r.Body], "Patch"]

# Why a request is where it is (status.reason), beside contract.FailureReason for failures.
REASON_WAITING_FOR_SLOT = "WaitingForSlot"
REASON_POOL_PAUSED = "PoolPaused"
REASON_WAITING_FOR_KUEUE = "WaitingForKueue"
REASON_ADMITTED = "Admitted"
REASON_POD_RUNNING = "PodRunning"
REASON_CANCELLED = "CancelRequested"
REASON_DELETED = "Deleted"


def set_conditions(conditions: Iterable[Mapping[str, Any]] | None, changes: Iterable[ConditionChange],
                   now: datetime, generation: int | None) -> list[Condition]:
    """`conditions` with `changes` applied the Kubernetes way.

    lastTransitionTime moves only when a condition's status flips, so `kubectl wait` and
    dashboards see real transitions rather than every rewrite; observedGeneration says which
    spec the condition describes.
    """
    result = [dict(item) for item in conditions or []]
    for type_, value, reason, message in changes:
        text = "True" if value else "False"
        new: Condition = {"type": type_.value, "status": text, "reason": reason, "message": message[:32768]}
        if generation is not None:
            new["observedGeneration"] = generation
        for index, existing in enumerate(result):
            if existing.get("type") == type_.value:
                same = existing.get("status") == text and existing.get("lastTransitionTime")
                new["lastTransitionTime"] = existing["lastTransitionTime"] if same else r.rfc3339(now)
                result[index] = new
                break
        else:
            new["lastTransitionTime"] = r.rfc3339(now)
            result.append(new)
    return result


def _with_conditions(body: r.Body, patch: Patch, changes: list[ConditionChange], now: datetime) -> Patch:
    generation = r.generation(body)
    patch["conditions"] = set_conditions(r.status(body).get("conditions"), changes, now, generation)
    if generation is not None:
        patch["observedGeneration"] = generation
    return patch


def queue_message(pool: c.Pool, position: int, limit: int) -> tuple[str, str]:
    """(reason, message) of a request waiting in the operator's own queue."""
    if limit == 0:
        return REASON_POOL_PAUSED, f"the {pool.value} pool is paused (limit 0); position {position} in its queue"
    return REASON_WAITING_FOR_SLOT, (f"waiting for a free {pool.value} slot ({limit} running at once); "
                                     f"position {position} in the {pool.value} queue")


def accepted(body: r.Body, pool: c.Pool, now: datetime, kueue_queue: str | None = None) -> Patch:
    """Pending → Queued: the operator has taken the request; its spec is frozen from here on."""
    if kueue_queue:
        reason, message = REASON_WAITING_FOR_KUEUE, f"waiting for Kueue to admit it from LocalQueue {kueue_queue}"
    else:
        reason, message = REASON_WAITING_FOR_SLOT, f"waiting for a free {pool.value} slot"
    patch: Patch = {
        "phase": c.Phase.QUEUED.value,
        "reason": reason,
        "message": message,
        "requestId": r.request_id(body),
        "pool": pool.value,
        "queuedTime": r.rfc3339(now),
        "progress": {"stage": c.ProgressStage.QUEUED.value, "percent": 0},
    }
    return _with_conditions(body, patch, [
        (c.ConditionType.ADMITTED, False, reason, message),
        (c.ConditionType.READY, False, reason, message),
    ], now)


def queue_position(pool: c.Pool, position: int, limit: int) -> Patch:
    """A waiting request's place in line; conditions are left alone (nothing transitioned)."""
    reason, message = queue_message(pool, position, limit)
    return {"queuePosition": position, "reason": reason, "message": message}


def admitted(body: r.Body, job_name: str, pool: c.Pool, now: datetime, by_kueue: bool = False) -> Patch:
    """Queued, with a Job: the request holds a slot (or Kueue let its Job run)."""
    who = "Kueue admitted" if by_kueue else "admitted"
    message = f"{who}: Job {job_name} on the {pool.value} pool"
    patch: Patch = {
        "reason": REASON_ADMITTED,
        "message": message,
        "jobName": job_name,
        "pool": pool.value,
        "queuePosition": None,
        "admittedTime": r.status(body).get("admittedTime") or r.rfc3339(now),
        "progress": {"stage": c.ProgressStage.STARTING.value, "percent": 0},
    }
    return _with_conditions(body, patch, [(c.ConditionType.ADMITTED, True, REASON_ADMITTED, message)], now)


def kueue_job_created(body: r.Body, job_name: str, pool: c.Pool, queue: str, now: datetime) -> Patch:
    """The suspended Job exists; Kueue decides when it runs. Admitted stays False until then."""
    message = f"Job {job_name} created suspended in LocalQueue {queue}; waiting for Kueue to admit it"
    patch: Patch = {"reason": REASON_WAITING_FOR_KUEUE, "message": message, "jobName": job_name,
                    "pool": pool.value, "queuePosition": None}
    return _with_conditions(body, patch, [(c.ConditionType.ADMITTED, False, REASON_WAITING_FOR_KUEUE, message)], now)


def running(body: r.Body, attempts: int, started: datetime | None, now: datetime) -> Patch:
    """A runner pod is up. Only attempts change when the request is already Running."""
    patch: Patch = {"attempts": attempts}
    if r.phase(body) is c.Phase.RUNNING and r.condition_true(body, c.ConditionType.RUNNING):
        return patch
    message = f"runner pod started (attempt {attempts})"
    patch.update({"phase": c.Phase.RUNNING.value, "reason": REASON_POD_RUNNING, "message": message})
    if not r.status(body).get("startTime"):
        patch["startTime"] = r.rfc3339(started or now)
    changes: list[ConditionChange] = [(c.ConditionType.RUNNING, True, REASON_POD_RUNNING, message)]
    if not r.condition_true(body, c.ConditionType.ADMITTED):
        changes.append((c.ConditionType.ADMITTED, True, REASON_ADMITTED, "a runner pod started"))
    return _with_conditions(body, patch, changes, now)


def terminal_conditions(final: c.Phase, reason: str, message: str) -> list[ConditionChange]:
    """Every condition's value in a terminal phase, so each of them can be waited on."""
    succeeded = final is c.Phase.SUCCEEDED
    return [
        (c.ConditionType.SUCCEEDED, succeeded, reason, message),
        (c.ConditionType.FAILED, final is c.Phase.FAILED, reason, message),
        (c.ConditionType.CANCELLED, final is c.Phase.CANCELLED, reason, message),
        (c.ConditionType.RUNNING, False, final.value, message),
        (c.ConditionType.READY, succeeded, reason, message),
    ]


def finished(body: r.Body, final: c.Phase, reason: str, message: str, now: datetime) -> Patch:
    """Failed or Cancelled, decided by the operator (the runner writes its own outcomes)."""
    assert final.terminal, final
    patch: Patch = {
        "phase": final.value,
        "reason": reason,
        "message": message,
        "completionTime": r.rfc3339(now),
        "queuePosition": None,
    }
    return _with_conditions(body, patch, terminal_conditions(final, reason, message), now)


def missing_terminal_conditions(body: r.Body, now: datetime) -> Patch | None:
    """Conditions for a terminal phase a writer set without them (so `kubectl wait` still works)."""
    final = r.phase(body)
    if not final.terminal:
        return None
    wanted = c.ConditionType(final.value)
    if r.condition_true(body, wanted) and r.finished_at(body) is not None:
        return None
    reason = str(r.status(body).get("reason") or final.value)
    message = str(r.status(body).get("message") or f"request {final.value.lower()}")
    patch: Patch = {}
    if not r.status(body).get("completionTime"):
        patch["completionTime"] = r.rfc3339(now)
    if not r.condition_true(body, wanted):
        _with_conditions(body, patch, terminal_conditions(final, reason, message), now)
    return patch


def applied(body: r.Body, patch: Patch) -> dict[str, Any]:
    """`body` as it reads after a merge patch of its status (None removes a field)."""
    merged = {key: value for key, value in r.status(body).items()}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return {**body, "status": merged}


def combine(body: r.Body, *steps: Step) -> Patch:
    """Several transitions in one write (e.g. Pending → Queued → admitted when a slot is free),
    each step deciding on the body as the previous ones left it."""
    total: Patch = {}
    current: r.Body = body
    for step in steps:
        patch = step(current)
        total.update(patch)
        current = applied(current, patch)
    return total
