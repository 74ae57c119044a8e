"""The node agent: a stand-in kubelet that runs scheduled pods as local processes.

Test and demo infrastructure, not product. It registers fake Nodes for a GPU pool and a CPU
pool, keeps them Ready, and for every pod the real kube-scheduler binds to one of them it
runs the first container's command locally with the pod's env, credentials and volumes,
reporting status back so the real Job controller finishes the Job.

    python -m stemgen_dev.node_agent --kubeconfig KUBECONFIG --gpu-nodes 1 --cpu-nodes 1 \\
        --volume-root .stemgen/volumes

Differences from a real node, on purpose: no images (a configured map gives an image's
entrypoint), no mounts (paths under a mount point are rewritten to local directories), no
cgroups (memory limits are enforced by sampling RSS), every pod's IP is 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from kubernetes.utils import parse_quantity

from .agent import nodes as node_manifests
from .agent.credentials import cluster_entry
from .agent.heartbeat import NodeKeeper
from .agent.process import utc_now
from .agent.provisioner import VolumeProvisioner
from .agent.status import ContainerReport, Termination, pod_status_patch
from .agent.worker import PodWorker, WorkerSettings

log = logging.getLogger("stemgen_dev.node_agent")

DEFAULT_IMAGE_ENTRYPOINTS = {"stemgen-runner": ["stemgen-runner"], "stemgen/runner": ["stemgen-runner"]}
DEFAULT_PASS_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "CUDA_VISIBLE_DEVICES", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
WATCH_TIMEOUT_SECONDS = 60


@dataclass
class AgentConfig:
    kubeconfig: Path
    pools: list[node_manifests.PoolConfig]
    volume_root: Path
    work_root: Path
    prefix: str = "stemgen-agent"
    claim_dirs: dict[str, Path] = field(default_factory=dict)
    image_entrypoints: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_IMAGE_ENTRYPOINTS))
    pass_env: tuple[str, ...] = DEFAULT_PASS_ENV
    extra_env: dict[str, str] = field(default_factory=dict)
    gpu_env: dict[str, str] = field(default_factory=dict)
    use_pod_tokens: bool = True
    keep_pod_dirs: bool = False
    delete_nodes_on_stop: bool = True
    provision_volumes: bool = True
    poll_interval: float = 0.2


def _search_path(pass_path: str) -> list[str]:
    """The agent's own interpreter directory first, so `python` and `stemgen-runner` mean this venv."""
    return [os.path.dirname(sys.executable), *[part for part in pass_path.split(os.pathsep) if part]]


