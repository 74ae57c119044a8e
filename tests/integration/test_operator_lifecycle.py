"""The operator, in-process, against the real control plane (apiserver + controller-manager).

There is no kubelet: the Job controller creates pods, and the tests play the kubelet's part by
writing pod status through the `pods/status` subresource (Running/Ready, then Failed with
OOMKilled), or the runner's part by writing the resource's status. Everything else is real: the
operator's watches and writes, Job and garbage-collector controllers, the callback receiver.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stemgen_api import contract as c
from stemgen_operator import jobs
from stemgen_operator.settings import OperatorSettings, PoolSettings, Resources
from stemgen_operator.testing import OperatorThread, request_manifest
from tests.waiting import eventually

GPU_POOL = PoolSettings(limit=2, node_selector={"agentpool": "gpu"},
                        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                        resources=Resources(requests={"cpu": "1", "memory": "1Gi"}, limits={"memory": "2Gi"}))
CPU_POOL = PoolSettings(limit=2, node_selector={"agentpool": "cpu"},
                        resources=Resources(requests={"cpu": "500m"}, limits={"memory": "1Gi"}))
WAIT = 30.0


def now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def wait_until(check: Callable[[], Any], what: str, timeout: float = WAIT, interval: float = 0.1) -> Any:
    return eventually(check, what, timeout, interval)


class Cluster:
    """Test-side API helpers for one namespace."""

    def __init__(self, api_client: client.ApiClient, namespace: str):
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)

    def create(self, name: str, **spec: Any) -> dict:
        return self.custom.create_namespaced_custom_object(c.GROUP, c.VERSION, self.namespace, c.PLURAL,
                                                           request_manifest(name, **spec))

    def get(self, name: str) -> dict | None:
        try:
            return self.custom.get_namespaced_custom_object(c.GROUP, c.VERSION, self.namespace, c.PLURAL, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def status(self, name: str) -> dict:
        return (self.get(name) or {}).get("status") or {}

    def patch_spec(self, name: str, spec: dict) -> None:
        self.custom.patch_namespaced_custom_object(c.GROUP, c.VERSION, self.namespace, c.PLURAL, name,
                                                   {"spec": spec})

    def runner_writes(self, name: str, status: dict) -> None:
        """What the runner does at the end of a run: its own terminal status, conditions included."""
        self.custom.patch_namespaced_custom_object_status(c.GROUP, c.VERSION, self.namespace, c.PLURAL, name,
                                                          {"status": status})

    def succeed(self, name: str) -> None:
        moment = now()
        self.runner_writes(name, {"phase": "Succeeded", "reason": "Generated", "message": "done",
                                  "completionTime": moment, "conditions": [
                                      {"type": "Succeeded", "status": "True", "reason": "Generated",
                                       "message": "done", "lastTransitionTime": moment}]})
        # ...then its process exits 0, and only then does the Job (and its slot) finish.
        job = self.job_for(name)
        if job is not None:
            self.pod_exited_ok(self.wait_pod(job.metadata.name))

    def pod_exited_ok(self, pod: client.V1Pod) -> None:
        moment = now()
        self.core.patch_namespaced_pod_status(pod.metadata.name, self.namespace, {"status": {
            "phase": "Succeeded", "startTime": moment,
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": moment}],
            "containerStatuses": [{"name": "runner", "image": "runner", "imageID": "", "ready": False,
                                   "restartCount": 0, "started": False, "state": {"terminated": {
                                       "exitCode": 0, "reason": "Completed", "startedAt": moment,
                                       "finishedAt": moment}}}],
        }})

    def jobs(self) -> list[client.V1Job]:
        return self.batch.list_namespaced_job(self.namespace).items

    def job_for(self, name: str) -> client.V1Job | None:
        body = self.get(name)
        if body is None:
            return None
        try:
            return self.batch.read_namespaced_job(jobs.job_name(name, body["metadata"]["uid"]), self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def wait_job(self, name: str) -> client.V1Job:
        return wait_until(lambda: self.job_for(name), f"the Job of {name}")

    def wait_phase(self, name: str, phase: str, timeout: float = WAIT) -> dict:
        return wait_until(lambda: self.status(name) if self.status(name).get("phase") == phase else None,
                          f"{name} to be {phase}", timeout)

    def wait_pod(self, job_name: str) -> client.V1Pod:
        def pod() -> client.V1Pod | None:
            items = self.core.list_namespaced_pod(self.namespace, label_selector=f"job-name={job_name}").items
            return items[0] if items else None
        return wait_until(pod, f"a pod of {job_name}")

    def pod_running(self, pod: client.V1Pod) -> None:
        """The kubelet's report for a started, ready container."""
        moment = now()
        self.core.patch_namespaced_pod_status(pod.metadata.name, self.namespace, {"status": {
            "phase": "Running", "startTime": moment,
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": moment},
                           {"type": "ContainersReady", "status": "True", "lastTransitionTime": moment}],
            "containerStatuses": [{"name": "runner", "image": "runner", "imageID": "", "ready": True,
                                   "restartCount": 0, "started": True, "state": {"running": {"startedAt": moment}}}],
        }})

    def pod_terminated(self, pod: client.V1Pod, exit_code: int, reason: str) -> None:
        moment = now()
        self.core.patch_namespaced_pod_status(pod.metadata.name, self.namespace, {"status": {
            "phase": "Failed",
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": moment}],
            "containerStatuses": [{"name": "runner", "image": "runner", "imageID": "", "ready": False,
                                   "restartCount": 0, "started": False, "state": {"terminated": {
                                       "exitCode": exit_code, "reason": reason, "startedAt": moment,
                                       "finishedAt": moment}}}],
        }})

    def events(self, name: str) -> list[str]:
        items = self.core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={name}").items
        return [event.reason for event in items]

    def callback_secret(self, secret: str, name: str = "hook") -> dict:
        self.core.create_namespaced_secret(self.namespace, {
            "metadata": {"name": name}, "data": {"secret": base64.b64encode(secret.encode()).decode()}})
        return {"name": name, "key": "secret"}


