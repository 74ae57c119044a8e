"""`stemgen-operator`, the console script, as its own process: settings from the environment,
kopf liveness, Prometheus metrics, and a request turned into a Job."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stemgen_api import contract as c
from stemgen_operator.testing import request_manifest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.read().decode()


def wait_for(check, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except (OSError, ApiException):
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_console_script_serves_health_and_metrics_and_creates_jobs(control_plane, api_client, namespace,
                                                                    tmp_path: Path):
    # The runner's ServiceAccount (the chart makes it): without it the Job controller creates no pod.
    client.CoreV1Api(api_client).create_namespaced_service_account(namespace, {"metadata": {"name": "stemgen-runner"}})
    health, metrics = free_port(), free_port()
    env = {**os.environ,
           "STEMGEN_OPERATOR_KUBECONFIG": control_plane.kubeconfig,
           "STEMGEN_OPERATOR_NAMESPACES": namespace,
           "STEMGEN_OPERATOR_CPU_POOL": json.dumps({"limit": 1, "nodeSelector": {"agentpool": "cpu"}}),
           "STEMGEN_OPERATOR_LIVENESS_PORT": str(health),
           "STEMGEN_OPERATOR_METRICS_PORT": str(metrics),
           "STEMGEN_OPERATOR_RESYNC_SECONDS": "2"}
    executable = Path(sys.executable).with_name("stemgen-operator")
    log_path = tmp_path / "operator.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([str(executable)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        health_report = json.loads(wait_for(lambda: fetch(f"http://127.0.0.1:{health}/healthz"), "/healthz"))
        assert "reconciler" in health_report

        custom = client.CustomObjectsApi(api_client)
        for name in ("first", "second"):
            custom.create_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL,
                                                   request_manifest(name, device="cpu"))
        batch = client.BatchV1Api(api_client)
        jobs = wait_for(lambda: batch.list_namespaced_job(namespace).items, "a Job")
        assert [job.metadata.labels[c.LABEL_NAME] for job in jobs] == ["first"]

        def second_waits() -> bool:
            status = custom.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL,
                                                         "second").get("status", {})
            return status.get("queuePosition") == 1

        wait_for(second_waits, "second to wait at position 1")
        # Gauges describe the listing each pass starts from, so they settle one pass later.
        text = wait_for(lambda: (body := fetch(f"http://127.0.0.1:{metrics}/metrics"))
                        and 'stemgen_queue_depth{pool="cpu"} 1.0' in body
                        and 'stemgen_requests{phase="Queued"} 2.0' in body and body, "queue depth in metrics")
        assert 'stemgen_jobs_created_total{pool="cpu"} 1.0' in text
        assert 'stemgen_active_jobs{pool="cpu"} 1.0' in text
        assert "stemgen_admission_latency_seconds_count" in text

        # Status written by the runner, then the slot frees and the next request gets its Job.
        custom.patch_namespaced_custom_object_status(c.GROUP, c.VERSION, namespace, c.PLURAL, "first",
                                                     {"status": {"phase": "Succeeded"}})
        # ...and its pod exits 0 (we play the kubelet): only a finished Job frees the slot.
        core = client.CoreV1Api(api_client)
        first_job = jobs[0].metadata.name
        pod = wait_for(lambda: core.list_namespaced_pod(namespace, label_selector=f"job-name={first_job}").items,
                       "the first Job's pod")[0]
        moment = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
        core.patch_namespaced_pod_status(pod.metadata.name, namespace, {"status": {
            "phase": "Succeeded", "containerStatuses": [{
                "name": pod.spec.containers[0].name, "image": "runner", "imageID": "", "ready": False,
                "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                            "startedAt": moment, "finishedAt": moment}}}]}})
        wait_for(lambda: len(batch.list_namespaced_job(namespace).items) == 2, "second's Job")
        wait_for(lambda: {cond["type"]: cond["status"] for cond in custom.get_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.PLURAL, "first")["status"].get("conditions", [])}.get("Succeeded")
                 == "True", "Succeeded condition added to a bare runner write")
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
    assert process.returncode in (0, -15), log_path.read_text()[-3000:]
    log_lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    admitted = [line for line in log_lines if "admitted" in line.get("message", "")]
    assert admitted and admitted[0]["k8s"] == {"namespace": namespace, "name": "first"}
    assert admitted[0]["request_id"] == "first", "structured logs carry the request id"