class NodeAgent:
    """Registers the nodes, watches pods bound to them and runs each in a PodWorker thread."""

    def __init__(self, agent_config: AgentConfig, api_client: client.ApiClient | None = None) -> None:
        self.config = agent_config
        if api_client is None:
            configuration = client.Configuration()
            config.load_kube_config(config_file=str(agent_config.kubeconfig), client_configuration=configuration)
            configuration.connection_pool_maxsize = 32
            api_client = client.ApiClient(configuration)
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.keeper = NodeKeeper(api_client, agent_config.pools, agent_config.prefix)
        self.provisioner = VolumeProvisioner(api_client, self._claim_path) if agent_config.provision_volumes else None
        self.workers: dict[str, PodWorker] = {}
        self.finalized: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        self._watch_thread: threading.Thread | None = None
        self.ready = threading.Event()
        pass_path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
        base_env = {name: os.environ[name] for name in agent_config.pass_env if name in os.environ}
        search_path = _search_path(pass_path)
        base_env["PATH"] = os.pathsep.join(search_path)
        base_env.setdefault("LANG", "C.UTF-8")
        base_env.update(agent_config.extra_env)
        largest = max(agent_config.pools, key=lambda pool: parse_quantity(pool.memory), default=None)
        self.worker_settings = WorkerSettings(
            work_root=agent_config.work_root, volume_root=agent_config.volume_root,
            admin_kubeconfig=agent_config.kubeconfig, cluster=cluster_entry(agent_config.kubeconfig),
            claim_dirs=dict(agent_config.claim_dirs), image_entrypoints=dict(agent_config.image_entrypoints),
            base_env=base_env, gpu_env=dict(agent_config.gpu_env), search_path=search_path,
            use_pod_tokens=agent_config.use_pod_tokens, keep_pod_dirs=agent_config.keep_pod_dirs,
            poll_interval=agent_config.poll_interval,
            allocatable={"cpu": largest.cpu, "memory": largest.memory} if largest else {},
        )

    @property
    def node_names(self) -> set[str]:
        return self.keeper.names

    def _claim_path(self, claim_name: str) -> Path:
        return self.config.claim_dirs.get(claim_name) or self.config.volume_root / claim_name

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> NodeAgent:
        self.config.volume_root.mkdir(parents=True, exist_ok=True)
        self.config.work_root.mkdir(parents=True, exist_ok=True)
        self.keeper.register()
        self.keeper.start()
        if self.provisioner is not None:
            self.provisioner.start()
        self.keeper.wait_schedulable()
        self._watch_thread = threading.Thread(target=self._watch_loop, name="pod-watch", daemon=True)
        self._watch_thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Kill every pod's processes, stop watching, and (by default) deregister the nodes."""
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        with self._lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.request_stop(0.0, gone=True)
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(timeout=max(0.1, deadline - time.monotonic()))
        if self.provisioner is not None:
            self.provisioner.stop()
        self.keeper.stop(delete_nodes=self.config.delete_nodes_on_stop)

    def __enter__(self) -> NodeAgent:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def wait_ready(self, timeout: float = 30.0) -> bool:
        return self.ready.wait(timeout)

    # --- watching pods -----------------------------------------------------------------------

    def _watch_loop(self) -> None:
        """List, then watch from the list's resourceVersion; relist on 410 Gone or any error."""
        while not self._stop.is_set():
            try:
                pods = self.core.list_pod_for_all_namespaces(field_selector="spec.nodeName!=")
                for pod in pods.items:
                    self.handle_event("ADDED", self.api_client.sanitize_for_serialization(pod))
                self.ready.set()
                resource_version = pods.metadata.resource_version
                while not self._stop.is_set():
                    self._watch = watch.Watch()
                    for event in self._watch.stream(self.core.list_pod_for_all_namespaces,
                                                    field_selector="spec.nodeName!=",
                                                    resource_version=resource_version,
                                                    timeout_seconds=WATCH_TIMEOUT_SECONDS,
                                                    allow_watch_bookmarks=True):
                        kind = event["type"]
                        if kind == "ERROR":
                            raise ApiException(status=(event.get("raw_object") or {}).get("code", 500),
                                               reason="watch error")
                        obj = event["object"]
                        if kind == "BOOKMARK":
                            resource_version = (obj.get("metadata") or {}).get("resourceVersion", resource_version) \
                                if isinstance(obj, dict) else obj.metadata.resource_version
                            continue
                        pod = self.api_client.sanitize_for_serialization(obj)
                        resource_version = pod["metadata"].get("resourceVersion", resource_version)
                        self.handle_event(kind, pod)
            except ApiException as error:
                if self._stop.is_set():
                    return
                if error.status != 410:
                    log.warning("pod watch failed (%s %s); relisting", error.status, error.reason)
                    self._stop.wait(1.0)
            except Exception as error:
                if self._stop.is_set():
                    return
                log.warning("pod watch broke (%s); relisting", error)
                self._stop.wait(1.0)

    def handle_event(self, kind: str, pod: Mapping[str, Any]) -> None:
        """Decide what a pod event means for this node: start, stop, or finalize a deletion."""
        spec = pod.get("spec") or {}
        if spec.get("nodeName") not in self.node_names or self._stop.is_set():
            return
        metadata = pod["metadata"]
        uid = metadata["uid"]
        phase = (pod.get("status") or {}).get("phase", "Pending")
        with self._lock:
            worker = self.workers.get(uid)
            if kind == "DELETED":
                if worker is not None:
                    worker.request_stop(0.0, gone=True)
                self.workers.pop(uid, None)
                self.finalized.discard(uid)
                return
            if metadata.get("deletionTimestamp"):
                if worker is not None and worker.is_alive():
                    worker.request_stop(float(metadata.get("deletionGracePeriodSeconds") or 0))
                elif uid not in self.finalized:
                    self.finalized.add(uid)
                    threading.Thread(target=self._finalize, args=(metadata["namespace"], metadata["name"], uid),
                                     daemon=True).start()
                return
            if worker is not None or phase in ("Succeeded", "Failed"):
                return
            if phase == "Running":
                # Bound to us and running, yet no process of ours: an earlier agent ran it and is gone.
                threading.Thread(target=self._mark_lost, args=(pod,), daemon=True).start()
                self.workers[uid] = _DoneMarker(uid)  # type: ignore[assignment]
                return
            worker = PodWorker(pod, self.core, self.worker_settings)
            self.workers[uid] = worker
        log.info("pod %s/%s bound to %s: starting", metadata["namespace"], metadata["name"], spec["nodeName"])
        worker.start()

    def _finalize(self, namespace: str, name: str, uid: str) -> None:
        try:
            self.core.delete_namespaced_pod(name, namespace, body=client.V1DeleteOptions(
                grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)))
        except ApiException as error:
            if error.status not in (404, 409):
                log.warning("finalizing deletion of pod %s/%s failed: %s", namespace, name, error.reason)

    def _mark_lost(self, pod: Mapping[str, Any]) -> None:
        metadata = pod["metadata"]
        containers = (pod.get("spec") or {}).get("containers") or []
        now = utc_now()
        reports = [ContainerReport(name=c["name"], image=c.get("image", ""), terminated=Termination(
            exit_code=137, reason="ContainerStatusUnknown", message="The node agent restarted and lost this container",
            started_at=now, finished_at=now)) for c in containers[:1]]
        try:
            self.core.patch_namespaced_pod_status(metadata["name"], metadata["namespace"], pod_status_patch(
                reports, ip="127.0.0.1", start_time=now, now=now, phase="Failed"))
        except ApiException as error:
            log.warning("could not mark lost pod %s/%s failed: %s", metadata["namespace"], metadata["name"],
                        error.reason)