@pytest.fixture
def cluster(api_client: client.ApiClient, namespace: str) -> Cluster:
    helper = Cluster(api_client, namespace)
    helper.core.create_namespaced_service_account(namespace, {"metadata": {"name": "stemgen-runner"}})
    return helper


@pytest.fixture
def settings(control_plane, namespace: str) -> OperatorSettings:
    return OperatorSettings(
        namespaces=[namespace], kubeconfig=control_plane.kubeconfig, gpu_pool=GPU_POOL, cpu_pool=CPU_POOL,
        runner_image="registry.example/stemgen-runner:test", model_cache_pvc="stemgen-models",
        storage_secret_name="stemgen-storage", storage_secret_key="connection-string",
        callback_allow_private=True, callback_initial_delay=0.05, callback_max_total_seconds=10,
        resync_seconds=2, position_refresh_seconds=0, metrics_port=0, liveness_port=0, api_workers=4)


@pytest.fixture
def operator(settings: OperatorSettings) -> Iterator[Callable[..., OperatorThread]]:
    """Starts the operator (optionally with changed settings); stops every one started."""
    started: list[OperatorThread] = []

    def start(**changes: Any) -> OperatorThread:
        instance = OperatorThread(settings.model_copy(update=changes)).start()
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()


def test_create_makes_one_job_with_every_field(cluster, operator, kubectl, callback_receiver):
    operator()
    secret_ref = cluster.callback_secret(callback_receiver.secret)
    cluster.create("song", device="gpu", requestId="req-1", timeoutSeconds=120, retries=1,
                   callback={"url": callback_receiver.url, "secretRef": secret_ref})
    job = cluster.wait_job("song")
    kubectl("wait", "--for=condition=Admitted", "-n", cluster.namespace, "stemgeneration/song", "--timeout=30s")
    body = cluster.get("song")

    meta = job.metadata
    assert meta.name == jobs.job_name("song", body["metadata"]["uid"])
    [owner] = meta.owner_references
    assert (owner.kind, owner.name, owner.uid, owner.controller, owner.block_owner_deletion) == (
        c.KIND, "song", body["metadata"]["uid"], True, True)
    assert meta.labels[c.LABEL_NAME] == "song" and meta.labels[c.LABEL_POOL] == "gpu"
    assert meta.labels[c.LABEL_REQUEST_ID] == "req-1"
    spec = job.spec
    assert spec.active_deadline_seconds == 120
    assert spec.backoff_limit == 1
    assert spec.ttl_seconds_after_finished == 3600
    assert spec.pod_failure_policy.rules[0].action == "FailJob"
    assert spec.pod_failure_policy.rules[0].on_exit_codes.values == [int(c.ExitCode.PERMANENT_FAILURE)]
    pod_spec = spec.template.spec
    assert pod_spec.node_selector == {"agentpool": "gpu"}
    assert [t.key for t in pod_spec.tolerations] == ["nvidia.com/gpu"]
    assert pod_spec.service_account_name == "stemgen-runner"
    assert pod_spec.security_context.run_as_non_root is True
    assert pod_spec.security_context.seccomp_profile.type == "RuntimeDefault"
    [runner] = pod_spec.containers
    assert runner.image == "registry.example/stemgen-runner:test"
    assert runner.command == ["stemgen-runner", "run"]
    assert runner.resources.limits == {"memory": "2Gi", "nvidia.com/gpu": "1"}
    assert runner.security_context.read_only_root_filesystem is True
    assert runner.security_context.capabilities.drop == ["ALL"]
    assert runner.security_context.allow_privilege_escalation is False
    env = {item.name: item for item in runner.env}
    assert env[c.ENV_STORAGE_CONNECTION_STRING].value_from.secret_key_ref.name == "stemgen-storage"
    assert env[c.ENV_CALLBACK_SECRET].value_from.secret_key_ref.name == "hook"
    assert env[c.ENV_CALLBACK_SECRET].value_from.secret_key_ref.optional is True
    assert env[c.ENV_NAME].value == "song" and env[c.ENV_NAMESPACE].value == cluster.namespace
    assert callback_receiver.secret not in str(job.to_dict()), "secrets go by reference only"
    volumes = {v.name: v for v in pod_spec.volumes}
    assert volumes["model-cache"].persistent_volume_claim.claim_name == "stemgen-models"

    status = body["status"]
    assert status["phase"] == "Queued" and status["pool"] == "gpu" and status["jobName"] == meta.name
    assert status["requestId"] == "req-1"
    assert status["observedGeneration"] == body["metadata"]["generation"]
    pod = cluster.wait_pod(meta.name)
    assert pod.metadata.labels[c.LABEL_NAME] == "song", "pods carry the request's labels"
    # A free slot: queued and admitted in one write, so one Event says both.
    wait_until(lambda: "Admitted" in cluster.events("song"), "an Admitted event")
    assert len(cluster.jobs()) == 1


