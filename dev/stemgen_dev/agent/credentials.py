"""Credentials for a pod's process: a kubeconfig carrying its ServiceAccount's own token.

A kubelet mounts a bound service-account token; we ask the API server for the same kind of
token (TokenRequest, bound to the Pod so it dies with it) and hand it over as a kubeconfig,
because the in-cluster loader reads fixed paths a local process cannot have. The runner's
RBAC is therefore exercised for real. When the API server cannot issue tokens (no signing
key configured) the agent falls back to its own admin kubeconfig and says so in its log.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

log = logging.getLogger(__name__)

TOKEN_EXPIRATION_SECONDS = 6 * 3600


@dataclass(frozen=True)
class ClusterEntry:
    """The admin kubeconfig's cluster: where the API server is and how to trust it."""

    server: str
    ca_data: str = ""
    insecure: bool = False

    @property
    def ca_pem(self) -> str:
        return base64.b64decode(self.ca_data).decode() if self.ca_data else ""


def cluster_entry(kubeconfig_path: Path) -> ClusterEntry:
    """Read the current context's cluster, inlining a CA file so the copy works from any directory."""
    config = yaml.safe_load(kubeconfig_path.read_text())
    context_name = config.get("current-context")
    contexts = {item["name"]: item["context"] for item in config.get("contexts") or []}
    clusters = {item["name"]: item["cluster"] for item in config.get("clusters") or []}
    context = contexts.get(context_name) or next(iter(contexts.values()), None)
    if context is None:
        raise ValueError(f"{kubeconfig_path}: no context")
    cluster = clusters[context["cluster"]]
    ca_data = cluster.get("certificate-authority-data", "")
    if not ca_data and cluster.get("certificate-authority"):
        ca_path = Path(cluster["certificate-authority"])
        if not ca_path.is_absolute():
            ca_path = kubeconfig_path.parent / ca_path
        ca_data = base64.b64encode(ca_path.read_bytes()).decode()
    return ClusterEntry(server=cluster["server"], ca_data=ca_data,
                        insecure=bool(cluster.get("insecure-skip-tls-verify")))


def token_kubeconfig(cluster: ClusterEntry, token: str, namespace: str, user: str) -> dict[str, Any]:
    """A kubeconfig for one identity whose default namespace is the pod's."""
    cluster_dict: dict[str, Any] = {"server": cluster.server}
    if cluster.ca_data:
        cluster_dict["certificate-authority-data"] = cluster.ca_data
    if cluster.insecure:
        cluster_dict["insecure-skip-tls-verify"] = True
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "stemgen", "cluster": cluster_dict}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "pod", "context": {"cluster": "stemgen", "user": user, "namespace": namespace}}],
        "current-context": "pod",
    }


def request_pod_token(core: client.CoreV1Api, pod: Mapping[str, Any],
                      expiration_seconds: int = TOKEN_EXPIRATION_SECONDS) -> str:
    """A token for the pod's ServiceAccount, bound to the pod (invalid once the pod is gone)."""
    metadata = pod["metadata"]
    service_account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
    body = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(
            audiences=[],
            expiration_seconds=expiration_seconds,
            bound_object_ref=client.V1BoundObjectReference(api_version="v1", kind="Pod", name=metadata["name"],
                                                           uid=metadata["uid"]),
        )
    )
    response = core.create_namespaced_service_account_token(service_account, metadata["namespace"], body)
    return response.status.token


def write_kubeconfig(path: Path, config: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    path.chmod(0o600)
    return path
