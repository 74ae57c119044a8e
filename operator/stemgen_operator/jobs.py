"""The runner Job, built as a pure function of the resource, its pool and the settings.

Nothing here talks to the cluster: the same inputs always give the same manifest, which is what
lets a restarted operator re-derive the Job name and adopt the Job it created before.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from stemgen_api import contract as c

from . import resource as r
from .settings import OperatorSettings

CONTAINER_NAME = "runner"
MODEL_CACHE_VOLUME = "model-cache"
TMP_VOLUME = "tmp"
TMP_PATH = "/tmp"
JOB_NAME_PREFIX = "sg-"
MAX_NAME = 63
"""Job names end up in the `job-name` pod label, whose values are capped at 63 characters."""
WORKLOAD_IDENTITY_LABEL = "azure.workload.identity/use"
ENV_HF_HOME = "HF_HOME"
ENV_AUDIOCRAFT_CACHE = "AUDIOCRAFT_CACHE_DIR"
ENV_CALLBACK_ALLOW_PRIVATE = "STEMGEN_CALLBACK_ALLOW_PRIVATE"


def job_name(name: str, uid: str) -> str:
    """`sg-<name>-<8 hex of sha256(uid)>`, at most 63 characters, DNS-1123 label safe.

    The uid hash keeps a deleted-and-recreated resource of the same name from adopting the
    old one's Job, and keeps truncated long names distinct.
    """
    digest = hashlib.sha256(uid.encode()).hexdigest()[:8]
    room = MAX_NAME - len(JOB_NAME_PREFIX) - 1 - len(digest)
    base = re.sub(r"[^a-z0-9-]", "-", name.lower())[:room].strip("-") or "request"
    return f"{JOB_NAME_PREFIX}{base}-{digest}"


def labels(body: r.Body, pool: c.Pool) -> dict[str, str]:
    """Labels on the Job and its pods; the operator's watches select on these."""
    ref = r.ref(body)
    return {
        c.LABEL_NAME: ref.name,
        c.LABEL_REQUEST_ID: c.request_id_label_value(r.request_id(body)),
        c.LABEL_POOL: pool.value,
        c.LABEL_COMPONENT: c.COMPONENT_RUNNER,
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        c.LABEL_PART_OF: c.PART_OF,
    }


def owner_reference(body: r.Body) -> dict[str, Any]:
    """controller=true makes deletion cascade; blockOwnerDeletion keeps foreground deletes honest."""
    ref = r.ref(body)
    return {"apiVersion": c.API_VERSION, "kind": c.KIND, "name": ref.name, "uid": ref.uid,
            "controller": True, "blockOwnerDeletion": True}


def _env(body: r.Body, settings: OperatorSettings) -> list[dict[str, Any]]:
    ref = r.ref(body)
    env: list[dict[str, Any]] = [
        {"name": c.ENV_NAMESPACE, "value": ref.namespace},
        {"name": c.ENV_NAME, "value": ref.name},
    ]
    if settings.storage_secret_name:
        env.append({"name": c.ENV_STORAGE_CONNECTION_STRING, "valueFrom": {"secretKeyRef": {
            "name": settings.storage_secret_name, "key": settings.storage_secret_key}}})
    if settings.storage_account_url:
        env.append({"name": c.ENV_STORAGE_ACCOUNT_URL, "value": settings.storage_account_url})
    secret_ref = r.callback_secret_ref(body)
    if secret_ref:
        # optional: a missing Secret must not wedge the pod in CreateContainerConfigError
        # (the request would hang until its deadline); the runner reports the problem instead.
        env.append({"name": c.ENV_CALLBACK_SECRET, "valueFrom": {"secretKeyRef": {
            "name": secret_ref[0], "key": secret_ref[1], "optional": True}}})
    if settings.model_cache_pvc:
        cache = settings.model_cache_mount_path.rstrip("/")
        env += [{"name": c.ENV_MODEL_CACHE, "value": cache},
                {"name": ENV_HF_HOME, "value": f"{cache}/huggingface"},
                {"name": ENV_AUDIOCRAFT_CACHE, "value": f"{cache}/audiocraft"}]
    if settings.callback_allow_private:
        env.append({"name": ENV_CALLBACK_ALLOW_PRIVATE, "value": "true"})
    env += [{"name": "HOME", "value": TMP_PATH}, {"name": "TMPDIR", "value": TMP_PATH},
            {"name": "PYTHONUNBUFFERED", "value": "1"}]
    env += [{"name": key, "value": value} for key, value in sorted(settings.runner_env.items())]
    return env


