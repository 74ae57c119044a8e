"""A stand-in volume provisioner: every pending PVC gets a PersistentVolume bound to it.

The scheduler refuses to place a pod whose PersistentVolumeClaim is unbound (with no
StorageClass in the cluster, binding is "Immediate"), and a bare control plane has no
provisioner. So the agent plays one: it creates a hostPath PV pre-bound (claimRef) to each
pending claim, pointing at the same local directory the pod worker maps the claim to, and
the real PV controller completes the binding.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger(__name__)

PROVISIONED_BY = "stemgen.io/node-agent"
POLL_SECONDS = 1.0


def persistent_volume_for(claim: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """A PV that satisfies `claim` exactly (size, access modes, class) and is reserved for it."""
    metadata = claim["metadata"]
    spec = claim.get("spec") or {}
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    volume: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"pvc-{metadata['uid']}", "annotations": {"pv.kubernetes.io/provisioned-by":
                                                                        PROVISIONED_BY}},
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": spec.get("storageClassName") or "",
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": metadata["namespace"],
                         "name": metadata["name"], "uid": metadata["uid"]},
        },
    }
    return volume


class VolumeProvisioner:
    def __init__(self, api_client: client.ApiClient, path_for_claim: Callable[[str], Path]) -> None:
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.path_for_claim = path_for_claim
        self.provisioned: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="volume-provisioner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.provision_pending()
            except Exception as error:  # retried on the next tick
                log.warning("volume provisioning pass failed: %s", error)
            self._stop.wait(POLL_SECONDS)

    def provision_pending(self) -> None:
        """Bind a volume to each new pending claim; drop our volumes whose claim is gone (Released)."""
        for claim in self.core.list_persistent_volume_claim_for_all_namespaces().items:
            uid = claim.metadata.uid
            if claim.spec.volume_name or (claim.status and claim.status.phase == "Bound") or uid in self.provisioned:
                continue
            body = self.api_client.sanitize_for_serialization(claim)
            path = self.path_for_claim(claim.metadata.name)
            path.mkdir(parents=True, exist_ok=True)
            try:
                self.core.create_persistent_volume(persistent_volume_for(body, path))
            except ApiException as error:
                if error.status != 409:
                    raise
            self.provisioned.add(uid)
            log.info("provisioned a volume for claim %s/%s at %s", claim.metadata.namespace, claim.metadata.name,
                     path)
        for volume in self.core.list_persistent_volume().items:
            annotations = volume.metadata.annotations or {}
            if annotations.get("pv.kubernetes.io/provisioned-by") == PROVISIONED_BY and volume.status \
                    and volume.status.phase == "Released":
                try:
                    self.core.delete_persistent_volume(volume.metadata.name)
                except ApiException as error:
                    if error.status != 404:
                        raise
