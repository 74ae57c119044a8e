"""A real local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

Built from the Go module proxy by hack/build-control-plane.sh (no registry ships these binaries)
and started on loopback with RBAC, service-account signing keys and an admin kubeconfig. There
is no kubelet: the node agent (stemgen_dev.node_agent) plays one for fake nodes when a test needs pods to run.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .procs import REPO_ROOT, free_port, log_tail, start_process, stop_pid, stop_process, wait_until

BUILD_SCRIPT = REPO_ROOT / "hack" / "build-control-plane.sh"
SERVICE_CIDR = "10.96.0.0/16"


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started; the message says which step."""


def ensure_binaries() -> Path:
    """Build (or reuse from the cache) every binary; returns the directory holding them."""
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise ControlPlaneError(f"{BUILD_SCRIPT.name} failed (exit {result.returncode}); see its '!!' line above")
    return Path(result.stdout.strip().splitlines()[-1])


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ControlPlaneError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _write_pki(pki: Path) -> None:
    """A CA, the apiserver's serving certificate, and the service-account key pair."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "3650", "-subj", "/CN=stemgen-local-ca", cwd=pki)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "apiserver.key", "-out", "apiserver.csr",
             "-subj", "/CN=kube-apiserver", cwd=pki)
    (pki / "san.ext").write_text(
        "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n")
    _openssl("x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "apiserver.crt", "-days", "3650", "-extfile", "san.ext", cwd=pki)
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def kubeconfig_document(server: str, ca_pem: bytes, token: str, user: str = "admin") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "stemgen-local", "cluster": {
            "server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "stemgen-local", "context": {"cluster": "stemgen-local", "user": user}}],
        "current-context": "stemgen-local",
    }


@dataclass
class ControlPlane:
    """Processes and files of one local control plane; `start()` returns when it is usable."""

    workdir: Path
    bin_dir: Path
    apiserver_port: int = field(default_factory=free_port)
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    install_crds: bool = True
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> str:
        return str(self.workdir / "kubeconfig")

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def ca_file(self) -> str:
        return str(self.pki / "ca.crt")

    def _log(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def start(self, timeout: float = 120.0) -> ControlPlane:
        self.workdir.mkdir(parents=True, exist_ok=True)
        _write_pki(self.pki)
        tokens = {name: secrets.token_hex(16) for name in ("admin", "controller-manager", "scheduler")}
        (self.pki / "tokens.csv").write_text(
            f"{tokens['admin']},admin,admin,system:masters\n"
            f"{tokens['controller-manager']},system:kube-controller-manager,kcm\n"
            f"{tokens['scheduler']},system:kube-scheduler,scheduler\n")
        ca_pem = (self.pki / "ca.crt").read_bytes()
        for name, token in tokens.items():
            path = self.workdir / ("kubeconfig" if name == "admin" else f"{name}.kubeconfig")
            path.write_text(yaml.safe_dump(kubeconfig_document(self.server, ca_pem, token, name)))
        self.admin_token = tokens["admin"]
        try:
            self._start_etcd(timeout)
            self._start_apiserver(timeout)
            self._start_controllers()
            if self.install_crds:
                self.apply_crds(timeout)
            self._wait_for_default_service_account(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_etcd(self, timeout: float) -> None:
        client_url = f"http://127.0.0.1:{self.etcd_port}"
        peer_url = f"http://127.0.0.1:{self.etcd_peer_port}"
        self.processes["etcd"] = start_process([
            str(self.bin_dir / "etcd"), "--name", "default", "--data-dir", str(self.workdir / "etcd"),
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"default={peer_url}", "--unsafe-no-fsync", "--log-level", "warn",
        ], self._log("etcd"))

        def healthy() -> bool:
            self._check_alive("etcd")
            try:
                with urllib.request.urlopen(f"{client_url}/health", timeout=2) as response:
                    return json.load(response).get("health") == "true"
            except (OSError, ValueError):
                return False

        wait_until(healthy, timeout, "etcd /health", on_timeout=lambda: log_tail(self._log("etcd")))

    def _start_apiserver(self, timeout: float) -> None:
        pki = self.pki
        self.processes["kube-apiserver"] = start_process([
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1", f"--secure-port={self.apiserver_port}", "--advertise-address=127.0.0.1",
            f"--cert-dir={pki}", f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}", f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={pki / 'tokens.csv'}", "--authorization-mode=RBAC",
            f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Endpoints may not hold loopback addresses; nothing in-cluster needs the kubernetes Service.
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true", "--profiling=false", "--v=1",
        ], self._log("kube-apiserver"))

        def ready() -> bool:
            self._check_alive("kube-apiserver")
            return self.get("/readyz") is not None

        wait_until(ready, timeout, "kube-apiserver /readyz", interval=0.5,
                   on_timeout=lambda: log_tail(self._log("kube-apiserver")))

    def _start_controllers(self) -> None:
        pki = self.pki
        self.processes["kube-controller-manager"] = start_process([
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={self.workdir / 'controller-manager.kubeconfig'}",
            f"--authentication-kubeconfig={self.workdir / 'controller-manager.kubeconfig'}",
            f"--authorization-kubeconfig={self.workdir / 'controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1", f"--secure-port={free_port()}", f"--cert-dir={self.workdir / 'kcm-certs'}",
            "--leader-elect=false", "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
            # No cloud, no real nodes: keep the controllers that matter and skip node IPAM.
            "--controllers=*,-nodeipam,-service-lb-controller,-route", "--v=1",
        ], self._log("kube-controller-manager"))
        self.processes["kube-scheduler"] = start_process([
            str(self.bin_dir / "kube-scheduler"),
            f"--kubeconfig={self.workdir / 'scheduler.kubeconfig'}",
            f"--authentication-kubeconfig={self.workdir / 'scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={self.workdir / 'scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1", f"--secure-port={free_port()}", f"--cert-dir={self.workdir / 'sched-certs'}",
            "--leader-elect=false", "--v=1",
        ], self._log("kube-scheduler"))

    def _check_alive(self, name: str) -> None:
        process = self.processes.get(name)
        if process is not None and process.poll() is not None:
            raise ControlPlaneError(f"{name} exited with code {process.returncode}:\n{log_tail(self._log(name))}")

    def get(self, path: str) -> Any | None:
        """GET an apiserver path as admin; None on any error (used for polling)."""
        context = ssl.create_default_context(cafile=self.ca_file)
        request = urllib.request.Request(self.server + path, headers={"Authorization": f"Bearer {self.admin_token}"})
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as response:
                body = response.read()
        except (OSError, urllib.error.URLError):
            return None
        try:
            return json.loads(body)
        except ValueError:
            return body.decode()

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
                                input=input, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, result.args, result.stdout, result.stderr)
        return result

    def apply_crds(self, timeout: float = 60.0) -> None:
        from stemgen_api import contract
        from stemgen_api.crd import render_crd

        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=render_crd())
        self.kubectl("wait", "--for=condition=Established", f"crd/{contract.CRD_NAME}", f"--timeout={int(timeout)}s")

        def discovered() -> bool:
            resources = self.get(f"/apis/{contract.GROUP}/{contract.VERSION}") or {}
            return any(r.get("name") == contract.PLURAL for r in resources.get("resources", []))

        wait_until(discovered, timeout, "StemGeneration discovery")

    def _wait_for_default_service_account(self, timeout: float) -> None:
        def present() -> bool:
            self._check_alive("kube-controller-manager")
            return self.get("/api/v1/namespaces/default/serviceaccounts/default") is not None

        wait_until(present, timeout, "the default ServiceAccount (controller-manager running)",
                   on_timeout=lambda: log_tail(self._log("kube-controller-manager")))

    def stop(self) -> None:
        for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            stop_process(self.processes.pop(name, None))

    def state(self) -> dict[str, Any]:
        return {"workdir": str(self.workdir), "kubeconfig": self.kubeconfig, "server": self.server,
                "bin_dir": str(self.bin_dir), "pids": {n: p.pid for n, p in self.processes.items()}}


def start_control_plane(workdir: Path | None = None, install_crds: bool = True) -> ControlPlane:
    bin_dir = ensure_binaries()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="stemgen-cluster-"))
    return ControlPlane(workdir=workdir, bin_dir=bin_dir, install_crds=install_crds).start()


def stop_from_state(state: dict[str, Any], remove: bool = True) -> None:
    """Stop a control plane started by another process (the `stemgen-dev cluster down` path)."""
    for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
        pid = state.get("pids", {}).get(name)
        if pid:
            stop_pid(pid)
    if remove and state.get("workdir") and os.path.isdir(state["workdir"]):
        shutil.rmtree(state["workdir"], ignore_errors=True)


def wait_for_namespace_gone(control_plane: ControlPlane, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and control_plane.get(f"/api/v1/namespaces/{name}") is not None:
        time.sleep(0.5)
