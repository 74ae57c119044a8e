"""Shared fixtures: a real control plane, Azurite and a callback receiver.

The control plane and Azurite are session-scoped (starting them costs seconds); every test gets
its own namespace, so tests stay independent without paying for a cluster each.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stemgen_dev.azurite import Azurite
from stemgen_dev.cluster import ControlPlane, start_control_plane
from stemgen_dev.receiver import CallbackReceiver

TESTS_ROOT = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(TESTS_ROOT).parts
        if parts and parts[0] in ("integration", "e2e"):
            item.add_marker(getattr(pytest.mark, parts[0]))


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = start_control_plane(tmp_path_factory.mktemp("control-plane"))
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> str:
    return control_plane.kubeconfig


@pytest.fixture(scope="session")
def api_client(control_plane: ControlPlane):
    from kubernetes import config

    return config.new_client_from_config(config_file=control_plane.kubeconfig)


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Callable[..., subprocess.CompletedProcess[str]]:
    return control_plane.kubectl


@pytest.fixture
def namespace(api_client, request: pytest.FixtureRequest) -> Iterator[str]:
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    base = "".join(ch if ch.isalnum() else "-" for ch in request.node.name.lower())[:40].strip("-")
    name = f"t-{base}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        if not os.environ.get("STEMGEN_KEEP_NAMESPACES"):
            core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    service = Azurite().start()
    try:
        yield service
    finally:
        service.remove()


@pytest.fixture
def callback_receiver() -> Iterator[CallbackReceiver]:
    with CallbackReceiver() as receiver:
        yield receiver
