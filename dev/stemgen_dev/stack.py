"""The whole local stack around a control plane: namespace setup, the operator process, requests.

Shared by the end-to-end tests and the demo so both run the system the same way: the runner's
RBAC comes from the generated manifests (the chart's own objects), the operator is the
`stemgen-operator` console script in its own process (so a test can kill and restart it), and
the model cache PVC holds the tiny checkpoint the runner loads by name.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, utils
from kubernetes.client.rest import ApiException

from stemgen_api import contract as c

from .procs import REPO_ROOT, log_tail, start_process, stop_process

MANIFESTS = REPO_ROOT / "manifests" / "stemgen.yaml"
MODEL_CACHE_CLAIM = "stemgen-model-cache"
STORAGE_SECRET = "stemgen-storage"
STORAGE_SECRET_KEY = "connection-string"
CALLBACK_SECRET = "stemgen-callback"
CALLBACK_SECRET_KEY = "secret"
TINY_MODEL = "tiny"
"""Name of the tiny checkpoint's directory on the model cache PVC; `spec.model: tiny` finds it there."""
POOL_LABEL = "kubernetes.azure.com/agentpool"
GPU_TOLERATION = {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}


def runner_rbac(namespace: str) -> list[dict[str, Any]]:
    """The runner's ServiceAccount, Role and RoleBinding exactly as the chart renders them."""
    objects = []
    for document in yaml.safe_load_all(MANIFESTS.read_text()):
        if not document or document.get("kind") not in ("ServiceAccount", "Role", "RoleBinding"):
            continue
        labels = (document.get("metadata") or {}).get("labels") or {}
        if labels.get(c.LABEL_COMPONENT) != c.COMPONENT_RUNNER:
            continue
        item = copy.deepcopy(document)
        item["metadata"]["namespace"] = namespace
        for subject in item.get("subjects") or []:
            subject["namespace"] = namespace
        objects.append(item)
    if not objects:
        raise RuntimeError(f"{MANIFESTS} holds no runner ServiceAccount/Role/RoleBinding")
    return objects


def _create(api_client: client.ApiClient, body: Mapping[str, Any]) -> None:
    try:
        utils.create_from_dict(api_client, dict(body))
    except utils.FailToCreateError as error:
        if not all(getattr(cause, "status", None) == 409 for cause in error.api_exceptions):
            raise