class _DoneMarker:
    """Stands in the worker table for a pod the agent will not run (so later events are ignored)."""

    def __init__(self, uid: str) -> None:
        self.uid = uid

    def is_alive(self) -> bool:
        return False

    def request_stop(self, *_: Any, **__: Any) -> None:
        return None


# --- command line ------------------------------------------------------------------------------


def _pairs(items: Iterable[str], what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint=what)
        result[key] = value
    return result


def build_config(*, kubeconfig: str, gpu_nodes: int = 1, cpu_nodes: int = 1, volume_root: str = ".stemgen/volumes",
                 work_root: str | None = None, prefix: str = "stemgen-agent", gpus_per_node: int = 1,
                 pool_label_key: str = "kubernetes.azure.com/agentpool", gpu_pool_label: str = "gpu",
                 cpu_pool_label: str = "cpu", gpu_taints: Sequence[str] = ("sku=gpu:NoSchedule",),
                 gpu_labels: Sequence[str] = (), cpu_taints: Sequence[str] = (), cpu_labels: Sequence[str] = (),
                 claims: Sequence[str] = (), entrypoints: Sequence[str] = (), env: Sequence[str] = (),
                 gpu_env: Sequence[str] = (), admin_credentials: bool = False, keep_pod_dirs: bool = False,
                 keep_nodes: bool = False, gpu_memory: str = "112Gi", cpu_memory: str = "32Gi") -> AgentConfig:
    """CLI options → AgentConfig (also used by the demo and the tests, so both mean the same thing)."""
    pools = []
    if gpu_nodes:
        pools.append(node_manifests.gpu_pool(
            gpu_nodes, gpus_per_node=gpus_per_node, pool_label_key=pool_label_key, pool_label_value=gpu_pool_label,
            taints=tuple(node_manifests.Taint.parse(t) for t in gpu_taints),
            extra_labels=node_manifests.parse_labels(list(gpu_labels)), memory=gpu_memory))
    if cpu_nodes:
        pools.append(node_manifests.cpu_pool(
            cpu_nodes, pool_label_key=pool_label_key, pool_label_value=cpu_pool_label,
            taints=tuple(node_manifests.Taint.parse(t) for t in cpu_taints),
            extra_labels=node_manifests.parse_labels(list(cpu_labels)), memory=cpu_memory))
    entrypoint_map = dict(DEFAULT_IMAGE_ENTRYPOINTS)
    entrypoint_map.update({pattern: shlex.split(command) for pattern, command in _pairs(entrypoints,
                                                                                         "--image-entrypoint").items()})
    volumes = Path(volume_root).resolve()
    return AgentConfig(
        kubeconfig=Path(kubeconfig).resolve(), pools=pools, volume_root=volumes,
        work_root=Path(work_root).resolve() if work_root else Path(tempfile.mkdtemp(prefix="stemgen-agent-")),
        prefix=prefix, claim_dirs={claim: Path(path).resolve() for claim, path in _pairs(claims, "--claim").items()},
        image_entrypoints=entrypoint_map, extra_env=_pairs(env, "--env"), gpu_env=_pairs(gpu_env, "--gpu-env"),
        use_pod_tokens=not admin_credentials, keep_pod_dirs=keep_pod_dirs, delete_nodes_on_stop=not keep_nodes,
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--kubeconfig", envvar="KUBECONFIG", required=True, help="Admin kubeconfig of the cluster.")
@click.option("--gpu-nodes", type=int, default=1, help="Nodes in the GPU pool.")
@click.option("--cpu-nodes", type=int, default=1, help="Nodes in the CPU pool.")
@click.option("--gpus-per-node", type=int, default=1, help="nvidia.com/gpu capacity of each GPU node.")
@click.option("--volume-root", default=".stemgen/volumes", help="PVC claim NAME is the directory VOLUME_ROOT/NAME.")
@click.option("--work-root", default=None, help="Per-pod directories (logs, emptyDirs); default: a temp dir.")
@click.option("--prefix", default="stemgen-agent", help="Node names are PREFIX-<pool>-<index>.")
@click.option("--pool-label-key", default="kubernetes.azure.com/agentpool", help="Label naming a node's pool.")
@click.option("--gpu-pool-label", default="gpu", help="Value of the pool label on GPU nodes.")
@click.option("--cpu-pool-label", default="cpu", help="Value of the pool label on CPU nodes.")
@click.option("--gpu-taint", "gpu_taints", multiple=True, default=["sku=gpu:NoSchedule"],
              help="Taint on GPU nodes (key=value:Effect; repeat). Pass '' for none.")
@click.option("--gpu-label", "gpu_labels", multiple=True, help="Extra GPU node label key=value (repeat).")
@click.option("--cpu-taint", "cpu_taints", multiple=True, help="Taint on CPU nodes (repeat).")
@click.option("--cpu-label", "cpu_labels", multiple=True, help="Extra CPU node label key=value (repeat).")
@click.option("--claim", "claims", multiple=True, help="Map PVC CLAIM=DIR instead of VOLUME_ROOT/CLAIM (repeat).")
@click.option("--image-entrypoint", "entrypoints", multiple=True,
              help="IMAGE_SUBSTRING='command args' for containers without a command (repeat).")
@click.option("--env", "env", multiple=True, help="Extra env KEY=VALUE for every pod process (repeat).")
@click.option("--gpu-env", "gpu_env", multiple=True, help="Extra env KEY=VALUE for pods requesting GPUs (repeat).")
@click.option("--admin-credentials", is_flag=True, help="Give pods the admin kubeconfig instead of their own token.")
@click.option("--keep-pod-dirs", is_flag=True, help="Keep each pod's emptyDirs and kubeconfig after it ends.")
@click.option("--keep-nodes", is_flag=True, help="Leave the Nodes registered on exit.")
@click.option("--log-level", default="INFO")
def cli(kubeconfig: str, gpu_nodes: int, cpu_nodes: int, gpus_per_node: int, volume_root: str, work_root: str | None,
        prefix: str, pool_label_key: str, gpu_pool_label: str, cpu_pool_label: str, gpu_taints: tuple[str, ...],
        gpu_labels: tuple[str, ...], cpu_taints: tuple[str, ...], cpu_labels: tuple[str, ...],
        claims: tuple[str, ...], entrypoints: tuple[str, ...], env: tuple[str, ...], gpu_env: tuple[str, ...],
        admin_credentials: bool, keep_pod_dirs: bool, keep_nodes: bool, log_level: str) -> None:
    """Play the kubelet for fake GPU and CPU nodes, running their pods as local processes."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        agent_config = build_config(
            kubeconfig=kubeconfig, gpu_nodes=gpu_nodes, cpu_nodes=cpu_nodes, volume_root=volume_root,
            work_root=work_root, prefix=prefix, gpus_per_node=gpus_per_node, pool_label_key=pool_label_key,
            gpu_pool_label=gpu_pool_label, cpu_pool_label=cpu_pool_label,
            gpu_taints=[t for t in gpu_taints if t], gpu_labels=gpu_labels, cpu_taints=[t for t in cpu_taints if t],
            cpu_labels=cpu_labels, claims=claims, entrypoints=entrypoints, env=env, gpu_env=gpu_env,
            admin_credentials=admin_credentials, keep_pod_dirs=keep_pod_dirs, keep_nodes=keep_nodes)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    agent = NodeAgent(agent_config)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    agent.start()
    log.info("node agent up: nodes %s, pod dirs under %s", ", ".join(sorted(agent.node_names)),
             agent_config.work_root)
    stopping.wait()
    log.info("node agent stopping")
    agent.stop()


if __name__ == "__main__":
    cli()
