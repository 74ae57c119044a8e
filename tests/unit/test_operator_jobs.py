"""The pure Job builder: resource + pool + settings → Job manifest."""

from __future__ import annotations

import re

import pytest

from stemgen_api import contract as c
from stemgen_operator import jobs
from stemgen_operator.settings import OperatorSettings, PoolSettings, Resources
from stemgen_operator.testing import request_body

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def settings(**overrides) -> OperatorSettings:
    base = dict(
        gpu_pool=PoolSettings(limit=2, node_selector={"agentpool": "gpu"}, tolerations=[GPU_TOLERATION],
                              resources=Resources(requests={"cpu": "4", "memory": "16Gi"},
                                                  limits={"memory": "24Gi"})),
        cpu_pool=PoolSettings(limit=3, node_selector={"agentpool": "cpu"},
                              resources=Resources(requests={"cpu": "2"}, limits={"memory": "8Gi"})),
        runner_image="registry.example/stemgen-runner:1.2.3",
        model_cache_pvc="models",
        storage_secret_name="blob",
        storage_secret_key="conn",
        metrics_port=0,
        liveness_port=0,
    )
    base.update(overrides)
    return OperatorSettings(**base)


def container(job: dict) -> dict:
    [only] = job["spec"]["template"]["spec"]["containers"]
    return only


def env(job: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container(job)["env"]}


def test_job_name_is_deterministic_bounded_and_uid_specific():
    name = jobs.job_name("song", "uid-1")
    assert name == jobs.job_name("song", "uid-1")
    assert name != jobs.job_name("song", "uid-2"), "a re-created namesake must not adopt the old Job"
    assert re.fullmatch(r"sg-song-[0-9a-f]{8}", name)
    long_name = jobs.job_name("a" * 253, "uid-1")
    assert len(long_name) <= 63
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", long_name)
    assert jobs.job_name("My.Song.v2", "u") .startswith("sg-my-song-v2-")


