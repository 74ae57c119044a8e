"""The whole system once per pool: StemGeneration → operator → Job → pod on the right fake node →
runner (tiny model) → blobs in Azurite + status → signed callback."""

from __future__ import annotations

import hashlib

import pytest
from azure.storage.blob import BlobServiceClient
from kubernetes import client

from stemgen_api import contract as c
from stemgen_dev.stack import request_manifest

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(("device", "pool", "node_prefix"), [("gpu", "gpu", "e2e-gpu-"), ("cpu", "cpu", "e2e-cpu-")])
def test_request_runs_on_its_pool_and_delivers(stack, device: str, pool: str, node_prefix: str) -> None:
    name = f"song-{pool}"
    stack.requests.create(request_manifest(name, stems=["drums", "bass"], device=device,
                                           callback_url=stack.receiver.url))
    status = stack.requests.wait_terminal(name, timeout=240)
    assert status["phase"] == c.Phase.SUCCEEDED.value, stack.diagnose(name)
    assert status["pool"] == pool

    # The pod landed on the pool's fake node, and a GPU pod asked for a GPU.
    core = client.CoreV1Api(stack.api_client)
    pods = core.list_namespaced_pod(stack.namespace, label_selector=f"{c.LABEL_NAME}={name}").items
    assert pods and all(pod.spec.node_name.startswith(node_prefix) for pod in pods)
    limits = pods[0].spec.containers[0].resources.limits or {}
    assert ("nvidia.com/gpu" in limits) == (pool == "gpu")

    # Every stem is in the blob store, byte for byte what the status says.
    outputs = {output["stem"]: output for output in status["outputs"]}
    assert set(outputs) == {"drums", "bass"}
    blobs = BlobServiceClient.from_connection_string(stack.azurite.connection_string)
    for stem, output in outputs.items():
        data = blobs.get_blob_client(output["container"], output["blobName"]).download_blob().readall()
        assert hashlib.sha256(data).hexdigest() == output["sha256"], stem
        assert len(data) == output["bytes"]
        assert data[:4] == b"RIFF"

    # One signed callback, after the status was written, saying the same thing.
    callbacks = stack.receiver.wait_for(1, timeout=60)
    assert len(callbacks) == 1
    callback = callbacks[0]
    assert callback.verified
    assert callback.json["type"] == c.EventType.SUCCEEDED.value
    assert {item["stem"] for item in callback.json["data"]["outputs"]} == {"drums", "bass"}
    assert stack.requests.status(name)["callback"]["state"] == c.CallbackState.DELIVERED.value
