"""Registering the agent's Nodes and keeping them Ready (Lease renewals + Ready heartbeats)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from kubernetes import client
from kubernetes.client.rest import ApiException

from .nodes import NODE_LEASE_NAMESPACE, PoolConfig, build_lease, build_node, micro_time, node_names, ready_conditions
from .process import utc_now

log = logging.getLogger(__name__)

LEASE_RENEW_SECONDS = 10.0
STATUS_REFRESH_SECONDS = 60.0


@dataclass(frozen=True)
class RegisteredNode:
    name: str
    pool: PoolConfig
    uid: str


class NodeKeeper:
    """Creates the Nodes (replacing stale ones of the same name) and renews their Leases."""

    def __init__(self, api_client: client.ApiClient, pools: Sequence[PoolConfig], prefix: str) -> None:
        self.core = client.CoreV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        self.pools = list(pools)
        self.prefix = prefix
        self.nodes: list[RegisteredNode] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def names(self) -> set[str]:
        return {node.name for node in self.nodes}

    def register(self) -> list[RegisteredNode]:
        now = utc_now()
        for pool in self.pools:
            for name in node_names(self.prefix, pool):
                manifest = build_node(name, pool, self.prefix, now)
                try:
                    created = self.core.create_node(manifest)
                except ApiException as error:
                    if error.status != 409:
                        raise
                    # A node left behind by an earlier agent: take it over with our labels, taints and status.
                    created = self.core.patch_node(name, {"metadata": {"labels": manifest["metadata"]["labels"]},
                                                          "spec": {"taints": manifest["spec"]["taints"]}})
                    self.core.patch_node_status(name, {"status": manifest["status"]})
                self.nodes.append(RegisteredNode(name=name, pool=pool, uid=created.metadata.uid))
                self._renew_lease(self.nodes[-1])
                log.info("node %s registered (pool %s)", name, pool.name)
        return self.nodes

    def wait_schedulable(self, timeout: float = 60.0) -> bool:
        """Wait until the node lifecycle controller has lifted its taints from every node.

        The TaintNodesByCondition admission plugin puts `node.kubernetes.io/not-ready` on every
        new Node; the controller removes it on its next pass after seeing Ready=True (a few
        seconds). Pods created before that would sit unschedulable for a scheduler backoff.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            pending = [node.name for node in self.nodes if self._controller_taints(node.name)]
            if not pending:
                return True
            time.sleep(0.5)
        log.warning("nodes still carry controller taints after %.0fs", timeout)
        return False

    def _controller_taints(self, name: str) -> list[str]:
        node = self.core.read_node(name)
        return [taint.key for taint in node.spec.taints or [] if taint.key.startswith("node.kubernetes.io/")]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="node-heartbeat", daemon=True)
        self._thread.start()

    def stop(self, delete_nodes: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if delete_nodes:
            for node in self.nodes:
                with contextlib.suppress(ApiException):
                    self.core.delete_node(node.name)
                    log.info("node %s deleted", node.name)

    def _loop(self) -> None:
        since_status = 0.0
        while not self._stop.wait(LEASE_RENEW_SECONDS):
            since_status += LEASE_RENEW_SECONDS
            for node in self.nodes:
                try:
                    self._renew_lease(node)
                    if since_status >= STATUS_REFRESH_SECONDS:
                        self.core.patch_node_status(node.name, {"status": {"conditions": ready_conditions(utc_now())}})
                except Exception as error:  # a missed beat is retried on the next tick
                    log.warning("heartbeat for node %s failed: %s", node.name, error)
            if since_status >= STATUS_REFRESH_SECONDS:
                since_status = 0.0

    def _renew_lease(self, node: RegisteredNode) -> None:
        now = utc_now()
        try:
            self.coordination.patch_namespaced_lease(
                node.name, NODE_LEASE_NAMESPACE,
                {"spec": {"holderIdentity": node.name, "renewTime": micro_time(now)}})
        except ApiException as error:
            if error.status != 404:
                raise
            self.coordination.create_namespaced_lease(NODE_LEASE_NAMESPACE, build_lease(node.name, node.uid, now))
