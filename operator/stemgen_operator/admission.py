"""Who runs next: per-pool queues with concurrency limits, highest priority first, FIFO among equals.

The queue is never kept only in memory. Each pass rebuilds it from what the cluster says (the
resources' status and the Jobs that exist), so a restarted operator admits exactly what the old
one would have, and a Job created just before a crash still holds its slot.
All of this is pure: `candidates()` turns listed objects into facts, `plan()` decides.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from stemgen_api import contract as c

from . import follow, jobs
from . import resource as r
from .settings import OperatorSettings


def choose_pool(device: c.Device, settings: OperatorSettings) -> c.Pool | None:
    """gpu → GPU pool, cpu → CPU pool, auto → GPU when one is configured. None: no such pool."""
    has_gpu = settings.gpu_pool is not None
    if device is c.Device.GPU:
        return c.Pool.GPU if has_gpu else None
    if device is c.Device.CPU:
        return c.Pool.CPU
    return c.Pool.GPU if has_gpu else c.Pool.CPU


def kueue_queue(body: r.Body, settings: OperatorSettings) -> str | None:
    """The LocalQueue that admits this request, if admission is Kueue's (spec wins over settings)."""
    return r.spec(body).get("queueName") or settings.kueue_default_queue or None


@dataclass(frozen=True)
class Candidate:
    """One live request that needs or holds a slot, as far as admission cares."""

    ref: r.Ref
    pool: c.Pool
    priority: int
    queued_at: datetime
    job_name: str
    has_job: bool
    """A Job made for this very resource exists (it may predate the status that says so)."""
    recorded_admitted: bool
    """status already says admitted (jobName + Admitted condition, or Running)."""
    kueue_queue: str | None = None
    position: int | None = None
    accepted: bool = True
    """False for a Pending request: its first write both queues it and, if a slot is free, admits it."""

    @property
    def holds_slot(self) -> bool:
        return self.kueue_queue is None and (self.has_job or self.recorded_admitted)

    def order(self) -> tuple[int, datetime, str, str]:
        return (-self.priority, self.queued_at, self.ref.namespace, self.ref.name)


def candidates(resources: Iterable[r.Body], job_list: Iterable[r.Body], settings: OperatorSettings,
               refused: Collection[r.Ref] = ()) -> list[Candidate]:
    """Live requests that need or hold a slot; finished, cancelled and refused ones hold nothing.

    `refused`: Pending requests whose callback URL the policy refuses (checking resolves DNS, so
    the caller does it off the event loop); the lifecycle fails those with the reason.
    """
    existing: dict[tuple[str, str], Mapping] = {}
    for job in job_list:
        meta = job.get("metadata") or {}
        existing[(meta.get("namespace", ""), meta.get("name", ""))] = job
    result = []
    for body in resources:
        current = r.phase(body)
        if r.being_deleted(body):
            continue
        if current.terminal:
            lingering = _lingering_job(body, existing, settings)
            if lingering is not None:
                result.append(lingering)
            continue
        if r.cancel_requested(body):
            continue  # the cancel path owns it now; its slot is released right away
        ref = r.ref(body)
        if current is c.Phase.PENDING and ref in refused:
            continue
        status = r.status(body)
        pool_value = status.get("pool")
        pool = c.Pool(pool_value) if pool_value in {p.value for p in c.Pool} else choose_pool(r.device(body), settings)
        if pool is None:
            continue
        name = jobs.job_name(ref.name, ref.uid)
        job = existing.get((ref.namespace, name))
        recorded = current is c.Phase.RUNNING or (
            status.get("jobName") == name and r.condition_true(body, c.ConditionType.ADMITTED))
        result.append(Candidate(
            ref=ref, pool=pool, priority=r.priority(body), queued_at=r.queued_at(body), job_name=name,
            has_job=job is not None and jobs.owned_by(job, body), recorded_admitted=recorded,
            kueue_queue=kueue_queue(body, settings), position=status.get("queuePosition"),
            accepted=current is not c.Phase.PENDING))
    return result


