"""Node and Lease manifests for the fake pools, and the parsing of their CLI settings.

The node lifecycle controller taints a Node `unreachable` (and later evicts its pods) when
neither its Ready condition's heartbeat nor its Lease in `kube-node-lease` moves for the
node-monitor grace period (50 s in 1.34). The agent therefore renews the Lease like a
kubelet does (every 10 s) and refreshes the Ready heartbeat now and then.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"
NODE_LEASE_NAMESPACE = "kube-node-lease"
AGENT_LABEL = "stemgen.io/node-agent"
"""Label on every Node the agent registers (value: the agent's node-name prefix), so tests can find them."""
LEASE_DURATION_SECONDS = 40


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str

    @classmethod
    def parse(cls, text: str) -> Taint:
        """`key=value:Effect` or `key:Effect` (kubectl's taint syntax)."""
        try:
            key_value, effect = text.rsplit(":", 1)
        except ValueError:
            raise ValueError(f"taint {text!r}: expected key=value:Effect") from None
        key, _, value = key_value.partition("=")
        if effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute") or not key:
            raise ValueError(f"taint {text!r}: effect must be NoSchedule, PreferNoSchedule or NoExecute")
        return cls(key=key, value=value, effect=effect)

    def to_dict(self) -> dict[str, str]:
        taint = {"key": self.key, "effect": self.effect}
        if self.value:
            taint["value"] = self.value
        return taint


def parse_labels(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`key=value` pairs (repeated CLI options) into a dict; the last one wins."""
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"label {item!r}: expected key=value")
        labels[key] = value
    return labels


@dataclass(frozen=True)
class PoolConfig:
    """One node pool: how many nodes, what they advertise, how pods must ask for them."""

    name: str
    count: int
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    cpu: str = "8"
    memory: str = "32Gi"
    pods: int = 110
    gpus: int = 0
    instance_type: str = ""


def gpu_pool(count: int, *, gpus_per_node: int = 1, pool_label_key: str = "kubernetes.azure.com/agentpool",
             pool_label_value: str = "gpu", taints: tuple[Taint, ...] = (Taint("sku", "gpu", "NoSchedule"),),
             extra_labels: dict[str, str] | None = None, cpu: str = "6", memory: str = "112Gi") -> PoolConfig:
    """The AKS GPU pool shape: NC-series labels, the `sku=gpu:NoSchedule` taint, `nvidia.com/gpu` capacity."""
    labels = {pool_label_key: pool_label_value, "kubernetes.azure.com/accelerator": "nvidia",
              "accelerator": "nvidia", **(extra_labels or {})}
    return PoolConfig(name="gpu", count=count, labels=labels, taints=taints, cpu=cpu, memory=memory,
                      gpus=gpus_per_node, instance_type="Standard_NC6s_v3")


def cpu_pool(count: int, *, pool_label_key: str = "kubernetes.azure.com/agentpool", pool_label_value: str = "cpu",
             taints: tuple[Taint, ...] = (), extra_labels: dict[str, str] | None = None, cpu: str = "8",
             memory: str = "32Gi") -> PoolConfig:
    labels = {pool_label_key: pool_label_value, **(extra_labels or {})}
    return PoolConfig(name="cpu", count=count, labels=labels, taints=taints, cpu=cpu, memory=memory,
                      instance_type="Standard_D8s_v5")


def node_names(prefix: str, pool: PoolConfig) -> list[str]:
    return [f"{prefix}-{pool.name}-{index}" for index in range(pool.count)]


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(moment: dt.datetime) -> str:
    """Kubernetes MicroTime (what Lease.spec.renewTime wants)."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ready_conditions(now: dt.datetime, transition: dt.datetime | None = None) -> list[dict[str, str]]:
    """The conditions a healthy kubelet reports; pressure conditions False so nothing taints the node."""
    heartbeat = rfc3339(now)
    since = rfc3339(transition or now)

    def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {"type": kind, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": heartbeat, "lastTransitionTime": since}

    return [
        condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "stemgen node agent"),
        condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "stemgen node agent"),
        condition("PIDPressure", "False", "KubeletHasSufficientPID", "stemgen node agent"),
        condition("Ready", "True", "KubeletReady", "stemgen node agent is posting ready status"),
    ]


def node_status(pool: PoolConfig, now: dt.datetime, address: str = "127.0.0.1",
                hostname: str = "") -> dict[str, Any]:
    resources = {"cpu": pool.cpu, "memory": pool.memory, "pods": str(pool.pods), "ephemeral-storage": "100Gi"}
    if pool.gpus:
        resources[GPU_RESOURCE] = str(pool.gpus)
    return {
        "capacity": dict(resources),
        "allocatable": dict(resources),
        "conditions": ready_conditions(now),
        "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": hostname}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": "stemgen-node-agent", "systemUUID": "stemgen-node-agent", "bootID": "stemgen-node-agent",
            "kernelVersion": "", "osImage": "stemgen node agent (local processes)", "containerRuntimeVersion":
            "stemgen-agent://1", "kubeletVersion": "v1.34.4", "kubeProxyVersion": "", "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


def build_node(name: str, pool: PoolConfig, agent_id: str, now: dt.datetime) -> dict[str, Any]:
    """A Node as a kubelet would register it (status included: the API server keeps it on create)."""
    labels = {
        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64", AGENT_LABEL: agent_id,
        **({"node.kubernetes.io/instance-type": pool.instance_type} if pool.instance_type else {}),
        **pool.labels,
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0", "stemgen.io/pool": pool.name}},
        "spec": {"taints": [taint.to_dict() for taint in pool.taints]},
        "status": node_status(pool, now, hostname=name),
    }


def build_lease(node_name: str, node_uid: str, now: dt.datetime) -> dict[str, Any]:
    """The node's heartbeat Lease, owned by the Node so it goes away with it."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node_name, "namespace": NODE_LEASE_NAMESPACE,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}],
        },
        "spec": {"holderIdentity": node_name, "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                 "renewTime": micro_time(now)},
    }
