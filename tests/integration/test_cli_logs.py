"""`stemgen logs` through the real API server's pod-log proxy.

No kubelet runs here, so the test plays one: a Node whose kubelet endpoint is an HTTPS server in
this process. The API server finds the runner pod's node and proxies `/containerLogs/...` to it,
exactly the path a real kubelet serves, so the CLI's pod lookup, tail and follow are all real.
"""

from __future__ import annotations

import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client as k8s

from stemgen_api import contract as c
from stemgen_client import StemGenClient
from stemgen_client.exitcodes import CliExit
from tests.integration.cli_runner import run_stemgen

LOG_LINES = [f"step {i}: generating stem drums" for i in range(1, 6)]


class FakeKubelet:
    """Serves `/containerLogs/<ns>/<pod>/<container>` over TLS and records what was asked."""

    def __init__(self, workdir: Path):
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                outer.requests.append((url.path, query))
                lines = LOG_LINES
                if "tailLines" in query:
                    lines = lines[-int(query["tailLines"][0]):]
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                for line in lines:
                    self.wfile.write(f"{url.path.split('/')[3]}: {line}\n".encode())
                    self.wfile.flush()
                    if query.get("follow") == ["true"]:
                        time.sleep(0.2)

            def log_message(self, *args: object) -> None:
                pass

        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-keyout", str(workdir / "kubelet.key"), "-out", str(workdir / "kubelet.crt"),
                        "-subj", "/CN=fake-kubelet", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(workdir / "kubelet.crt", workdir / "kubelet.key")
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_node(api_client, tmp_path: Path) -> Iterator[tuple[str, FakeKubelet]]:
    kubelet = FakeKubelet(tmp_path)
    core = k8s.CoreV1Api(api_client)
    name = f"fake-kubelet-{uuid.uuid4().hex[:6]}"
    # Unschedulable and tainted: nothing but the pods this test pins to it may land here.
    core.create_node(k8s.V1Node(metadata=k8s.V1ObjectMeta(name=name), spec=k8s.V1NodeSpec(
        unschedulable=True, taints=[k8s.V1Taint(key="stemgen.io/fake-kubelet", value="true", effect="NoSchedule")])))
    core.patch_node_status(name, {"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port}}}})
    try:
        yield name, kubelet
    finally:
        core.delete_node(name)
        kubelet.close()


def _runner_pod(api_client, namespace: str, request: str, pod: str, node: str | None) -> None:
    k8s.CoreV1Api(api_client).create_namespaced_pod(namespace, k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=pod, labels={c.LABEL_NAME: request}),
        spec=k8s.V1PodSpec(node_name=node, containers=[k8s.V1Container(name="runner", image="stemgen-runner")])))


def test_logs_reads_the_latest_runner_pod(control_plane, api_client, namespace: str, fake_node) -> None:
    node, kubelet = fake_node
    StemGenClient(kubeconfig=control_plane.kubeconfig, namespace=namespace).create(stems=["drums"], name="song")
    _runner_pod(api_client, namespace, "song", "song-runner-1", node)
    time.sleep(1.1)  # creation timestamps have second resolution; the latest attempt must be distinct
    _runner_pod(api_client, namespace, "song", "song-runner-2", node)
    _runner_pod(api_client, namespace, "other", "other-runner", node)

    result = run_stemgen(control_plane.kubeconfig, namespace, "logs", "song")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"song-runner-2: {line}" for line in LOG_LINES]
    assert kubelet.requests[-1][0] == f"/containerLogs/{namespace}/song-runner-2/runner"

    first = run_stemgen(control_plane.kubeconfig, namespace, "logs", "song", "--pod", "song-runner-1", "--tail", "2")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [f"song-runner-1: {line}" for line in LOG_LINES[-2:]]
    assert kubelet.requests[-1][1]["tailLines"] == ["2"]

    followed = run_stemgen(control_plane.kubeconfig, namespace, "logs", "song", "-f")
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.splitlines() == [f"song-runner-2: {line}" for line in LOG_LINES]
    assert kubelet.requests[-1][1]["follow"] == ["true"]

    stranger = run_stemgen(control_plane.kubeconfig, namespace, "logs", "song", "--pod", "other-runner")
    assert stranger.returncode == CliExit.NOT_FOUND and "not a runner pod of" in stranger.stderr


def test_logs_before_the_pod_is_scheduled(control_plane, api_client, namespace: str) -> None:
    StemGenClient(kubeconfig=control_plane.kubeconfig, namespace=namespace).create(stems=["drums"], name="early")
    none_yet = run_stemgen(control_plane.kubeconfig, namespace, "logs", "early")
    assert none_yet.returncode == CliExit.NOT_FOUND and "no runner pod" in none_yet.stderr
    _runner_pod(api_client, namespace, "early", "early-runner", None)
    pending = run_stemgen(control_plane.kubeconfig, namespace, "logs", "early")
    assert pending.returncode == CliExit.NOT_READY
    assert "early-runner is not on a node yet" in pending.stderr