def test_gpu_and_cpu_placement(cluster, operator):
    operator()
    for name, device in (("on-gpu", "gpu"), ("on-cpu", "cpu"), ("auto", "auto")):
        cluster.create(name, device=device)
    gpu, cpu, auto = (cluster.wait_job(name).spec.template.spec for name in ("on-gpu", "on-cpu", "auto"))
    assert gpu.node_selector == {"agentpool": "gpu"} and gpu.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    assert cpu.node_selector == {"agentpool": "cpu"} and "nvidia.com/gpu" not in cpu.containers[0].resources.limits
    assert cpu.tolerations is None
    assert auto.node_selector == {"agentpool": "gpu"}, "auto prefers the GPU pool when there is one"
    wait_until(lambda: [cluster.status(n).get("pool") for n in ("on-gpu", "on-cpu", "auto")] == ["gpu", "cpu", "gpu"],
               "the pools in status")


def test_gpu_request_without_gpu_pool_fails_and_auto_runs_on_cpu(cluster, operator):
    operator(gpu_pool=None)
    cluster.create("needs-gpu", device="gpu")
    cluster.create("anywhere", device="auto")
    status = cluster.wait_phase("needs-gpu", "Failed")
    assert status["reason"] == c.FailureReason.POOL_UNAVAILABLE.value
    assert cluster.wait_job("anywhere").spec.template.spec.node_selector == {"agentpool": "cpu"}
    assert cluster.job_for("needs-gpu") is None


