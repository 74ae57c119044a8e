"""One request's transitions, with their side effects: status writes, Events, callbacks, Jobs.

Every transition is read → decide → write-if-unchanged: the decision is a pure function of the
freshest body (`status` builds the patch), the write carries the resourceVersion it was decided
on, and a Conflict means somebody else (usually the runner) wrote first, so we re-read and decide
again. Deciding on a terminal body always yields "nothing to do", which is how a terminal status
the runner wrote is never overwritten, whichever watch event arrives late.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from stemgen_api import contract as c

from . import admission, callbacks, follow, jobs
from . import resource as r
from . import status as s
from .cache import ClusterCache
from .kube import Cluster, Conflict, Gone
from .metrics import Metrics
from .settings import OperatorSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
Decide = Callable[[r.Body], "s.Patch | None"]
MAX_CONFLICTS = 8


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Context:
    """What every part of the running operator shares."""

    settings: OperatorSettings
    cluster: Cluster
    metrics: Metrics
    executor: ThreadPoolExecutor
    cache: ClusterCache = field(default_factory=ClusterCache)
    clock: Callable[[], datetime] = utcnow
    nudge: Callable[[], None] = field(default=lambda: None)
    """Wakes the reconciler: something happened that may free or need a slot."""

    async def io(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))


def _logger(body: r.Body) -> logging.LoggerAdapter:
    """Every line about a request names it: `k8s_ref` is what kopf's formatters prefix (text) or
    nest (JSON) for its own per-object lines, so ours read the same; request_id joins the caller's logs."""
    ref = r.ref(body)
    return logging.LoggerAdapter(log, {"k8s_ref": {"namespace": ref.namespace, "name": ref.name},
                                       "request_id": r.request_id(body)})


