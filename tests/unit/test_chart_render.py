"""The Helm chart renders what the operator, the runner and AKS expect, with every values file.

Needs only the helm binary (no cluster): `helm lint` and `helm template`, then assertions on the
rendered objects. The operator's own settings loader reads the rendered ConfigMap, so a key the
chart renders and the operator does not understand (or vice versa) fails here, not on a cluster.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from stemgen_api import contract as c
from stemgen_dev import manifests as m

CI_VALUES = sorted((m.CHART_DIR / "ci").glob("*-values.yaml"))
VALUES_IDS = ["default"] + [p.name.removesuffix("-values.yaml") for p in CI_VALUES]
VALUES_FILES: list[tuple[Path, ...]] = [(), *((p,) for p in CI_VALUES)]


@pytest.fixture(scope="module")
def helm() -> Path:
    return m.find_helm()


def render(helm: Path, values: tuple[Path, ...] = (), sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    text = m.template(helm, values_files=values, set_values=sets, release="rel", namespace="music")
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None, namespace: str | None = None) -> list[dict]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
            and (namespace is None or d["metadata"].get("namespace") == namespace)]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None, namespace: str | None = None) -> dict:
    found = find(docs, kind, name, namespace)
    assert len(found) == 1, f"expected one {kind} {name or ''} in {namespace or 'any namespace'}, found {len(found)}"
    return found[0]


def operator_settings(docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch):
    """Load the operator's settings exactly as the pod would: env from the rendered ConfigMap."""
    settings_module = pytest.importorskip("stemgen_operator.settings")
    for name in [n for n in list(__import__("os").environ) if n.startswith(settings_module.ENV_PREFIX)]:
        monkeypatch.delenv(name)
    for key, value in one(docs, "ConfigMap", "rel-stemgen-operator")["data"].items():
        monkeypatch.setenv(key, value)
    return settings_module.load_settings()


@pytest.mark.parametrize("values", VALUES_FILES, ids=VALUES_IDS)
def test_lint_is_clean(helm: Path, values: tuple[Path, ...]) -> None:
    args = ["lint", "--strict", str(m.CHART_DIR), "--kube-version", m.KUBE_VERSION]
    for path in values:
        args += ["--values", str(path)]
    output = m.run_helm(helm, *args)
    assert "0 chart(s) failed" in output, output


