"""kopf handlers: what the operator reacts to. The decisions live elsewhere.

    StemGeneration event ─▶ Lifecycle.reconcile
        Pending ──accept──▶ Queued ──(Reconciler: a slot frees)──▶ Queued+Admitted, Job created
        spec.cancel ──▶ Cancelled, Job deleted, cancelled callback
        terminal ──▶ conditions completed, owed callback re-sent
        DELETED while unfinished ──▶ cancelled callback (the Job goes with its owner)
    Job event ─▶ Lifecycle.job_changed
        a pod ready ──▶ Running (attempts)
        Job failed, runner silent ──▶ Failed(OOMKilled | DeadlineExceeded | …) + failure callback
        Job unsuspended by Kueue ──▶ Admitted
    Reconciler (one task): admission, queue positions, TTL deletion, periodic repair.

Only watch-event handlers are used (no create/update/delete handlers), so kopf keeps no
per-object state and adds no finalizers: the resource's status *is* the state, which is why a
restarted operator simply carries on. Run with `stemgen-operator` or
`kopf run -m stemgen_operator.handlers --namespace NS --standalone`; with plain `kopf run`, set
STEMGEN_OPERATOR_NAMESPACES to the same namespaces, since the reconciler lists what kopf watches.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from stemgen_api import contract as c

from .runtime import Runtime, configure_kopf
from .settings import load_settings

log = logging.getLogger(__name__)

SETTINGS_KEY = "stemgen_settings"
"""memo key under which an embedding program (tests, the CLI) passes ready-made settings."""


def _runtime(memo: Any) -> Runtime:
    return memo["stemgen_runtime"]


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    operator_settings = memo.get(SETTINGS_KEY) or load_settings()
    configure_kopf(settings, operator_settings)
    runtime = Runtime(operator_settings)
    memo["stemgen_runtime"] = runtime
    await runtime.start()


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    runtime = memo.get("stemgen_runtime")
    if runtime is not None:
        await runtime.stop()


@kopf.on.login()
def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    return _runtime(memo).connection_info()


@kopf.on.probe(id="reconciler")
def reconciler_health(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    return _runtime(memo).health()


@kopf.on.event(c.GROUP, c.VERSION, c.PLURAL)
async def stem_generation_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _runtime(memo).lifecycle.reconcile(dict(body), type)


@kopf.on.event("batch", "v1", "jobs", labels={c.LABEL_MANAGED_BY: c.MANAGED_BY, c.LABEL_NAME: kopf.PRESENT})
async def job_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _runtime(memo).lifecycle.job_changed(dict(body), type)