def prepare_namespace(api_client: client.ApiClient, namespace: str, *, storage_connection_string: str,
                      callback_secret: str | None = None, create_namespace: bool = False) -> None:
    """Everything a request needs in its namespace before the operator sees it."""
    core = client.CoreV1Api(api_client)
    if create_namespace:
        try:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        except ApiException as error:
            if error.status != 409:
                raise
    for item in runner_rbac(namespace):
        _create(api_client, item)
    secrets = {STORAGE_SECRET: {STORAGE_SECRET_KEY: storage_connection_string}}
    if callback_secret:
        secrets[CALLBACK_SECRET] = {CALLBACK_SECRET_KEY: callback_secret}
    for name, data in secrets.items():
        _create(api_client, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
                             "type": "Opaque", "data": {k: base64.b64encode(v.encode()).decode()
                                                        for k, v in data.items()}})
    _create(api_client, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": MODEL_CACHE_CLAIM, "namespace": namespace},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    })


def install_tiny_model(volume_root: Path) -> Path:
    """Write the tiny random-weight checkpoint where the model cache claim maps (once)."""
    from .tiny_model import write_checkpoint

    target = volume_root / MODEL_CACHE_CLAIM / TINY_MODEL
    if not (target / "state_dict.bin").exists():
        write_checkpoint(target, "tiny")
    return target


def pool_settings(limit: int, pool: c.Pool) -> dict[str, Any]:
    """Operator pool settings that match the node agent's fake pools (small requests: it is a laptop)."""
    settings: dict[str, Any] = {"limit": limit, "nodeSelector": {POOL_LABEL: pool.value},
                                "resources": {"requests": {"cpu": "500m", "memory": "512Mi"},
                                              "limits": {"memory": "3Gi"}}}
    if pool is c.Pool.GPU:
        settings["tolerations"] = [GPU_TOLERATION]
    return settings


@dataclass
class OperatorProcess:
    """`stemgen-operator -n NAMESPACE` as a child process, configured through its environment."""

    kubeconfig: str
    namespaces: list[str]
    log_path: Path
    gpu_limit: int = 2
    cpu_limit: int = 2
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def environment(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("STEMGEN_OPERATOR_")}
        env.update({
            "STEMGEN_OPERATOR_KUBECONFIG": self.kubeconfig,
            "STEMGEN_OPERATOR_NAMESPACES": ",".join(self.namespaces),
            "STEMGEN_OPERATOR_GPU_POOL": json.dumps(pool_settings(self.gpu_limit, c.Pool.GPU)),
            "STEMGEN_OPERATOR_CPU_POOL": json.dumps(pool_settings(self.cpu_limit, c.Pool.CPU)),
            "STEMGEN_OPERATOR_CALLBACK_ALLOW_PRIVATE": "true",
            "STEMGEN_OPERATOR_CALLBACK_INITIAL_DELAY": "0.5",
            "STEMGEN_OPERATOR_METRICS_PORT": "0",
            "STEMGEN_OPERATOR_LIVENESS_PORT": "0",
            "STEMGEN_OPERATOR_LOG_FORMAT": "plain",
            "STEMGEN_OPERATOR_RESYNC_SECONDS": "5",
            "STEMGEN_OPERATOR_JOB_TTL_SECONDS_AFTER_FINISHED": "600",
            "STEMGEN_OPERATOR_RUNNER_ENV": json.dumps({"STEMGEN_CALLBACK_INITIAL_DELAY": "0.5",
                                                       "STEMGEN_LOG_FORMAT": "plain"}),
        })
        env.update(self.extra_env)
        return env

    def start(self) -> OperatorProcess:
        executable = Path(sys.executable).parent / "stemgen-operator"
        self.process = start_process([str(executable)], self.log_path, env=self.environment(), cwd=REPO_ROOT)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, no goodbye: what a node failure does to the operator."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        stop_process(self.process)

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)


# --- requests ----------------------------------------------------------------------------------


def request_manifest(name: str, *, stems: Iterable[str] = ("drums", "bass"), device: str = "auto",
                     duration: float = 1.0, callback_url: str | None = None, **spec: Any) -> dict[str, Any]:
    """A StemGeneration for the tiny model (1 s of audio unless told otherwise)."""
    body: dict[str, Any] = {"stems": list(stems), "model": TINY_MODEL, "device": device,
                            "durationSeconds": duration, "prompt": "lo-fi groove", "bpm": 90, "key": "E minor",
                            "generation": {"seed": 7}, **spec}
    if callback_url:
        body["callback"] = {"url": callback_url, "secretRef": {"name": CALLBACK_SECRET, "key": CALLBACK_SECRET_KEY}}
    return {"apiVersion": c.API_VERSION, "kind": c.KIND, "metadata": {"name": name}, "spec": body}


class Requests:
    """StemGeneration reads and writes for one namespace."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api_client)

    def create(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        return self.custom.create_namespaced_custom_object(c.GROUP, c.VERSION, self.namespace, c.PLURAL,
                                                           dict(manifest))

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(c.GROUP, c.VERSION, self.namespace, c.PLURAL, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def status(self, name: str) -> dict[str, Any]:
        return (self.get(name) or {}).get("status") or {}

    def patch_spec(self, name: str, spec: Mapping[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(c.GROUP, c.VERSION, self.namespace, c.PLURAL, name,
                                                   {"spec": dict(spec)})

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(c.GROUP, c.VERSION, self.namespace, c.PLURAL, name)

    def wait_terminal(self, name: str, timeout: float,
                      on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll until the phase is terminal; `on_progress` sees every status (the demo's display)."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status(name)
            if on_progress is not None:
                on_progress(status)
            if status.get("phase") in {phase.value for phase in c.TERMINAL_PHASES}:
                return status
            time.sleep(0.5)
        raise TimeoutError(f"{self.namespace}/{name} not terminal after {timeout:.0f}s; last status: "
                           f"{json.dumps(status)[:2000]}")