def test_limit_two_with_five_requests(cluster, operator):
    operator()
    names = [f"r{i}" for i in range(5)]
    most = {"jobs": 0}
    stop = threading.Event()

    def count_running_jobs() -> None:
        """Jobs whose request is still unfinished, sampled continuously."""
        while not stop.is_set():
            live = 0
            for job in cluster.jobs():
                owner = cluster.get(job.metadata.labels[c.LABEL_NAME])
                if owner and owner.get("status", {}).get("phase") not in ("Succeeded", "Failed", "Cancelled"):
                    live += 1
            most["jobs"] = max(most["jobs"], live)
            time.sleep(0.05)

    sampler = threading.Thread(target=count_running_jobs, daemon=True)
    sampler.start()
    try:
        for name in names:
            cluster.create(name, device="gpu")
            time.sleep(0.05)  # distinct queue times: FIFO is observable
        cluster.wait_job("r0"), cluster.wait_job("r1")
        wait_until(lambda: [cluster.status(n).get("queuePosition") for n in names[2:]] == [1, 2, 3],
                   "positions 1..3 for the waiting three")
        assert all(cluster.job_for(n) is None for n in names[2:])
        wait_until(lambda: "Queued" in cluster.events("r4"), "a Queued event for a waiting request")
        for waiting in names[2:]:
            status = cluster.status(waiting)
            assert status["phase"] == "Queued" and status["reason"] == "WaitingForSlot"
            assert f"position {status['queuePosition']}" in status["message"]

        cluster.succeed("r0")
        cluster.wait_job("r2")
        wait_until(lambda: [cluster.status(n).get("queuePosition") for n in names[3:]] == [1, 2],
                   "positions to move up")
        assert cluster.job_for("r3") is None
        cluster.succeed("r1")
        cluster.succeed("r2")
        cluster.wait_job("r3"), cluster.wait_job("r4")
        assert len(cluster.jobs()) == 5, "one Job per request, no more"
    finally:
        stop.set()
        sampler.join(5)
    assert most["jobs"] <= 2


def test_restart_mid_flight_adopts_and_never_duplicates(cluster, operator, settings):
    first = operator(gpu_pool=GPU_POOL.model_copy(update={"limit": 1}))
    for name in ("a", "b", "c"):
        cluster.create(name, device="gpu")
        time.sleep(0.05)
    job_a = cluster.wait_job("a")
    wait_until(lambda: cluster.status("c").get("queuePosition") == 2, "c to wait second")
    first.stop()

    # The operator "crashed" right after creating b's Job, before recording it in b's status.
    b = cluster.get("b")
    manifest = jobs.build_job(b, c.Pool.GPU, settings.model_copy(update={"gpu_pool": GPU_POOL}))
    job_b = cluster.batch.create_namespaced_job(cluster.namespace, manifest)
    assert cluster.status("b").get("jobName") is None

    operator(gpu_pool=GPU_POOL.model_copy(update={"limit": 1}))
    wait_until(lambda: cluster.status("b").get("jobName") == job_b.metadata.name, "b's Job to be adopted")
    time.sleep(1.0)  # a few reconcile passes
    assert sorted(j.metadata.uid for j in cluster.jobs()) == sorted([job_a.metadata.uid, job_b.metadata.uid])
    assert cluster.job_for("c") is None, "a and b hold more than the limit already"
    assert cluster.status("c")["queuePosition"] == 1

    cluster.succeed("a")
    time.sleep(1.0)
    assert cluster.job_for("c") is None, "b still holds the only slot"
    cluster.succeed("b")
    cluster.wait_job("c")
    assert len(cluster.jobs()) == 3


