"""Fixtures for end-to-end tests: the node agent on the shared control plane.

One agent for the whole session (its nodes are cluster-scoped, and two agents would have
the scheduler spread pods over each other's nodes); every test still gets its own namespace.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stemgen_dev.node_agent import NodeAgent, build_config

GPU_TOLERATION = {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
GPU_SELECTOR = {"kubernetes.azure.com/agentpool": "gpu"}
CPU_SELECTOR = {"kubernetes.azure.com/agentpool": "cpu"}


@pytest.fixture(scope="session")
def volume_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("volumes")


@pytest.fixture(scope="session")
def node_agent(control_plane, volume_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeAgent]:
    """Two GPU nodes (one GPU each) and one CPU node, run by an in-process agent."""
    config = build_config(kubeconfig=control_plane.kubeconfig, gpu_nodes=2, cpu_nodes=1,
                          volume_root=str(volume_root), work_root=str(tmp_path_factory.mktemp("agent")),
                          prefix="e2e", cpu_memory="16Gi")
    agent = NodeAgent(config).start()
    assert agent.wait_ready(30), "node agent never listed pods"
    try:
        yield agent
    finally:
        agent.stop()