def test_gpu_job_has_every_field():
    body = request_body(name="song", namespace="music", uid="uid-1", generation=3, requestId="req:42",
                        timeoutSeconds=600, retries=4,
                        callback={"url": "https://api.example/cb", "secretRef": {"name": "hook", "key": "k"}})
    job = jobs.build_job(body, c.Pool.GPU, settings())
    meta = job["metadata"]
    assert meta["name"] == jobs.job_name("song", "uid-1")
    assert meta["namespace"] == "music"
    assert meta["ownerReferences"] == [{"apiVersion": c.API_VERSION, "kind": c.KIND, "name": "song", "uid": "uid-1",
                                        "controller": True, "blockOwnerDeletion": True}]
    assert meta["labels"][c.LABEL_NAME] == "song"
    assert meta["labels"][c.LABEL_POOL] == "gpu"
    assert meta["labels"][c.LABEL_MANAGED_BY] == c.MANAGED_BY
    assert meta["labels"][c.LABEL_REQUEST_ID] == c.request_id_label_value("req:42")
    assert meta["annotations"][c.ANNOTATION_UID] == "uid-1"
    assert meta["annotations"][c.ANNOTATION_GENERATION] == "3"
    assert c.KUEUE_QUEUE_LABEL not in meta["labels"]

    spec = job["spec"]
    assert spec["backoffLimit"] == 4
    assert spec["activeDeadlineSeconds"] == 600
    assert spec["ttlSecondsAfterFinished"] == 3600
    assert "suspend" not in spec
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "FailJob", "onExitCodes": {
        "containerName": "runner", "operator": "In", "values": [int(c.ExitCode.PERMANENT_FAILURE)]}}
    assert rules[1]["action"] == "Ignore"

    pod = spec["template"]["spec"]
    assert spec["template"]["metadata"]["labels"][c.LABEL_NAME] == "song"
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "stemgen-runner"
    assert pod["nodeSelector"] == {"agentpool": "gpu"}
    assert pod["tolerations"] == [GPU_TOLERATION]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    runner = container(job)
    assert runner["image"] == "registry.example/stemgen-runner:1.2.3"
    assert runner["command"] == ["stemgen-runner", "run"]
    assert runner["resources"] == {"requests": {"cpu": "4", "memory": "16Gi"},
                                   "limits": {"memory": "24Gi", "nvidia.com/gpu": "1"}}
    hardened = runner["securityContext"]
    assert hardened["readOnlyRootFilesystem"] is True
    assert hardened["allowPrivilegeEscalation"] is False
    assert hardened["capabilities"] == {"drop": ["ALL"]}
    assert hardened["runAsNonRoot"] is True

    variables = env(job)
    assert variables[c.ENV_NAMESPACE]["value"] == "music"
    assert variables[c.ENV_NAME]["value"] == "song"
    assert variables[c.ENV_STORAGE_CONNECTION_STRING]["valueFrom"] == {"secretKeyRef": {"name": "blob", "key": "conn"}}
    assert variables[c.ENV_CALLBACK_SECRET]["valueFrom"] == {
        "secretKeyRef": {"name": "hook", "key": "k", "optional": True}}
    assert variables[c.ENV_MODEL_CACHE]["value"] == "/models"
    assert variables["HF_HOME"]["value"] == "/models/huggingface"
    assert variables["AUDIOCRAFT_CACHE_DIR"]["value"] == "/models/audiocraft"
    # Secrets travel only by reference, never by value.
    assert all("value" not in item for item in variables.values() if "valueFrom" in item)

    mounts = {m["name"]: m for m in runner["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["model-cache"]["mountPath"] == "/models"
    assert volumes["model-cache"]["persistentVolumeClaim"]["claimName"] == "models"
    assert mounts["tmp"]["mountPath"] == "/tmp"
    assert "emptyDir" in volumes["tmp"]


def test_cpu_job_never_asks_for_a_gpu():
    job = jobs.build_job(request_body(), c.Pool.CPU, settings())
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"agentpool": "cpu"}
    assert "tolerations" not in pod
    assert "nvidia.com/gpu" not in container(job)["resources"].get("limits", {})
    assert job["metadata"]["labels"][c.LABEL_POOL] == "cpu"


def test_defaults_fill_retries_and_timeout_when_absent():
    job = jobs.build_job(request_body(), c.Pool.CPU, settings())
    assert job["spec"]["backoffLimit"] == c.DEFAULT_RETRIES
    assert job["spec"]["activeDeadlineSeconds"] == c.DEFAULT_TIMEOUT_SECONDS


def test_kueue_job_is_suspended_and_labelled():
    job = jobs.build_job(request_body(queueName="team-a"), c.Pool.GPU, settings(), queue_name="team-a")
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"][c.KUEUE_QUEUE_LABEL] == "team-a"


def test_no_callback_secret_no_cache_and_workload_identity():
    custom = settings(model_cache_pvc=None, storage_secret_name=None,
                      storage_account_url="https://acct.blob.core.windows.net", workload_identity=True,
                      runner_command=["python", "-m", "stemgen_runner.main", "run"], runner_env={"LOG": "debug"})
    job = jobs.build_job(request_body(callback={"url": "https://x.example/cb"}), c.Pool.CPU, custom)
    variables = env(job)
    assert c.ENV_CALLBACK_SECRET not in variables
    assert c.ENV_STORAGE_CONNECTION_STRING not in variables
    assert variables[c.ENV_STORAGE_ACCOUNT_URL]["value"] == "https://acct.blob.core.windows.net"
    assert c.ENV_MODEL_CACHE not in variables
    assert variables["LOG"]["value"] == "debug"
    assert container(job)["command"] == ["python", "-m", "stemgen_runner.main", "run"]
    assert [v["name"] for v in job["spec"]["template"]["spec"]["volumes"]] == ["tmp"]
    assert job["spec"]["template"]["metadata"]["labels"][jobs.WORKLOAD_IDENTITY_LABEL] == "true"


def test_unconfigured_pool_is_refused():
    with pytest.raises(ValueError, match="gpu"):
        jobs.build_job(request_body(), c.Pool.GPU, settings(gpu_pool=None))


def test_owned_by_checks_the_uid():
    body = request_body(uid="uid-1")
    job = jobs.build_job(body, c.Pool.CPU, settings())
    assert jobs.owned_by(job, body)
    assert not jobs.owned_by(job, request_body(uid="uid-2"))