def test_oom_killed_fails_with_reason_and_operator_callback(cluster, operator, kubectl, callback_receiver):
    operator()
    secret_ref = cluster.callback_secret(callback_receiver.secret)
    cluster.create("oom", device="cpu", retries=0, callback={"url": callback_receiver.url, "secretRef": secret_ref})
    job = cluster.wait_job("oom")
    pod = cluster.wait_pod(job.metadata.name)

    cluster.pod_running(pod)
    running = cluster.wait_phase("oom", "Running")
    assert running["attempts"] == 1
    assert running["startTime"]

    cluster.pod_terminated(pod, 137, "OOMKilled")
    failed = cluster.wait_phase("oom", "Failed")
    assert failed["reason"] == "OOMKilled"
    assert "out of memory" in failed["message"]
    kubectl("wait", "--for=condition=Failed", "-n", cluster.namespace, "stemgeneration/oom", "--timeout=10s")
    kubectl("wait", "--for=condition=Succeeded=False", "-n", cluster.namespace, "stemgeneration/oom",
            "--timeout=10s")

    received = callback_receiver.wait_for(1, timeout=WAIT)
    time.sleep(2)  # a duplicate would arrive right behind the first
    assert len(callback_receiver.received) == 1, [(r.webhook_id, r.json) for r in callback_receiver.received]
    [callback] = received
    assert callback.verified
    assert callback.json["type"] == "stemgeneration.failed"
    assert callback.json["data"]["reason"] == "OOMKilled"
    assert callback.json["data"]["name"] == "oom"
    recorded = wait_until(lambda: cluster.status("oom").get("callback", {}).get("state") == "Delivered"
                          and cluster.status("oom")["callback"], "the callback to be recorded")
    assert recorded["sentBy"] == "operator" and recorded["lastStatusCode"] == 200
    assert recorded["webhookId"] == callback.webhook_id
    wait_until(lambda: "OOMKilled" in cluster.events("oom"), "an OOMKilled event")


def test_runner_terminal_status_is_never_overwritten(cluster, operator, callback_receiver):
    operator()
    cluster.create("bad", device="cpu", retries=3, callback={"url": callback_receiver.url})
    job = cluster.wait_job("bad")
    pod = cluster.wait_pod(job.metadata.name)
    cluster.pod_running(pod)
    cluster.wait_phase("bad", "Running")
    cluster.runner_writes("bad", {"phase": "Failed", "reason": "InvalidSpec", "message": "stems: unknown",
                                  "completionTime": now()})
    cluster.pod_terminated(pod, int(c.ExitCode.PERMANENT_FAILURE), "Error")
    wait_until(lambda: any(cond.type == "Failed" and cond.status == "True"
                           for cond in (cluster.job_for("bad").status.conditions or [])),
               "the Job to fail at once (podFailurePolicy)")
    assert len(cluster.wait_pod(job.metadata.name).metadata.name) > 0
    time.sleep(1.5)
    status = cluster.status("bad")
    assert (status["phase"], status["reason"]) == ("Failed", "InvalidSpec")
    assert callback_receiver.received == [], "the runner owns this callback; the operator stays silent"
    conditions = {cond["type"]: cond for cond in status.get("conditions", [])}
    assert conditions["Failed"]["status"] == "True", "conditions completed for kubectl wait"
    pods = cluster.core.list_namespaced_pod(cluster.namespace, label_selector=f"job-name={job.metadata.name}").items
    assert len(pods) == 1, "exit 42 is not retried"