def _lingering_job(body: r.Body, existing: Mapping[tuple[str, str], Mapping],
                   settings: OperatorSettings) -> Candidate | None:
    """A finished request whose runner is still at work (sending its callback) keeps its slot.

    The runner writes Succeeded before it sends the callback, which may take minutes of retries;
    until its Job finishes the pod still holds the node (and the GPU), so the next request must wait.
    A cancelled request's Job is being deleted: its slot is released at once.
    """
    if r.phase(body) is c.Phase.CANCELLED:
        return None
    ref = r.ref(body)
    name = jobs.job_name(ref.name, ref.uid)
    job = existing.get((ref.namespace, name))
    if job is None or not jobs.owned_by(job, body) or (job.get("metadata") or {}).get("deletionTimestamp"):
        return None
    if follow.job_state(job) in (follow.JobState.SUCCEEDED, follow.JobState.FAILED):
        return None
    pool_value = r.status(body).get("pool")
    if pool_value not in {p.value for p in c.Pool} or kueue_queue(body, settings) is not None:
        return None
    return Candidate(ref=ref, pool=c.Pool(pool_value), priority=r.priority(body), queued_at=r.queued_at(body),
                     job_name=name, has_job=True, recorded_admitted=True)


@dataclass
class Plan:
    admit: list[Candidate] = field(default_factory=list)
    """Create (or adopt) their Job now and mark them admitted, in this order."""
    adopt: list[Candidate] = field(default_factory=list)
    """Their Job exists but status does not say so (the operator stopped in between): record it."""
    kueue: list[Candidate] = field(default_factory=list)
    """Kueue-managed requests whose suspended Job is still to be created."""
    positions: dict[r.Ref, int] = field(default_factory=dict)
    """1-based place in its pool's queue for every request left waiting."""
    waiting: dict[c.Pool, list[Candidate]] = field(default_factory=dict)
    active: dict[c.Pool, int] = field(default_factory=dict)


def plan(pending: Iterable[Candidate], limits: Mapping[c.Pool, int]) -> Plan:
    """Fill each pool's free slots from the head of its queue.

    A pool missing from `limits` (a GPU request on a cluster whose GPU pool was removed from
    the settings) admits nothing: its requests wait, visibly, rather than land on the wrong nodes.
    """
    result = Plan()
    by_pool: dict[c.Pool, list[Candidate]] = {pool: [] for pool in c.Pool}
    for candidate in pending:
        if candidate.kueue_queue is not None:
            if not candidate.has_job or not candidate.accepted:
                result.kueue.append(candidate)
            continue
        if candidate.holds_slot:
            result.active[candidate.pool] = result.active.get(candidate.pool, 0) + 1
            if candidate.has_job and not candidate.recorded_admitted:
                result.adopt.append(candidate)
            continue
        by_pool[candidate.pool].append(candidate)
    for pool, queue in by_pool.items():
        queue.sort(key=Candidate.order)
        free = max(0, limits.get(pool, 0) - result.active.get(pool, 0))
        result.admit.extend(queue[:free])
        rest = queue[free:]
        result.waiting[pool] = rest
        result.active.setdefault(pool, 0)
        for index, candidate in enumerate(rest):
            result.positions[candidate.ref] = index + 1
    result.kueue.sort(key=Candidate.order)
    return result


def expired(resources: Iterable[r.Body], now: datetime) -> tuple[list[r.Ref], datetime | None]:
    """Finished requests whose own ttlSecondsAfterFinished has run out, and when the next one will."""
    due_now: list[r.Ref] = []
    next_due: datetime | None = None
    for body in resources:
        ttl = r.spec(body).get("ttlSecondsAfterFinished")
        if ttl is None or not r.is_terminal(body) or r.being_deleted(body):
            continue
        finished = r.finished_at(body)
        if finished is None:
            continue
        due = finished + timedelta(seconds=int(ttl))
        if due <= now:
            due_now.append(r.ref(body))
        elif next_due is None or due < next_due:
            next_due = due
    return due_now, next_due
