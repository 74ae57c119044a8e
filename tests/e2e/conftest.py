"""Fixtures for end-to-end tests: the node agent on the shared control plane.

One agent for the whole session (its nodes are cluster-scoped, and two agents would have
the scheduler spread pods over each other's nodes); every test still gets its own namespace.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stemgen_dev.azurite import Azurite
from stemgen_dev.node_agent import NodeAgent, build_config
from stemgen_dev.procs import log_tail
from stemgen_dev.receiver import CallbackReceiver
from stemgen_dev.stack import OperatorProcess, Requests, install_tiny_model, prepare_namespace

GPU_TOLERATION = {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
GPU_SELECTOR = {"kubernetes.azure.com/agentpool": "gpu"}
CPU_SELECTOR = {"kubernetes.azure.com/agentpool": "cpu"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "operator_env(env): extra STEMGEN_OPERATOR_* settings for the stack's operator")


@pytest.fixture(scope="session")
def volume_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("volumes")


# Package scope: the fake nodes (and the agent running whatever lands on them) must be gone
# before other test packages run, which expect a cluster with no kubelet.
@pytest.fixture(scope="package")
def node_agent(control_plane, volume_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeAgent]:
    """Two GPU nodes (two GPUs each: more than the operator's GPU limit, so the limit is what the
    concurrency test measures, not the scheduler) and one CPU node, run by an in-process agent."""
    config = build_config(kubeconfig=control_plane.kubeconfig, gpu_nodes=2, cpu_nodes=1, gpus_per_node=2,
                          volume_root=str(volume_root), work_root=str(tmp_path_factory.mktemp("agent")),
                          prefix="e2e", cpu_memory="16Gi",
                          # The fake GPU nodes have no CUDA device: their runners must use the CPU.
                          gpu_env=["STEMGEN_DEVICE=cpu"])
    agent = NodeAgent(config).start()
    assert agent.wait_ready(30), "node agent never listed pods"
    try:
        yield agent
    finally:
        agent.stop()


@dataclass
class Stack:
    """One test's view of the running system: its namespace, operator, receiver and helpers."""

    api_client: Any
    namespace: str
    requests: Requests
    operator: OperatorProcess
    receiver: CallbackReceiver
    azurite: Azurite
    agent: NodeAgent

    def pod_logs(self) -> str:
        root = self.agent.config.work_root / "pods" / self.namespace
        parts = []
        for log in sorted(root.glob("*/*.log")):
            parts.append(f"--- {log.parent.name}/{log.name}\n{log_tail(log, 25)}")
        return "\n".join(parts) or "(no pod logs)"

    def diagnose(self, name: str) -> str:
        """Everything useful when a request did not end as expected."""
        status = self.requests.status(name)
        return (f"\nstatus: {status}\n--- operator log\n{self.operator.log_tail(40)}\n{self.pod_logs()}")


@pytest.fixture(scope="session")
def tiny_model(volume_root: Path) -> Path:
    return install_tiny_model(volume_root)


@pytest.fixture
def stack(api_client, control_plane, namespace: str, azurite, callback_receiver, node_agent: NodeAgent,
          tiny_model: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """A namespace ready for requests and an operator (child process) watching it."""
    prepare_namespace(api_client, namespace, storage_connection_string=azurite.connection_string,
                      callback_secret=callback_receiver.secret)
    marker = request.node.get_closest_marker("operator_env")
    operator = OperatorProcess(kubeconfig=control_plane.kubeconfig, namespaces=[namespace],
                               log_path=tmp_path / "operator.log",
                               extra_env=dict(marker.args[0]) if marker else {}).start()
    try:
        yield Stack(api_client=api_client, namespace=namespace, requests=Requests(api_client, namespace),
                    operator=operator, receiver=callback_receiver, azurite=azurite, agent=node_agent)
    finally:
        operator.stop()