def _resources(pool: c.Pool, settings: OperatorSettings) -> dict[str, dict[str, str]]:
    pool_settings = settings.pool(pool)
    assert pool_settings is not None, f"pool {pool.value} is not configured"
    requests = dict(pool_settings.resources.requests)
    limits = dict(pool_settings.resources.limits)
    if pool is c.Pool.GPU:
        # Extended resources must be set as limits (requests default to them); never on CPU pods.
        limits[pool_settings.gpu_resource] = str(pool_settings.gpus)
        requests.pop(pool_settings.gpu_resource, None)
    result: dict[str, dict[str, str]] = {}
    if requests:
        result["requests"] = requests
    if limits:
        result["limits"] = limits
    return result


def _volumes(settings: OperatorSettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [{"name": TMP_VOLUME, "emptyDir": {"sizeLimit": settings.runner_tmp_size_limit}}]
    mounts: list[dict[str, Any]] = [{"name": TMP_VOLUME, "mountPath": TMP_PATH}]
    if settings.model_cache_pvc:
        volumes.append({"name": MODEL_CACHE_VOLUME, "persistentVolumeClaim": {
            "claimName": settings.model_cache_pvc, "readOnly": settings.model_cache_read_only}})
        mounts.append({"name": MODEL_CACHE_VOLUME, "mountPath": settings.model_cache_mount_path,
                       "readOnly": settings.model_cache_read_only})
    return volumes, mounts


def build_job(body: r.Body, pool: c.Pool, settings: OperatorSettings, queue_name: str | None = None) -> dict[str, Any]:
    """The Job manifest for one request.

    `queue_name` hands admission to Kueue: the Job is created suspended with Kueue's queue label,
    and Kueue unsuspends it when its ClusterQueue has quota.
    """
    ref = r.ref(body)
    spec = r.spec(body)
    pool_settings = settings.pool(pool)
    if pool_settings is None:
        raise ValueError(f"pool {pool.value!r} is not configured")
    pod_labels = labels(body, pool)
    if settings.workload_identity:
        pod_labels[WORKLOAD_IDENTITY_LABEL] = "true"
    job_labels = dict(pod_labels)
    if queue_name:
        job_labels[c.KUEUE_QUEUE_LABEL] = queue_name
    annotations = {c.ANNOTATION_UID: ref.uid, f"{c.GROUP}/request-id": r.request_id(body)}
    if r.generation(body) is not None:
        annotations[c.ANNOTATION_GENERATION] = str(r.generation(body))
    volumes, mounts = _volumes(settings)

    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": settings.runner_image,
        "imagePullPolicy": settings.runner_image_pull_policy,
        "command": list(settings.runner_command),
        "env": _env(body, settings),
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if settings.runner_args:
        container["args"] = list(settings.runner_args)
    resources = _resources(pool, settings)
    if resources:
        container["resources"] = resources

    pod_security: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": settings.runner_run_as_user,
        "runAsGroup": settings.runner_run_as_group,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if settings.runner_fs_group is not None:
        pod_security["fsGroup"] = settings.runner_fs_group

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",  # required by podFailurePolicy; retries are new pods (attempts)
        "serviceAccountName": settings.runner_service_account,
        "automountServiceAccountToken": True,  # the runner patches its own request's status
        "enableServiceLinks": False,
        "securityContext": pod_security,
        "containers": [container],
        "volumes": volumes,
    }
    if pool_settings.node_selector:
        pod_spec["nodeSelector"] = dict(pool_settings.node_selector)
    if pool_settings.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in pool_settings.tolerations]
    if pool_settings.priority_class_name:
        pod_spec["priorityClassName"] = pool_settings.priority_class_name
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]

    job_spec: dict[str, Any] = {
        "backoffLimit": int(spec.get("retries", c.DEFAULT_RETRIES)),
        "activeDeadlineSeconds": int(spec.get("timeoutSeconds", c.DEFAULT_TIMEOUT_SECONDS)),
        "completions": 1,
        "parallelism": 1,
        "podFailurePolicy": {"rules": [
            # Bad input or a missing model: another attempt would fail the same way.
            {"action": "FailJob", "onExitCodes": {"containerName": CONTAINER_NAME, "operator": "In",
                                                  "values": [int(c.ExitCode.PERMANENT_FAILURE)]}},
            # Preemption, node drain, eviction for disruption: not the request's fault, don't count it.
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]},
        "template": {"metadata": {"labels": pod_labels, "annotations": dict(annotations)}, "spec": pod_spec},
    }
    if settings.job_ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = settings.job_ttl_seconds_after_finished
    if queue_name:
        job_spec["suspend"] = True

    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(ref.name, ref.uid),
            "namespace": ref.namespace,
            "labels": job_labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(body)],
        },
        "spec": job_spec,
    }


def owned_by(job: r.Body, body: r.Body) -> bool:
    """Whether `job` was made for this very resource (not for an older one of the same name)."""
    uid = r.ref(body).uid
    meta = job.get("metadata") or {}
    if (meta.get("annotations") or {}).get(c.ANNOTATION_UID) == uid:
        return True
    return any(owner.get("uid") == uid for owner in meta.get("ownerReferences") or [])