@pytest.mark.parametrize("values", VALUES_FILES, ids=VALUES_IDS)
def test_operator_accepts_the_rendered_settings(helm: Path, values, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render(helm, values)
    chart_values = yaml.safe_load((m.CHART_DIR / "values.yaml").read_text())
    for path in values:
        chart_values = _merge(chart_values, yaml.safe_load(path.read_text()))
    settings = operator_settings(docs, monkeypatch)
    pools = chart_values["pools"]
    if pools["gpu"]["enabled"]:
        assert settings.gpu_pool is not None
        assert settings.gpu_pool.limit == pools["gpu"]["maxConcurrent"]
        assert settings.gpu_pool.node_selector == pools["gpu"]["nodeSelector"]
        assert settings.gpu_pool.tolerations == pools["gpu"]["tolerations"]
        assert settings.gpu_pool.gpus == pools["gpu"]["gpus"]
    else:
        assert settings.gpu_pool is None
    assert settings.cpu_pool.limit == pools["cpu"]["maxConcurrent"]
    assert settings.cpu_pool.resources.requests == {k: str(v) for k, v in pools["cpu"]["resources"]["requests"].items()}
    assert settings.runner_service_account == "rel-stemgen-runner"
    assert settings.metrics_port == chart_values["operator"]["metricsPort"]
    assert settings.liveness_port == chart_values["operator"]["healthPort"]
    claim = chart_values["modelCache"]["existingClaim"] or "rel-stemgen-model-cache"
    assert settings.model_cache_pvc == claim
    assert settings.image_pull_secrets == chart_values["imagePullSecrets"]
    cluster = chart_values["operator"]["scope"] == "cluster"
    assert settings.namespaces == ([] if cluster else (chart_values["namespaces"] or ["music"]))
    if chart_values["storage"]["auth"] == "workloadIdentity":
        assert settings.workload_identity and not settings.storage_secret_name
        assert settings.storage_account_url == chart_values["storage"]["accountUrl"]
    else:
        assert not settings.workload_identity
        assert settings.storage_secret_name == chart_values["storage"]["existingSecret"]["name"]
        assert settings.storage_secret_key == chart_values["storage"]["existingSecret"]["key"]


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def test_operator_deployment_is_single_recreate_and_hardened(helm: Path) -> None:
    docs = render(helm)
    deployment = one(docs, "Deployment", "rel-stemgen-operator", "music")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "rel-stemgen-operator"
    (container,) = pod["containers"]
    assert container["command"] == ["stemgen-operator"]
    assert container["image"] == "ghcr.io/stemgen/stemgen-operator:0.1.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    security = container["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    assert security["capabilities"] == {"drop": ["ALL"]} and not security["allowPrivilegeEscalation"]
    assert container["envFrom"] == [{"configMapRef": {"name": "rel-stemgen-operator"}}]
    assert "checksum/config" in deployment["spec"]["template"]["metadata"]["annotations"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    service = one(docs, "Service", "rel-stemgen-operator-metrics")
    assert service["spec"]["selector"] == selector


def test_runner_role_is_least_privilege(helm: Path) -> None:
    docs = render(helm)
    role = one(docs, "Role", "rel-stemgen-runner", "music")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"]), tuple(sorted(r["verbs"]))) for r in role["rules"]}
    assert rules == {((c.GROUP,), (c.PLURAL,), ("get", "watch")),
                     ((c.GROUP,), (f"{c.PLURAL}/status",), ("patch",))}
    binding = one(docs, "RoleBinding", "rel-stemgen-runner", "music")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-stemgen-runner", "namespace": "music"}]
    assert binding["roleRef"]["name"] == "rel-stemgen-runner"


def test_operator_rbac_namespaced_scope_has_no_cluster_wide_workload_rights(helm: Path) -> None:
    docs = render(helm)
    cluster_role = one(docs, "ClusterRole", "rel-stemgen-operator")
    assert cluster_role["rules"] == [{"apiGroups": ["apiextensions.k8s.io"],
                                     "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]}]
    role = one(docs, "Role", "rel-stemgen-operator", "music")
    by_resource = {resource: set(rule["verbs"]) for rule in role["rules"] for resource in rule["resources"]}
    assert by_resource["secrets"] == {"get"}, "the operator reads one named callback secret, never lists them"
    assert by_resource["pods"] == {"get", "list", "watch"}
    assert {"create", "delete"} <= by_resource["jobs"]
    assert by_resource[f"{c.PLURAL}/finalizers"] == {"update"}
    assert "*" not in {verb for verbs in by_resource.values() for verb in verbs}


def test_cluster_scope_moves_workload_rules_to_the_cluster_role_but_not_secrets(helm: Path) -> None:
    docs = render(helm, sets=("operator.scope=cluster", "namespaces={a,b}"))
    cluster_role = one(docs, "ClusterRole", "rel-stemgen-operator")
    resources = {resource for rule in cluster_role["rules"] for resource in rule["resources"]}
    assert {c.PLURAL, "jobs", "pods", "events"} <= resources and "secrets" not in resources
    for namespace in ("a", "b"):
        role = one(docs, "Role", "rel-stemgen-operator", namespace)
        assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
        one(docs, "ServiceAccount", "rel-stemgen-runner", namespace)
        one(docs, "PersistentVolumeClaim", "rel-stemgen-model-cache", namespace)
    assert not find(docs, "Role", namespace="music"), "the release namespace is not a request namespace here"


def test_model_cache_claim_defaults_to_azure_files_rwx(helm: Path) -> None:
    claim = one(render(helm), "PersistentVolumeClaim", "rel-stemgen-model-cache", "music")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["storageClassName"] == "azurefile-csi-premium"
    assert "annotations" not in claim["metadata"], "uninstall must remove the claim unless asked to keep it"
    kept = one(render(helm, sets=("modelCache.retainOnUninstall=true",)), "PersistentVolumeClaim")
    assert kept["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_existing_secret_values_use_the_existing_claim_and_pull_secret(helm: Path) -> None:
    docs = render(helm, (m.CHART_DIR / "ci" / "existing-secret-values.yaml",))
    assert not find(docs, "PersistentVolumeClaim")
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "acr-pull"}]


def test_workload_identity_annotates_the_runner_service_account(helm: Path) -> None:
    docs = render(helm, (m.CHART_DIR / "ci" / "workload-identity-values.yaml",))
    for namespace in ("music-team-a", "music-team-b"):
        account = one(docs, "ServiceAccount", "rel-stemgen-runner", namespace)
        assert account["metadata"]["annotations"] == {
            "azure.workload.identity/client-id": "5b8f8c1e-3c1d-4e0b-9a4e-2f6f1d7c9a10"}
    data = one(docs, "ConfigMap")["data"]
    assert data["STEMGEN_OPERATOR_WORKLOAD_IDENTITY"] == "true"
    assert data["STEMGEN_OPERATOR_STORAGE_SECRET_NAME"] == ""


def test_aks_values_render_warmup_hook_service_monitor_and_network_policies(helm: Path) -> None:
    docs = render(helm, (m.CHART_DIR / "ci" / "aks-values.yaml",))
    job = one(docs, "Job", "rel-stemgen-warmup", "stemgen")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,post-upgrade"
    assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
    pod = job["spec"]["template"]["spec"]
    commands = [ctr["command"] for ctr in pod.get("initContainers", []) + pod["containers"]]
    assert commands == [["stemgen-runner", "warmup", "--model", "facebook/musicgen-small"],
                        ["stemgen-runner", "warmup", "--model", "facebook/musicgen-medium"]]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "rel-stemgen-model-cache"
    assert pod["nodeSelector"] == {"kubernetes.azure.com/agentpool": "cpu"}
    assert pod["automountServiceAccountToken"] is False
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    runner_policy = one(docs, "NetworkPolicy", "rel-stemgen-runner", "stemgen")
    assert runner_policy["spec"]["ingress"] == []
    assert runner_policy["spec"]["podSelector"]["matchLabels"] == {
        c.LABEL_PART_OF: c.PART_OF, c.LABEL_COMPONENT: c.COMPONENT_RUNNER}


def test_gpu_pool_defaults_match_aks(helm: Path) -> None:
    data = one(render(helm), "ConfigMap")["data"]
    gpu = yaml.safe_load(data["STEMGEN_OPERATOR_GPU_POOL"])
    assert gpu["nodeSelector"] == {"kubernetes.azure.com/agentpool": "gpu"}
    assert gpu["tolerations"] == [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
    assert gpu["gpuResource"] == "nvidia.com/gpu" and gpu["gpus"] == 1
    assert all(isinstance(v, str) for q in gpu["resources"].values() for v in q.values()), gpu["resources"]
    cpu_only = one(render(helm, (m.CHART_DIR / "ci" / "cpu-only-values.yaml",)), "ConfigMap")["data"]
    assert "STEMGEN_OPERATOR_GPU_POOL" not in cpu_only


@pytest.mark.parametrize(("sets", "message"), [
    (("operator.scope=global",), "/operator/scope"),
    (("storage.auth=workloadIdentity",), "/storage"),
    (("storage.auth=workloadIdentity", "storage.accountUrl=https://a.blob.core.windows.net",
      "storage.workloadIdentity.clientId=not-a-guid"), "/storage/workloadIdentity/clientId"),
    (("pools.gpu.maxConcurrent=-1",), "/pools/gpu/maxConcurrent"),
    (("pools.gpu.enabled=false", "pools.cpu.enabled=false"), "/pools"),
    (("imagePullSecrets[0].name=regcred",), "/imagePullSecrets/0"),
    (("modelCache.accessModes={ReadWriteSometimes}",), "/modelCache/accessModes/0"),
    (("operator.replicas=2",), "replicas"),
    (("runner.image.digest=latest",), "/runner/image/digest"),
    (("runner.env.STEMGEN_CALLBACK_SECRET=x",), "/runner/env"),
    (("namespaces={Bad_Namespace}",), "/namespaces/0"),
    (("operator.healthPort=8080",), "operator.metricsPort and operator.healthPort must differ"),
])
def test_bad_values_are_refused_with_the_path(helm: Path, sets: tuple[str, ...], message: str) -> None:
    with pytest.raises(m.HelmError) as refused:
        m.template(helm, set_values=sets)
    assert message in str(refused.value), str(refused.value)



def test_long_release_names_still_give_valid_object_names(helm: Path) -> None:
    release = "a-very-long-release-name-for-the-music-platform-team"  # 52 of Helm's 53 characters
    text = m.template(helm, release=release, namespace="music", set_values=("warmup.enabled=true",))
    for doc in (d for d in yaml.safe_load_all(text) if d):
        name = doc["metadata"]["name"]
        assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), f"{doc['kind']} {name}"
