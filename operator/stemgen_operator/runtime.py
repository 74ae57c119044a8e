"""The running operator's parts, put together at startup and taken apart at cleanup.

Kept out of `handlers` so the handlers stay a readable list of "on this, do that", and so tests
and the benchmark can build the same runtime the kopf startup handler builds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from .kube import Cluster, load_configuration
from .lifecycle import Context, Lifecycle
from .metrics import Metrics
from .reconciler import Reconciler
from .settings import OperatorSettings

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 10.0


def configure_kopf(kopf_settings: kopf.OperatorSettings, settings: OperatorSettings) -> None:
    """kopf's knobs, set explicitly: a watch that silently stalls is kopf's best-known failure
    mode, so the server-side and client-side watch timeouts are always finite."""
    kopf_settings.watching.server_timeout = settings.watch_server_timeout
    kopf_settings.watching.client_timeout = settings.watch_client_timeout
    kopf_settings.watching.connect_timeout = settings.connect_timeout
    kopf_settings.networking.request_timeout = settings.request_timeout
    kopf_settings.networking.connect_timeout = settings.connect_timeout
    kopf_settings.batching.batch_window = settings.batch_window
    kopf_settings.execution.max_workers = settings.api_workers
    # Our own Events record every transition; kopf's would only repeat handler errors at INFO.
    kopf_settings.posting.level = logging.WARNING
    # The handlers keep no state in the objects (the status is the state), but should kopf ever
    # need to, it goes to our annotations, never to a status.kopf field the schema would prune.
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="operator.stemgen.io")
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="operator.stemgen.io")
    kopf_settings.persistence.finalizer = "operator.stemgen.io/finalizer"
    # Watched namespaces are named exactly; no cluster-wide CRD/namespace scanning RBAC needed.
    kopf_settings.scanning.disabled = True
    kopf_settings.peering.standalone = settings.standalone
    if settings.peering_name:
        kopf_settings.peering.name = settings.peering_name
        kopf_settings.peering.mandatory = True


class Runtime:
    def __init__(self, settings: OperatorSettings):
        self.settings = settings
        self.configuration = load_configuration(settings.kubeconfig)
        self.cluster = Cluster(self.configuration, pool_size=settings.api_workers + 4,
                               request_timeout=settings.request_timeout)
        self.executor = ThreadPoolExecutor(max_workers=settings.api_workers, thread_name_prefix="stemgen-io")
        self.metrics = Metrics()
        self.context = Context(settings=settings, cluster=self.cluster, metrics=self.metrics, executor=self.executor)
        self.lifecycle = Lifecycle(self.context)
        self.reconciler = Reconciler(self.context, self.lifecycle)
        self.context.nudge = self.reconciler.nudge
        self._task: asyncio.Task | None = None
        self._metrics_server: Any = None
        self.started_at = time.monotonic()

    async def start(self) -> None:
        if self.settings.metrics_port:
            self._metrics_server = self.metrics.serve(self.settings.metrics_port)
        self._task = asyncio.get_running_loop().create_task(self.reconciler.run(), name="stemgen reconciler")
        log.info("stemgen operator started: pools %s, namespaces %s",
                 {pool.value: limit for pool, limit in self.settings.limits().items()},
                 self.settings.namespaces or "all")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.lifecycle.drain(SHUTDOWN_GRACE_SECONDS)
        if self._metrics_server is not None:
            server, _thread = self._metrics_server
            server.shutdown()
            server.server_close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.cluster.close()

    def connection_info(self) -> kopf.ConnectionInfo:
        """kopf's credentials from the same configuration our own client uses, so both always
        talk to the same cluster as the same identity."""
        configuration = self.configuration
        header = configuration.get_api_key_with_prefix("authorization")
        parts = header.split(" ", 1) if header else []
        scheme, token = (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
        return kopf.ConnectionInfo(
            server=configuration.host,
            ca_path=configuration.ssl_ca_cert,
            insecure=not configuration.verify_ssl,
            username=configuration.username or None,
            password=configuration.password or None,
            scheme=scheme,
            token=token,
            certificate_path=configuration.cert_file,
            private_key_path=configuration.key_file,
        )

    def health(self) -> dict[str, Any]:
        last = self.reconciler.last_pass_at
        return {"passes": self.reconciler.passes,
                "secondsSinceLastPass": None if last is None else round(time.monotonic() - last, 3),
                "loopAlive": bool(self._task and not self._task.done())}
