"""The node agent against the real scheduler and Job controller.

Every test creates ordinary Kubernetes objects (Jobs, Pods) and checks what the real
controllers make of the statuses the agent reports: that is the agent's whole contract.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from stemgen_dev.agent.nodes import GPU_RESOURCE, NODE_LEASE_NAMESPACE
from tests.waiting import eventually

from .conftest import CPU_SELECTOR, GPU_SELECTOR, GPU_TOLERATION

PYTHON = os.path.basename(sys.executable)


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.3) -> Any:
    return eventually(check, what, timeout, interval)


def job_condition(batch: client.BatchV1Api, namespace: str, name: str) -> str | None:
    job = batch.read_namespaced_job(name, namespace)
    for condition in job.status.conditions or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return condition.type
    return None


def job_pods(core: client.CoreV1Api, namespace: str, job: str) -> list[client.V1Pod]:
    return core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items


def container(command: str, **extra: Any) -> dict[str, Any]:
    return {"name": "main", "image": "example.invalid/python:3", "command": [PYTHON, "-c", command], **extra}


def make_job(name: str, pod_spec: dict[str, Any], backoff_limit: int = 0) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": backoff_limit, "template": {"spec": {"restartPolicy": "Never", **pod_spec}}}}


@pytest.fixture
def apis(api_client) -> tuple[client.CoreV1Api, client.BatchV1Api]:
    return client.CoreV1Api(api_client), client.BatchV1Api(api_client)


def test_nodes_are_registered_ready_with_pool_shape(node_agent, api_client) -> None:
    core = client.CoreV1Api(api_client)
    coordination = client.CoordinationV1Api(api_client)
    nodes = {node.metadata.name: node for node in core.list_node(label_selector="stemgen.io/node-agent=e2e").items}
    assert set(nodes) == {"e2e-gpu-0", "e2e-gpu-1", "e2e-cpu-0"}
    gpu = nodes["e2e-gpu-0"]
    assert gpu.status.allocatable[GPU_RESOURCE] == "2"
    assert gpu.metadata.labels["kubernetes.azure.com/agentpool"] == "gpu"
    assert [(t.key, t.value, t.effect) for t in gpu.spec.taints] == [("sku", "gpu", "NoSchedule")]
    cpu = nodes["e2e-cpu-0"]
    assert GPU_RESOURCE not in cpu.status.allocatable
    assert not cpu.spec.taints
    for node in nodes.values():
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True"
        lease = coordination.read_namespaced_lease(node.metadata.name, NODE_LEASE_NAMESPACE)
        assert lease.spec.holder_identity == node.metadata.name


def test_gpu_job_completes_with_env_volumes_and_its_own_identity(node_agent, apis, namespace, volume_root) -> None:
    core, batch = apis
    core.create_namespaced_secret(namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="creds"),
                                                             string_data={"token": "s3cret"}))
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings"),
                                                                    data={"mode": "fast"}))
    core.create_namespaced_persistent_volume_claim(namespace, client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name="cache"),
        spec=client.V1PersistentVolumeClaimSpec(access_modes=["ReadWriteMany"],
                                                resources=client.V1VolumeResourceRequirements(
                                                    requests={"storage": "1Gi"}))))
    script = (
        "import json, os\n"
        "from kubernetes import client, config\n"
        "config.load_kube_config()\n"
        "review = client.AuthenticationV1Api().create_self_subject_review({'apiVersion': 'authentication.k8s.io/v1',"
        " 'kind': 'SelfSubjectReview'})\n"
        "keys = ['SECRET', 'MODE', 'POD', 'NS', 'NODE', 'HF_HOME', 'GREETING']\n"
        "out = {k: os.environ.get(k) for k in keys}\n"
        "out['user'] = review.status.user_info.username\n"
        "os.makedirs(os.environ['HF_HOME'], exist_ok=True)\n"
        "open(os.path.join(os.environ['HF_HOME'], 'marker.json'), 'w').write(json.dumps(out))\n"
    )
    spec = {
        "nodeSelector": GPU_SELECTOR, "tolerations": [GPU_TOLERATION],
        "containers": [container(script, env=[
            {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "HF_HOME", "value": "/cache/hf"},
            {"name": "GREETING", "value": "hello $(MODE)"},
        ], resources={"limits": {GPU_RESOURCE: "1", "memory": "2Gi"}},
            volumeMounts=[{"name": "cache", "mountPath": "/cache"}])],
        "volumes": [{"name": "cache", "persistentVolumeClaim": {"claimName": "cache"}}],
    }
    batch.create_namespaced_job(namespace, make_job("gpu-ok", spec))
    assert wait_for(lambda: job_condition(batch, namespace, "gpu-ok"), 90, "Job gpu-ok to finish") == "Complete"

    pod = job_pods(core, namespace, "gpu-ok")[0]
    assert pod.spec.node_name.startswith("e2e-gpu-")
    assert pod.status.phase == "Succeeded"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    marker = json.loads((volume_root / "cache" / "hf" / "marker.json").read_text())
    assert marker == {"SECRET": "s3cret", "MODE": "fast", "POD": pod.metadata.name, "NS": namespace,
                      "NODE": pod.spec.node_name, "HF_HOME": str(volume_root / "cache" / "hf"),
                      "GREETING": "hello fast", "user": f"system:serviceaccount:{namespace}:default"}


def test_cpu_pod_lands_on_cpu_pool_and_failure_is_reported(node_agent, apis, namespace) -> None:
    core, batch = apis
    script = "import sys; print('progress...'); sys.stderr.write('boom: the model is missing\\n'); sys.exit(3)"
    spec = {"nodeSelector": CPU_SELECTOR,
            "containers": [container(script, terminationMessagePolicy="FallbackToLogsOnError")]}
    batch.create_namespaced_job(namespace, make_job("cpu-fail", spec))
    assert wait_for(lambda: job_condition(batch, namespace, "cpu-fail"), 90, "Job cpu-fail to fail") == "Failed"

    pod = job_pods(core, namespace, "cpu-fail")[0]
    assert pod.spec.node_name == "e2e-cpu-0"
    assert pod.status.phase == "Failed"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (3, "Error")
    assert "boom: the model is missing" in terminated.message


def test_termination_message_file_is_reported(node_agent, apis, namespace) -> None:
    core, _ = apis
    script = "import os; open(os.environ['MSG'], 'w').write('custom reason'); raise SystemExit(0)"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "message"},
           "spec": {"restartPolicy": "Never", "nodeSelector": CPU_SELECTOR, "containers": [container(
               script, env=[{"name": "MSG", "value": "/dev/termination-log"}])]}}
    core.create_namespaced_pod(namespace, pod)

    def finished() -> client.V1Pod | None:
        current = core.read_namespaced_pod("message", namespace)
        return current if current.status.phase in ("Succeeded", "Failed") else None

    done = wait_for(finished, 60, "pod message to finish")
    assert done.status.phase == "Succeeded"
    assert done.status.container_statuses[0].state.terminated.message == "custom reason"


def test_process_over_its_memory_limit_is_oom_killed(node_agent, apis, namespace) -> None:
    core, batch = apis
    script = "import time; hog = b'x' * (300 * 1024 * 1024); time.sleep(60)"
    spec = {"nodeSelector": CPU_SELECTOR, "containers": [container(script, resources={"limits": {"memory": "100Mi"}})]}
    batch.create_namespaced_job(namespace, make_job("oom", spec))
    assert wait_for(lambda: job_condition(batch, namespace, "oom"), 90, "Job oom to fail") == "Failed"

    terminated = job_pods(core, namespace, "oom")[0].status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (137, "OOMKilled")


def test_active_deadline_kills_the_pod(node_agent, apis, namespace) -> None:
    core, _ = apis
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "slow"},
           "spec": {"restartPolicy": "Never", "activeDeadlineSeconds": 2, "nodeSelector": CPU_SELECTOR,
                    "containers": [container("import time; time.sleep(120)")]}}
    core.create_namespaced_pod(namespace, pod)

    def failed() -> client.V1Pod | None:
        current = core.read_namespaced_pod("slow", namespace)
        return current if current.status.phase == "Failed" else None

    done = wait_for(failed, 60, "pod slow to pass its deadline")
    assert done.status.reason == "DeadlineExceeded"
    assert done.status.container_statuses[0].state.terminated.exit_code in (137, 143)


def test_deleted_pod_is_killed_and_removed(node_agent, apis, namespace) -> None:
    core, _ = apis
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "doomed"},
           "spec": {"restartPolicy": "Never", "nodeSelector": GPU_SELECTOR, "tolerations": [GPU_TOLERATION],
                    "terminationGracePeriodSeconds": 5,
                    "containers": [container("import time; time.sleep(300)",
                                             resources={"limits": {GPU_RESOURCE: "1"}})]}}
    core.create_namespaced_pod(namespace, pod)

    def running_pid() -> int | None:
        current = core.read_namespaced_pod("doomed", namespace)
        statuses = current.status.container_statuses or []
        if current.status.phase == "Running" and statuses and statuses[0].container_id:
            return int(statuses[0].container_id.rsplit("/", 1)[-1])
        return None

    pid = wait_for(running_pid, 60, "pod doomed to run")
    os.kill(pid, 0)  # the process is really there
    core.delete_namespaced_pod("doomed", namespace)

    def gone() -> bool:
        try:
            core.read_namespaced_pod("doomed", namespace)
        except ApiException as error:
            return error.status == 404
        return False

    wait_for(gone, 30, "pod doomed to be removed")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_missing_secret_waits_then_runs(node_agent, apis, namespace) -> None:
    """CreateContainerConfigError while the Secret is missing, then the pod runs once it exists."""
    core, _ = apis
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "patient"},
           "spec": {"restartPolicy": "Never", "nodeSelector": CPU_SELECTOR, "containers": [container(
               "import os; assert os.environ['KEY'] == 'late'",
               env=[{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "later", "key": "k"}}}])]}}
    core.create_namespaced_pod(namespace, pod)

    def config_error() -> str | None:
        statuses = core.read_namespaced_pod("patient", namespace).status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        return waiting.message if waiting and waiting.reason == "CreateContainerConfigError" else None

    assert wait_for(config_error, 60, "CreateContainerConfigError") == 'secret "later" not found'
    time.sleep(1)
    assert core.read_namespaced_pod("patient", namespace).status.phase == "Pending"
    core.create_namespaced_secret(namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="later"),
                                                             data={"k": base64.b64encode(b"late").decode()}))
    phase = wait_for(lambda: core.read_namespaced_pod("patient", namespace).status.phase in ("Succeeded", "Failed")
                     and core.read_namespaced_pod("patient", namespace).status.phase, 60, "pod patient to finish")
    assert phase == "Succeeded"
