"""The one loop that makes cross-request decisions: admission, queue positions, TTL clean-up.

Per-request handlers run concurrently, one kopf worker per object; admission cannot, since
giving a slot to one request is taking it from another. So every decision that looks at more
than one request is made here, by a single task, from a fresh listing of the cluster:

* woken by any event that may change the picture (a request accepted, finished, deleted; a Job
  finished), with a short batching window so a burst of creations costs a few passes, not one each;
* and on a timer (`resync_seconds`), a full pass that also repairs whatever a lost watch event
  or a failed handler left behind, and the next TTL expiry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime

from stemgen_api import contract as c

from . import admission, callbacks, follow, jobs
from . import resource as r
from . import status as s
from .kube import Conflict, Gone
from .lifecycle import Context, Lifecycle

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(self, context: Context, lifecycle: Lifecycle):
        self.context = context
        self.lifecycle = lifecycle
        self._wake = asyncio.Event()
        self._last_full = float("-inf")
        self._last_positions = float("-inf")
        self.last_pass_at: float | None = None
        self.passes = 0

    def nudge(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        settings = self.context.settings
        next_due: datetime | None = None
        while True:
            timeout = max(0.0, settings.resync_seconds - (time.monotonic() - self._last_full))
            if next_due is not None:
                timeout = min(timeout, max(0.0, (next_due - self.context.clock()).total_seconds()))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
                await asyncio.sleep(settings.batch_window)  # let the rest of a burst arrive
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            full = time.monotonic() - self._last_full >= settings.resync_seconds
            started = time.monotonic()
            try:
                next_due = await self.reconcile_pass(full)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconcile pass failed; retrying shortly")
                next_due = None
                await asyncio.sleep(1.0)
                self._wake.set()
                continue
            finally:
                self.context.metrics.pass_seconds.observe(time.monotonic() - started)
            if full:
                self._last_full = started
            self.last_pass_at = time.monotonic()
            self.passes += 1

    async def reconcile_pass(self, full: bool = False) -> datetime | None:
        """One look at the cluster and everything it implies. Returns the next TTL expiry."""
        context, settings = self.context, self.context.settings
        started = time.monotonic()
        cache = context.cache
        if full or not cache.seeded:
            (listed, requests_version), (listed_jobs, jobs_version) = await asyncio.gather(
                context.io(context.cluster.list_requests, settings.namespaces),
                context.io(context.cluster.list_jobs, settings.namespaces))
            cache.requests.replace(listed, requests_version)
            cache.jobs.replace(listed_jobs, jobs_version)
            cache.seeded = True
        resources, job_list = cache.requests.values(), cache.jobs.values()
        bodies = {(r.ref(body).namespace, r.ref(body).name): body for body in resources}
        pending = [body for body in resources if r.phase(body) is c.Phase.PENDING and r.callback_url(body)]
        verdicts = await asyncio.gather(*(self.lifecycle.url_problem(body) for body in pending))
        refused = {r.ref(body) for body, problem in zip(pending, verdicts, strict=True) if problem}
        plan = admission.plan(admission.candidates(resources, job_list, settings, refused), settings.limits())

        def body_of(candidate: admission.Candidate) -> r.Body:
            return bodies[(candidate.ref.namespace, candidate.ref.name)]

        # A bounded batch per pass: under a burst the first requests get their Jobs while the
        # rest are still being read, instead of everyone waiting for one giant pass.
        cap = settings.admissions_per_pass
        admit, kueue = plan.admit[:cap], plan.kueue[:cap]
        if len(plan.admit) > cap or len(plan.kueue) > cap:
            self.nudge()
        listed = time.monotonic()
        self._report(await asyncio.gather(
            *(self._adopt(body_of(candidate), candidate) for candidate in plan.adopt),
            *(self._admit(body_of(candidate), candidate) for candidate in admit),
            *(self._admit(body_of(candidate), candidate, candidate.kueue_queue) for candidate in kueue),
            return_exceptions=True))
        admitted = time.monotonic()
        await self._write_positions(plan, bodies, settings.limits())
        if admit or kueue or plan.adopt:
            log.info("pass%s: %d requests and %d Jobs known after %.2fs; admitted %d (+%d Kueue, %d adopted) "
                     "in %.2fs; %d waiting", " (full listing)" if full else "", len(resources), len(job_list),
                     listed - started, len(admit), len(kueue), len(plan.adopt), admitted - listed,
                     sum(len(w) for w in plan.waiting.values()))

        due, next_due = admission.expired(resources, context.clock())
        self._report(await asyncio.gather(*(self._expire(bodies[(ref.namespace, ref.name)]) for ref in due),
                                          return_exceptions=True))
        await self._stop_cancelled_jobs(bodies, job_list)
        if full:
            await self._repair(resources)
        depth = {pool: len(waiting) for pool, waiting in plan.waiting.items()}
        context.metrics.observe_listing(resources, depth, plan.active)
        return next_due

    def _report(self, results: list[object]) -> None:
        """One request's failed step must not stop the others in the same pass; the next pass retries."""
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("reconcile step failed: %s: %s", type(result).__name__, result)
                self.nudge_later()

    def nudge_later(self, delay: float = 1.0) -> None:
        asyncio.get_running_loop().call_later(delay, self.nudge)

    async def _admit(self, body: r.Body, candidate: admission.Candidate, kueue_queue: str | None = None) -> None:
        """Create the Job (or find the one a previous operator made) and record the admission."""
        context = self.context
        manifest = jobs.build_job(body, candidate.pool, context.settings, queue_name=kueue_queue)
        try:
            job, created = await context.io(context.cluster.create_job, manifest)
        except Conflict:
            return  # deleted while we looked; the next pass decides again
        except Exception as error:
            log.error("cannot create Job for %s: %s", candidate.ref, error)
            await context.io(context.cluster.post_event, body, "JobCreateFailed", str(error)[:1024], True)
            return
        context.cache.jobs.observe(job)
        if not jobs.owned_by(job, body):
            log.error("Job %s exists but belongs to something else; not adopting it", candidate.job_name)
            return
        if created:
            context.metrics.jobs_created.labels(candidate.pool.value).inc()
            context.metrics.admission_latency.labels(candidate.pool.value).observe(
                max(0.0, (context.clock() - r.created_at(body)).total_seconds()))

        def decide(current: r.Body) -> s.Patch | None:
            if r.is_terminal(current) or r.cancel_requested(current) or r.being_deleted(current):
                return None
            now = context.clock()
            if kueue_queue:
                if r.status(current).get("jobName") == candidate.job_name:
                    return None
                return s.combine(current, *self._accepting(current, candidate, kueue_queue), lambda b: (
                    s.kueue_job_created(b, candidate.job_name, candidate.pool, kueue_queue, now)))
            return s.combine(current, *self._accepting(current, candidate),
                             lambda b: s.admitted(b, candidate.job_name, candidate.pool, now))

        result = await self.lifecycle.apply(body, decide)
        if result is None:
            latest = await self.lifecycle.fresh(candidate.ref)
            if latest is None or r.phase(latest) is c.Phase.CANCELLED or r.cancel_requested(latest):
                # Cancelled while its Job was being created: the Job must not run on.
                await context.io(context.cluster.delete_job, candidate.ref.namespace, candidate.job_name)

    def _accepting(self, body: r.Body, candidate: admission.Candidate,
                   kueue_queue: str | None = None) -> list[s.Step]:
        """The Pending → Queued step, when the request still needs it (folded into the same write)."""
        if r.phase(body) is not c.Phase.PENDING:
            return []
        queued_at = self.context.clock()
        return [lambda b: s.accepted(b, candidate.pool, queued_at, kueue_queue)]

    async def _adopt(self, body: r.Body, candidate: admission.Candidate) -> None:
        """A Job from before a restart whose admission never reached status: record it."""
        log.info("adopting existing Job %s for %s", candidate.job_name, candidate.ref)

        def decide(current: r.Body) -> s.Patch | None:
            if r.is_terminal(current):
                return None
            return s.combine(current, *self._accepting(current, candidate),
                             lambda b: s.admitted(b, candidate.job_name, candidate.pool, self.context.clock()))

        await self.lifecycle.apply(body, decide)

    async def _write_positions(self, plan: admission.Plan, bodies: dict[tuple[str, str], r.Body],
                               limits: dict[c.Pool, int]) -> None:
        """Tell each waiting request its place. New arrivals learn theirs at once; shifts of
        everyone else are batched (`position_refresh_seconds`), as each one is an API write."""
        refresh_all = time.monotonic() - self._last_positions >= self.context.settings.position_refresh_seconds
        writes = []
        for pool, waiting in plan.waiting.items():
            for candidate in waiting:
                position = plan.positions[candidate.ref]
                body = bodies[(candidate.ref.namespace, candidate.ref.name)]
                if not candidate.accepted:
                    writes.append(self._queue(body, candidate, position, limits.get(pool, 0)))
                    continue
                if candidate.position == position:
                    continue
                if candidate.position is not None and not refresh_all:
                    continue
                writes.append(self._write_position(body, s.queue_position(pool, position, limits.get(pool, 0))))
        if refresh_all:
            self._last_positions = time.monotonic()
        self._report(await asyncio.gather(*writes, return_exceptions=True))

    async def _queue(self, body: r.Body, candidate: admission.Candidate, position: int, limit: int) -> None:
        """Pending → Queued with its place in line, as one transition (and one Event)."""

        def decide(current: r.Body) -> s.Patch | None:
            if r.phase(current) is not c.Phase.PENDING or r.cancel_requested(current):
                return None
            return s.combine(current, *self._accepting(current, candidate),
                             lambda _: s.queue_position(candidate.pool, position, limit))

        await self.lifecycle.apply(body, decide)

    async def _write_position(self, body: r.Body, patch: s.Patch) -> None:
        try:
            await self.context.io(self.context.cluster.patch_status, body, patch)
        except Gone:
            pass
        except Conflict:  # changed meanwhile: refresh what we know, and look again
            await self.lifecycle.fresh(r.ref(body))
            self.nudge()

    async def _expire(self, body: r.Body) -> None:
        ref = r.ref(body)
        ttl = r.spec(body).get("ttlSecondsAfterFinished")
        await self.context.io(self.context.cluster.post_event, body, "Expired",
                              f"deleting: finished more than {ttl}s ago (spec.ttlSecondsAfterFinished)")
        if await self.context.io(self.context.cluster.delete_request, ref):
            log.info("deleted %s: its ttlSecondsAfterFinished (%ss) ran out", ref, ttl)

    async def _stop_cancelled_jobs(self, bodies: dict[tuple[str, str], r.Body], job_list: list[r.Body]) -> None:
        """A Job still running for a Cancelled request (its deletion failed, or raced an admission)."""
        deletions = []
        for job in job_list:
            meta = job.get("metadata") or {}
            owner = bodies.get((meta.get("namespace", ""), (meta.get("labels") or {}).get(c.LABEL_NAME, "")))
            if owner is None or r.phase(owner) is not c.Phase.CANCELLED or not jobs.owned_by(job, owner):
                continue
            if meta.get("deletionTimestamp") or follow.job_state(job) in (follow.JobState.FAILED,
                                                                          follow.JobState.SUCCEEDED):
                continue
            deletions.append(self.context.io(self.context.cluster.delete_job, meta["namespace"], meta["name"]))
        self._report(await asyncio.gather(*deletions, return_exceptions=True))

    async def _repair(self, resources: list[r.Body]) -> None:
        """What the per-request handlers should have done, redone for anything that looks stuck."""
        now = self.context.clock()
        settle = self.context.settings.resync_seconds
        work = []
        for body in resources:
            if r.being_deleted(body):
                continue
            stale_pending = r.phase(body) is c.Phase.PENDING and (now - r.created_at(body)).total_seconds() > settle
            cancel_pending = r.cancel_requested(body) and not r.is_terminal(body)
            unsettled = r.is_terminal(body) and (callbacks.owes_callback(body) or
                                                 s.missing_terminal_conditions(body, now) is not None)
            if stale_pending or cancel_pending or unsettled:
                work.append(self.lifecycle.reconcile(body, None))
        if work:
            log.info("resync: repairing %d request(s)", len(work))
        await asyncio.gather(*work, return_exceptions=True)