class Lifecycle:
    def __init__(self, context: Context):
        self.context = context
        self._sending: set[str] = set()
        self._url_verdicts: dict[tuple[str, str], str | None] = {}
        self._observed: set[str] = set()
        self._started_at = context.clock() - timedelta(seconds=1)  # completionTime has 1 s resolution
        self._tasks: set[asyncio.Task] = set()

    # Plumbing ---------------------------------------------------------------------------------

    @property
    def settings(self) -> OperatorSettings:
        return self.context.settings

    async def fresh(self, ref: r.Ref) -> r.Body | None:
        """The live object, or None when it is gone or is a newer namesake (uid differs)."""
        body = await self.context.io(self.context.cluster.get_request, ref.namespace, ref.name)
        if body is None or (ref.uid and r.ref(body).uid != ref.uid):
            return None
        self.context.cache.requests.observe(body)
        return body

    async def apply(self, body: r.Body, decide: Decide) -> tuple[r.Body, s.Patch] | None:
        """Read-decide-write until the write lands on the version it was decided on."""
        ref = r.ref(body)
        for _ in range(MAX_CONFLICTS):
            patch = decide(body)
            if not patch:
                return None
            try:
                updated = await self.context.io(self.context.cluster.patch_status, body, patch)
            except Gone:
                return None
            except Conflict:
                latest = await self.fresh(ref)
                if latest is None:
                    return None
                body = latest
                continue
            self.context.cache.requests.observe(updated)
            await self._after(updated, patch)
            return updated, patch
        _logger(body).warning("gave up a status transition after %d conflicts", MAX_CONFLICTS)
        return None

    async def _after(self, body: r.Body, patch: s.Patch) -> None:
        """Events, metrics and callbacks that follow a transition that actually happened."""
        new_phase = patch.get("phase")
        logger = _logger(body)
        message = str(patch.get("message") or "")
        if patch.get("reason") == s.REASON_ADMITTED:
            logger.info("%s", message)
            self.event(body, "Admitted", message)
        elif new_phase:
            phase = c.Phase(new_phase)
            reason = str(patch.get("reason") or phase.value)
            logger.info("%s: %s (%s)", phase.value, message, reason)
            self.event(body, reason if phase is c.Phase.FAILED else phase.value, message,
                       warning=phase is c.Phase.FAILED)
        if new_phase:
            phase = c.Phase(new_phase)
            self.context.metrics.transitions.labels(phase.value).inc()
            if phase.terminal:
                self._observe_run(body, phase)
        if (patch.get("callback") or {}).get("state") == c.CallbackState.PENDING.value:
            self.spawn(self.send_callback(body))

    def event(self, body: r.Body, reason: str, message: str, warning: bool = False) -> None:
        """Post a Kubernetes Event in the background: it is for people, and must not slow the
        transition it describes (under a burst, each write costs the API server dearly)."""
        self.spawn(self.context.io(self.context.cluster.post_event, body, reason, message, warning))

    def _observe_run(self, body: r.Body, phase: c.Phase) -> None:
        """Run duration, once per request, whoever ended it (the runner, mostly). Requests that
        finished before this operator started were counted by its predecessor."""
        uid = r.ref(body).uid
        started = r.parse_time(r.status(body).get("admittedTime"))
        finished = r.finished_at(body)
        if uid in self._observed or not started or not finished or finished < self._started_at:
            return
        self._observed.add(uid)
        self.context.metrics.run_duration.labels(phase.value).observe(max(0.0, (finished - started).total_seconds()))

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float) -> None:
        """Let in-flight callbacks finish at shutdown; unfinished ones stay Pending in status
        and the next operator sends them."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    # The state machine ---------------------------------------------------------------------------

    async def reconcile(self, body: r.Body, event_type: str | None) -> None:
        """Entry point for every watch event of a StemGeneration."""
        self.context.cache.requests.observe(body, deleted=event_type == "DELETED")
        try:
            if event_type == "DELETED":
                await self.deleted(body)
            elif r.being_deleted(body):
                pass
            elif r.phase(body) is c.Phase.PENDING:
                if r.cancel_requested(body):
                    await self.finish(body, c.Phase.CANCELLED, s.REASON_CANCELLED, "cancelled before it was queued")
                elif (admission.choose_pool(r.device(body), self.settings) is None
                      or await self.url_problem(body) is not None):
                    await self.accept(body)
                # else: the reconciler queues it, and admits it in the same write when a slot is free
            elif not r.is_terminal(body):
                if r.cancel_requested(body):
                    await self.cancel(body)
            else:
                await self.settle(body)
        finally:
            self.context.nudge()

    async def url_problem(self, body: r.Body) -> str | None:
        """Why the callback URL is refused (None: it is fine). Resolving a host blocks, so not on
        the event loop; the spec is frozen once queued, so the answer is cached per uid and URL."""
        url = r.callback_url(body)
        if not url:
            return None
        key = (r.ref(body).uid, url)
        if key not in self._url_verdicts:
            self._url_verdicts[key] = await self.context.io(callbacks.refusal, body, self.settings)
        return self._url_verdicts[key]

    async def accept(self, body: r.Body) -> None:
        """Pending → Failed when the request cannot be served here; Pending → Queued otherwise
        (a fallback: the reconciler normally queues and admits in one write)."""
        problem = await self.url_problem(body)

        def decide(current: r.Body) -> s.Patch | None:
            if r.phase(current) is not c.Phase.PENDING:
                return None
            now = self.context.clock()
            if problem:
                patch = s.finished(current, c.Phase.FAILED, c.FailureReason.CALLBACK_REFUSED.value, problem, now)
                patch["callback"] = {"state": c.CallbackState.SKIPPED.value, "attempts": 0,
                                     "sentBy": callbacks.SENT_BY, "lastError": problem}
                return patch
            pool = admission.choose_pool(r.device(current), self.settings)
            if pool is None:
                message = (f"spec.device is {r.device(current).value!r} but this cluster has no "
                           f"{r.device(current).value} pool configured")
                return self._finished_with_callback(current, c.Phase.FAILED, c.FailureReason.POOL_UNAVAILABLE.value,
                                                    message, now, callback_allowed=True)
            return s.accepted(current, pool, now, admission.kueue_queue(current, self.settings))

        await self.apply(body, decide)

    def _finished_with_callback(self, body: r.Body, final: c.Phase, reason: str, message: str,
                                now: datetime, callback_allowed: bool) -> s.Patch:
        patch = s.finished(body, final, reason, message, now)
        if r.callback_url(body) and callback_allowed:
            patch["callback"] = callbacks.pending_status(body, final)
        return patch

    async def finish(self, body: r.Body, final: c.Phase, reason: str, message: str) -> bool:
        """Failed or Cancelled, unless the request already ended (the runner's word stands)."""
        allowed = await self.url_problem(body) is None

        def decide(current: r.Body) -> s.Patch | None:
            if r.is_terminal(current):
                return None
            return self._finished_with_callback(current, final, reason, message, self.context.clock(), allowed)

        return await self.apply(body, decide) is not None

    async def cancel(self, body: r.Body) -> None:
        """spec.cancel: Cancelled first, then the Job goes (Background: the GC removes its pods).

        In that order, a runner still writing cannot turn Cancelled into Running, and a Job
        deletion failing midway is retried by the reconciler's clean-up of cancelled requests.
        """
        won = await self.finish(body, c.Phase.CANCELLED, s.REASON_CANCELLED, "cancelled: spec.cancel was set")
        if won:
            ref = r.ref(body)
            name = r.status(body).get("jobName") or jobs.job_name(ref.name, ref.uid)
            if await self.context.io(self.context.cluster.delete_job, ref.namespace, name):
                _logger(body).info("deleted Job %s", name)

    async def settle(self, body: r.Body) -> None:
        """A terminal request: make its conditions complete, and keep any callback promise."""
        self._observe_run(body, r.phase(body))
        await self.apply(body, lambda current: s.missing_terminal_conditions(current, self.context.clock()))
        if callbacks.owes_callback(body):
            self.spawn(self.send_callback(body))

    async def deleted(self, body: r.Body) -> None:
        """Gone while unfinished: tell the caller it was cancelled (the Job goes with its owner)."""
        self._url_verdicts.pop((r.ref(body).uid, r.callback_url(body) or ""), None)
        self._observed.discard(r.ref(body).uid)
        if r.is_terminal(body) or not r.callback_url(body):
            return
        message = "the StemGeneration was deleted before it finished"
        gone = dict(body)
        gone["status"] = {**r.status(body), **s.finished(body, c.Phase.CANCELLED, s.REASON_DELETED, message,
                                                           self.context.clock())}
        _logger(body).info("deleted while %s; sending the cancelled callback", r.phase(body).value)
        self.spawn(self.send_callback(gone, record=False))

    async def send_callback(self, body: r.Body, record: bool = True) -> None:
        uid = r.ref(body).uid
        if uid in self._sending:
            return
        self._sending.add(uid)
        logger = _logger(body)
        cluster = self.context.cluster
        if record:
            # The body may be a stale watch event or cache entry from before our last delivery was
            # recorded: only the live object says whether the callback is still owed.
            ref = r.ref(body)
            try:
                live = await self.context.io(cluster.get_request, ref.namespace, ref.name)
            except Exception as error:
                logger.warning("could not re-read before sending the callback: %s", error)
                self._sending.discard(uid)
                return
            if live is None or r.ref(live).uid != uid or not callbacks.owes_callback(live):
                self._sending.discard(uid)
                return
            body = live

        def write(callback_status: dict[str, Any]) -> None:
            if not record:
                return
            try:
                cluster.patch_status(body, {"callback": callback_status}, guarded=False)
            except Gone:
                pass  # deleted meanwhile: the delivery goes on, there is just nowhere to record it
            except Exception as error:  # the delivery matters more than its bookkeeping
                logger.warning("could not record callback status: %s", error)

        try:
            outcome = await self.context.io(callbacks.send, cluster, body, self.settings, write)
            if outcome is None:
                return
            event_type = str(outcome.status.get("eventType"))
            if outcome.delivered:
                logger.info("callback %s delivered", event_type)
                if record:
                    self.event(body, "CallbackDelivered", f"{event_type} delivered")
            else:
                self.context.metrics.callback_failures.labels(event_type).inc()
                logger.warning("callback %s not delivered: %s", event_type, outcome.status.get("lastError"))
                if record:
                    self.event(body, "CallbackFailed", f"{event_type}: {outcome.status.get('lastError')}", True)
        except Exception:
            logger.exception("callback delivery crashed")
        finally:
            self._sending.discard(uid)

    # Following the Job --------------------------------------------------------------------------

    async def job_changed(self, job: r.Body, event_type: str | None) -> None:
        """Entry point for every watch event of a runner Job."""
        self.context.cache.jobs.observe(job, deleted=event_type == "DELETED")
        meta = job.get("metadata") or {}
        labels = meta.get("labels") or {}
        name = labels.get(c.LABEL_NAME)
        if not name:
            return
        ref = r.Ref(meta.get("namespace", ""), name, (meta.get("annotations") or {}).get(c.ANNOTATION_UID, ""))
        try:
            if event_type == "DELETED":
                await self._job_deleted(ref, meta.get("name", ""))
                return
            state = follow.job_state(job)
            if state in (follow.JobState.FAILED, follow.JobState.SUCCEEDED):
                await self._job_finished(ref, job, state)
            elif state is follow.JobState.ACTIVE:
                await self._job_active(ref, job)
        finally:
            if event_type == "DELETED" or follow.job_state(job) in (follow.JobState.FAILED, follow.JobState.SUCCEEDED):
                self.context.nudge()

    def _known_finished(self, ref: r.Ref) -> bool:
        """Terminal phases never change, so a cached terminal request needs no fresh read: this
        spares one GET per finished Job when a restarted operator's watch lists them all again."""
        cached = self.context.cache.requests.items.get((ref.namespace, ref.name))
        return bool(cached) and r.ref(cached).uid == ref.uid and r.is_terminal(cached)

    async def _job_deleted(self, ref: r.Ref, job_name: str) -> None:
        if self._known_finished(ref):
            return
        body = await self.fresh(ref)
        if body is None or r.is_terminal(body) or r.being_deleted(body) or r.cancel_requested(body):
            return
        await self.finish(body, c.Phase.FAILED, c.FailureReason.JOB_DELETED.value,
                          f"Job {job_name} was deleted before the request finished")

    async def _job_finished(self, ref: r.Ref, job: r.Body, state: follow.JobState) -> None:
        if self._known_finished(ref):
            return
        body = await self.fresh(ref)
        if body is None or r.is_terminal(body):
            return  # the runner reported; its status stands
        job_name = (job.get("metadata") or {}).get("name", "")
        if state is follow.JobState.FAILED:
            pods = await self.context.io(self.context.cluster.list_pods, ref.namespace, job_name)
            reason, message = follow.classify(job, pods)
            await self.finish(body, c.Phase.FAILED, reason.value, message)
        else:
            await self.finish(body, c.Phase.FAILED, c.FailureReason.INTERNAL.value,
                              f"Job {job_name} completed but the runner wrote no result to status")

    async def _job_active(self, ref: r.Ref, job: r.Body) -> None:
        job_status = job.get("status") or {}
        ready = int(job_status.get("ready") or 0)
        attempts = int(job_status.get("failed") or 0) + int(job_status.get("succeeded") or 0) + ready
        kueue_queue = ((job.get("metadata") or {}).get("labels") or {}).get(c.KUEUE_QUEUE_LABEL)
        if not ready and not kueue_queue:
            return
        body = await self.fresh(ref)
        if body is None or r.is_terminal(body):
            return
        job_name = (job.get("metadata") or {}).get("name", "")
        started = r.parse_time(job_status.get("startTime"))

        def decide(current: r.Body) -> s.Patch | None:
            if r.is_terminal(current):
                return None
            now = self.context.clock()
            if ready:
                if r.phase(current) is c.Phase.RUNNING and r.status(current).get("attempts") == attempts \
                        and r.condition_true(current, c.ConditionType.RUNNING):
                    return None
                return s.running(current, attempts, started, now)
            if not r.condition_true(current, c.ConditionType.ADMITTED):
                pool = c.Pool(r.status(current).get("pool") or c.Pool.CPU.value)
                return s.admitted(current, job_name, pool, now, by_kueue=True)
            return None

        await self.apply(body, decide)