def test_deadline_exceeded(cluster, operator, callback_receiver):
    operator()
    cluster.create("slow", device="cpu", timeoutSeconds=30, callback={"url": callback_receiver.url})
    job = cluster.wait_job("slow")
    cluster.pod_running(cluster.wait_pod(job.metadata.name))
    cluster.wait_phase("slow", "Running")
    # Fast-forward: the schema's minimum timeout is 30 s; the Job's deadline is mutable.
    cluster.batch.patch_namespaced_job(job.metadata.name, cluster.namespace, {"spec": {"activeDeadlineSeconds": 1}})
    failed = cluster.wait_phase("slow", "Failed")
    assert failed["reason"] == "DeadlineExceeded"
    assert "timeoutSeconds" in failed["message"]
    received = callback_receiver.wait_for(1, timeout=WAIT)
    time.sleep(2)  # a duplicate would arrive right behind the first
    assert len(callback_receiver.received) == 1, [(r.webhook_id, r.json) for r in callback_receiver.received]
    [callback] = received
    assert callback.json["data"]["reason"] == "DeadlineExceeded"
    assert not callback.verified, "no secretRef: sent unsigned"


def test_cancel_stops_the_job_and_frees_the_slot(cluster, operator, callback_receiver):
    operator(cpu_pool=CPU_POOL.model_copy(update={"limit": 1}))
    secret_ref = cluster.callback_secret(callback_receiver.secret)
    cluster.create("first", device="cpu", callback={"url": callback_receiver.url, "secretRef": secret_ref})
    cluster.create("second", device="cpu")
    cluster.wait_job("first")
    cluster.patch_spec("first", {"cancel": True})
    status = cluster.wait_phase("first", "Cancelled")
    assert status["reason"] == "CancelRequested"
    wait_until(lambda: cluster.job_for("first") is None, "the cancelled Job to be deleted")
    cluster.wait_job("second")
    received = callback_receiver.wait_for(1, timeout=WAIT)
    time.sleep(2)  # a duplicate would arrive right behind the first
    assert len(callback_receiver.received) == 1, [(r.webhook_id, r.json) for r in callback_receiver.received]
    [callback] = received
    assert callback.verified and callback.json["type"] == "stemgeneration.cancelled"
    conditions = {cond["type"]: cond["status"] for cond in cluster.status("first")["conditions"]}
    assert conditions["Cancelled"] == "True" and conditions["Succeeded"] == "False"


def test_deletion_cleans_up_and_reports_cancelled(cluster, operator, callback_receiver):
    operator(cpu_pool=CPU_POOL.model_copy(update={"limit": 1}))
    cluster.create("doomed", device="cpu", callback={"url": callback_receiver.url})
    cluster.create("next", device="cpu")
    job = cluster.wait_job("doomed")
    cluster.custom.delete_namespaced_custom_object(c.GROUP, c.VERSION, cluster.namespace, c.PLURAL, "doomed")
    cluster.wait_job("next")

    def job_gone() -> bool:
        try:
            cluster.batch.read_namespaced_job(job.metadata.name, cluster.namespace)
        except ApiException as error:
            return error.status == 404
        return False

    wait_until(job_gone, "the garbage collector to delete the owned Job")
    received = callback_receiver.wait_for(1, timeout=WAIT)
    time.sleep(2)  # a duplicate would arrive right behind the first
    assert len(callback_receiver.received) == 1, [(r.webhook_id, r.json) for r in callback_receiver.received]
    [callback] = received
    assert callback.json["type"] == "stemgeneration.cancelled"
    assert callback.json["data"]["reason"] == "Deleted"


def test_ttl_after_finished_deletes_the_request(cluster, operator):
    operator()
    cluster.create("short-lived", device="cpu", ttlSecondsAfterFinished=2)
    cluster.create("kept", device="cpu")
    cluster.wait_job("short-lived")
    cluster.wait_job("kept")
    cluster.succeed("short-lived")
    cluster.succeed("kept")
    wait_until(lambda: cluster.get("short-lived") is None, "the request to be deleted after its TTL", timeout=20)
    time.sleep(1)
    assert cluster.get("kept") is not None, "no TTL, no deletion"


