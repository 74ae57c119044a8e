"""Admission: pools, limits, priority, FIFO, restarts (state from listings), Kueue, TTL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from stemgen_api import contract as c
from stemgen_operator import admission, jobs
from stemgen_operator import status as s
from stemgen_operator.resource import ref as r_ref
from stemgen_operator.settings import OperatorSettings, PoolSettings
from stemgen_operator.testing import request_body

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def settings(gpu: int | None = 2, cpu: int = 2, **extra) -> OperatorSettings:
    return OperatorSettings(gpu_pool=PoolSettings(limit=gpu) if gpu is not None else None,
                            cpu_pool=PoolSettings(limit=cpu), metrics_port=0, liveness_port=0, **extra)


def queued(name: str, minute: int, pool: c.Pool = c.Pool.GPU, priority: int = 0, **spec) -> dict:
    body = request_body(name=name, uid=f"uid-{name}", priority=priority, **spec)
    body["status"] = s.accepted(body, pool, T0 + timedelta(minutes=minute))
    return body


def admitted(name: str, minute: int, pool: c.Pool = c.Pool.GPU) -> dict:
    body = queued(name, minute, pool)
    body["status"].update(s.admitted(body, jobs.job_name(name, f"uid-{name}"), pool, T0))
    return body


def job_for(body: dict, pool: c.Pool = c.Pool.GPU) -> dict:
    return jobs.build_job(body, pool, settings())


def names(candidates) -> list[str]:
    return [candidate.ref.name for candidate in candidates]


def test_choose_pool():
    with_gpu, without_gpu = settings(), settings(gpu=None)
    assert admission.choose_pool(c.Device.GPU, with_gpu) is c.Pool.GPU
    assert admission.choose_pool(c.Device.AUTO, with_gpu) is c.Pool.GPU
    assert admission.choose_pool(c.Device.CPU, with_gpu) is c.Pool.CPU
    assert admission.choose_pool(c.Device.AUTO, without_gpu) is c.Pool.CPU
    assert admission.choose_pool(c.Device.GPU, without_gpu) is None


def test_limit_two_with_five_requests_admits_two_and_numbers_the_rest():
    resources = [queued(f"r{i}", minute=i) for i in range(5)]
    plan = admission.plan(admission.candidates(resources, [], settings()), settings().limits())
    assert names(plan.admit) == ["r0", "r1"]
    assert [plan.positions[candidate.ref] for candidate in plan.waiting[c.Pool.GPU]] == [1, 2, 3]
    assert names(plan.waiting[c.Pool.GPU]) == ["r2", "r3", "r4"]


def test_slots_held_by_admitted_requests_and_by_jobs_status_does_not_know_yet():
    first = admitted("a", 0)
    second = queued("b", 1)  # the operator created its Job, then stopped before writing status
    rest = [queued("c", 2), queued("d", 3)]
    plan = admission.plan(admission.candidates([first, second, *rest], [job_for(second)], settings()),
                          settings().limits())
    assert plan.admit == []
    assert names(plan.adopt) == ["b"], "a Job from before a restart is adopted, not duplicated"
    assert plan.active[c.Pool.GPU] == 2
    assert names(plan.waiting[c.Pool.GPU]) == ["c", "d"]


def test_finished_cancelled_refused_and_deleting_requests_hold_nothing():
    done = admitted("done", 0)
    done["status"]["phase"] = "Succeeded"
    cancelling = admitted("cancel", 0, )
    cancelling["spec"]["cancel"] = True
    refused = request_body(name="refused", uid="uid-refused", callback={"url": "http://127.0.0.1/"})
    deleting = admitted("deleting", 0)
    deleting["metadata"]["deletionTimestamp"] = "2026-03-01T12:00:00Z"
    waiting = queued("w", 5)
    resources = [done, cancelling, refused, deleting, waiting]
    plan = admission.plan(admission.candidates(resources, [], settings(), refused=[r_ref(refused)]),
                          settings().limits())
    assert names(plan.admit) == ["w"]


def test_a_succeeded_request_keeps_its_slot_until_its_job_finishes():
    """The runner writes Succeeded, then sends its callback: its pod still holds the GPU meanwhile."""
    done = admitted("done", 0)
    done["status"]["phase"] = "Succeeded"
    job = job_for(done)
    job["status"] = {"active": 1}
    waiting = [queued("w1", 5), queued("w2", 6)]
    limits = settings(gpu=1).limits()
    plan = admission.plan(admission.candidates([done, *waiting], [job], settings(gpu=1)), limits)
    assert plan.admit == [] and plan.adopt == []
    assert names(plan.waiting[c.Pool.GPU]) == ["w1", "w2"]

    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}
    plan = admission.plan(admission.candidates([done, *waiting], [job], settings(gpu=1)), limits)
    assert names(plan.admit) == ["w1"]


def test_a_cancelled_request_releases_its_slot_while_its_job_is_deleted():
    cancelled = admitted("cancelled", 0)
    cancelled["status"]["phase"] = "Cancelled"
    job = job_for(cancelled)
    job["status"] = {"active": 1}
    plan = admission.plan(admission.candidates([cancelled, queued("w", 5)], [job], settings(gpu=1)),
                          settings(gpu=1).limits())
    assert names(plan.admit) == ["w"]


def test_pending_requests_join_the_queue_in_creation_order():
    early = request_body(name="early", uid="e", created="2026-03-01T11:00:00Z")
    late = request_body(name="late", uid="l", created="2026-03-01T13:00:00Z")
    no_pool = request_body(name="no-gpu", uid="n", device="gpu")
    config = settings(gpu=None, cpu=1)
    found = admission.candidates([late, no_pool, early, queued("q", 0, c.Pool.CPU)], [], config)
    assert {candidate.ref.name: candidate.accepted for candidate in found} == {"late": False, "early": False,
                                                                                "q": True}
    plan = admission.plan(found, config.limits())
    assert names(plan.admit) == ["early"], "created before q was queued (11:00 < 12:00)"
    assert names(plan.waiting[c.Pool.CPU]) == ["q", "late"]


def test_priority_first_then_fifo():
    resources = [queued("old-low", 0, priority=0), queued("new-high", 9, priority=10),
                 queued("mid-high", 5, priority=10), queued("older-low", -1, priority=0)]
    plan = admission.plan(admission.candidates(resources, [], settings(gpu=1)), settings(gpu=1).limits())
    assert names(plan.admit) == ["mid-high"]
    assert names(plan.waiting[c.Pool.GPU]) == ["new-high", "older-low", "old-low"]


def test_pools_are_independent_and_zero_pauses():
    resources = [queued("g", 0, c.Pool.GPU), queued("c1", 0, c.Pool.CPU), queued("c2", 1, c.Pool.CPU)]
    plan = admission.plan(admission.candidates(resources, [], settings(gpu=0, cpu=1)), settings(gpu=0, cpu=1).limits())
    assert names(plan.admit) == ["c1"]
    assert names(plan.waiting[c.Pool.GPU]) == ["g"]


def test_kueue_requests_bypass_limits_and_get_one_suspended_job():
    plain = admitted("plain", 0)
    kueue = [queued(f"k{i}", i, queueName="team") for i in range(3)]
    candidates = admission.candidates([plain, *kueue], [job_for(kueue[0])], settings(gpu=1))
    plan = admission.plan(candidates, settings(gpu=1).limits())
    assert names(plan.kueue) == ["k1", "k2"], "k0 already has its Job"
    assert plan.admit == [] and plan.active[c.Pool.GPU] == 1
    default = admission.candidates([queued("x", 0)], [], settings(kueue_default_queue="all"))
    assert default[0].kueue_queue == "all"


@given(st.lists(st.tuples(st.integers(-3, 3), st.integers(0, 100), st.booleans()), max_size=30),
       st.integers(0, 5))
def test_never_more_than_the_limit(entries, limit):
    resources = []
    for index, (priority, minute, holds) in enumerate(entries):
        body = admitted(f"r{index}", minute) if holds else queued(f"r{index}", minute, priority=priority)
        resources.append(body)
    config = settings(gpu=limit)
    plan = admission.plan(admission.candidates(resources, [], config), config.limits())
    holding = sum(1 for _, _, holds in entries if holds)
    assert len(plan.admit) == max(0, min(limit - holding, len(entries) - holding))
    assert holding + len(plan.admit) <= max(limit, holding)
    positions = [plan.positions[candidate.ref] for candidate in plan.waiting[c.Pool.GPU]]
    assert positions == list(range(1, len(positions) + 1))


def test_expired_after_ttl_and_next_due():
    def finished(name: str, ttl: int | None, minute: int) -> dict:
        body = request_body(name=name, uid=name, **({"ttlSecondsAfterFinished": ttl} if ttl is not None else {}))
        body["status"] = s.finished(body, c.Phase.SUCCEEDED, "Done", "", T0 + timedelta(minutes=minute))
        return body

    resources = [finished("gone", 60, 0), finished("soon", 600, 0), finished("keep", None, 0),
                 queued("live", 0, ttlSecondsAfterFinished=0)]
    due, next_due = admission.expired(resources, T0 + timedelta(minutes=2))
    assert [ref.name for ref in due] == ["gone"]
    assert next_due == T0 + timedelta(minutes=10)
