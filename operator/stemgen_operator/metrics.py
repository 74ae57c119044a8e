"""Prometheus metrics of the operator.

Gauges (requests by phase, queue depth, active Jobs) are set from each reconcile pass's listing
rather than counted up and down by handlers, so they are right after a restart and can never
drift. A registry of its own keeps several in-process operators (tests) from clashing.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from stemgen_api import contract as c

from . import resource as r

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)
RUN_BUCKETS = (5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.requests = Gauge("stemgen_requests", "StemGenerations by phase.", ["phase"], registry=self.registry)
        self.queue_depth = Gauge("stemgen_queue_depth", "Requests waiting for a slot, per pool.", ["pool"],
                                 registry=self.registry)
        self.active = Gauge("stemgen_active_jobs", "Requests holding a slot, per pool.", ["pool"],
                            registry=self.registry)
        self.admission_latency = Histogram(
            "stemgen_admission_latency_seconds", "From creation to the Job being created.", ["pool"],
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.run_duration = Histogram("stemgen_run_duration_seconds", "From admission to a terminal phase.",
                                      ["phase"], buckets=RUN_BUCKETS, registry=self.registry)
        self.jobs_created = Counter("stemgen_jobs_created", "Runner Jobs created.", ["pool"], registry=self.registry)
        self.transitions = Counter("stemgen_transitions", "Phase transitions made by the operator.", ["phase"],
                                   registry=self.registry)
        self.callback_failures = Counter("stemgen_callback_failures",
                                         "Operator-sent callbacks that were not delivered.", ["event_type"],
                                         registry=self.registry)
        self.pass_seconds = Histogram("stemgen_reconcile_pass_seconds", "Duration of one reconcile pass.",
                                      buckets=LATENCY_BUCKETS, registry=self.registry)

    def observe_listing(self, resources: Iterable[r.Body], depth: Mapping[c.Pool, int],
                        active: Mapping[c.Pool, int]) -> None:
        counts = Tally(r.phase(body).value for body in resources)
        for phase in c.Phase:
            self.requests.labels(phase.value).set(counts.get(phase.value, 0))
        for pool in c.Pool:
            self.queue_depth.labels(pool.value).set(depth.get(pool, 0))
            self.active.labels(pool.value).set(active.get(pool, 0))

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        start_http_server(port, addr=address, registry=self.registry)