def test_kueue_mode_creates_a_suspended_labelled_job(cluster, operator):
    operator(cpu_pool=CPU_POOL.model_copy(update={"limit": 1}))
    cluster.create("occupier", device="cpu")
    for name in ("k1", "k2"):
        cluster.create(name, device="cpu", queueName="team-a")
    for name in ("k1", "k2"):
        job = cluster.wait_job(name)
        assert job.spec.suspend is True, "Kueue, not the operator's limit, admits it"
        assert job.metadata.labels[c.KUEUE_QUEUE_LABEL] == "team-a"
        status = wait_until(lambda n=name: cluster.status(n).get("jobName") and cluster.status(n),
                            f"{name}'s status to name its Job")
        assert status["reason"] == "WaitingForKueue" and status["jobName"] == job.metadata.name
        assert {cond["type"]: cond["status"] for cond in status["conditions"]}["Admitted"] == "False"

    # What Kueue does once its ClusterQueue has quota: unsuspend the Job.
    cluster.batch.patch_namespaced_job(cluster.wait_job("k1").metadata.name, cluster.namespace,
                                       {"spec": {"suspend": False}})
    wait_until(lambda: {cond["type"]: cond["status"] for cond in cluster.status("k1")["conditions"]}
               .get("Admitted") == "True", "k1 to be admitted by Kueue")


def test_callback_url_on_loopback_is_refused(cluster, operator, callback_receiver):
    operator(callback_allow_private=False)
    cluster.create("sneaky", device="cpu", callback={"url": callback_receiver.url})
    cluster.create("metadata", device="cpu", callback={"url": "http://169.254.169.254/latest/meta-data"})
    for name in ("sneaky", "metadata"):
        status = cluster.wait_phase(name, "Failed")
        assert status["reason"] == c.FailureReason.CALLBACK_REFUSED.value
        assert status["callback"]["state"] == "Skipped"
        assert cluster.job_for(name) is None
    time.sleep(0.5)
    assert callback_receiver.received == []


def test_retries_count_attempts_and_the_last_pod_decides(cluster, operator, callback_receiver):
    runtime = operator().runtime
    cluster.create("flaky", device="cpu", retries=1, callback={"url": callback_receiver.url})
    job = cluster.wait_job("flaky")
    first = cluster.wait_pod(job.metadata.name)
    cluster.pod_running(first)
    assert cluster.wait_phase("flaky", "Running")["attempts"] == 1
    cluster.pod_terminated(first, int(c.ExitCode.RETRYABLE_FAILURE), "Error")

    def second_pod():
        pods = cluster.core.list_namespaced_pod(cluster.namespace, label_selector=f"job-name={job.metadata.name}")
        fresh = [pod for pod in pods.items if pod.metadata.name != first.metadata.name]
        return fresh[0] if fresh else None

    second = wait_until(second_pod, "the Job controller's retry pod")
    cluster.pod_running(second)
    wait_until(lambda: cluster.status("flaky").get("attempts") == 2, "attempts to count the retry")
    assert cluster.status("flaky")["phase"] == "Running"
    cluster.pod_terminated(second, 137, "OOMKilled")
    failed = cluster.wait_phase("flaky", "Failed")
    assert failed["reason"] == "OOMKilled" and second.metadata.name in failed["message"]
    received = callback_receiver.wait_for(1, timeout=WAIT)
    time.sleep(2)  # a duplicate would arrive right behind the first
    assert len(callback_receiver.received) == 1, [(r.webhook_id, r.json) for r in callback_receiver.received]
    [callback] = received
    assert callback.json["data"]["attempts"] == 2
    text = prometheus_text(runtime)
    assert 'stemgen_run_duration_seconds_count{phase="Failed"} 1.0' in text
    assert 'stemgen_transitions_total{phase="Failed"} 1.0' in text


def prometheus_text(runtime) -> str:
    from prometheus_client import generate_latest

    return generate_latest(runtime.metrics.registry).decode()
