"""The chart and the plain manifests against the real API server.

`helm install` must get every object accepted (the CRD already installed by the harness is
skipped by Helm, as it is on a cluster that already has it), the two ServiceAccounts must hold
exactly the rights the design gives them (`kubectl auth can-i`, answered by the real RBAC
authorizer), and `helm uninstall` must leave nothing behind but the CRD.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import yaml

from stemgen_api import contract as c
from stemgen_dev import manifests as m

NAMESPACED_KINDS = ("configmaps", "serviceaccounts", "services", "persistentvolumeclaims", "deployments",
                    "jobs", "roles.rbac.authorization.k8s.io", "rolebindings.rbac.authorization.k8s.io",
                    "networkpolicies.networking.k8s.io")
CLUSTER_KINDS = ("clusterroles.rbac.authorization.k8s.io", "clusterrolebindings.rbac.authorization.k8s.io")


@pytest.fixture(scope="module")
def helm(control_plane) -> Callable[..., str]:
    binary = control_plane.bin_dir / "helm"

    def run(*args: str) -> str:
        return m.run_helm(binary, *args, kubeconfig=control_plane.kubeconfig)

    return run


@pytest.fixture
def other_namespace(kubectl) -> Iterator[str]:
    name = f"t-other-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


def can_i(kubectl, account: str, verb: str, resource: str, namespace: str | None, subresource: str = "") -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={account}"]
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    if subresource:
        args.append(f"--subresource={subresource}")
    result = kubectl(*args, check=False)
    assert result.stdout.strip() in {"yes", "no"}, result.stdout + result.stderr
    return result.stdout.strip() == "yes"


def objects_of(kubectl, release: str, namespaces: list[str]) -> list[str]:
    """The release's objects that still exist and are not already being deleted.

    A claim being deleted waits for the PVC-protection controller to drop its finalizer; Helm's
    part (issuing the delete) is done once deletionTimestamp is set.
    """
    selector = f"app.kubernetes.io/instance={release}"
    items = []
    for namespace in namespaces:
        items += json.loads(kubectl("get", ",".join(NAMESPACED_KINDS), "-n", namespace, "-l", selector,
                                    "-o", "json").stdout)["items"]
    items += json.loads(kubectl("get", ",".join(CLUSTER_KINDS), "-l", selector, "-o", "json").stdout)["items"]
    return [f"{item['kind']}/{item['metadata'].get('namespace', '')}/{item['metadata']['name']}" for item in items
            if not item["metadata"].get("deletionTimestamp")]


def wait_gone(kubectl, release: str, namespaces: list[str], timeout: float = 60.0) -> list[str]:
    """Uninstall returns before garbage collection (ReplicaSets, Pods) is done."""
    deadline = time.monotonic() + timeout
    while True:
        left = objects_of(kubectl, release, namespaces)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(1)


@contextmanager
def installed(helm, release: str, namespace: str, *args: str) -> Iterator[str]:
    output = helm("install", release, str(m.CHART_DIR), "--namespace", namespace, *args)
    try:
        yield output
    finally:
        with suppress(m.HelmError):  # the test may have uninstalled it already
            helm("uninstall", release, "--namespace", namespace)


def test_install_runner_and_operator_rights_and_clean_uninstall(helm, kubectl, namespace, other_namespace) -> None:
    release = f"sg{uuid.uuid4().hex[:6]}"
    with installed(helm, release, namespace) as output:
        assert "STATUS: deployed" in output, output
        notes = output.split("NOTES:", 1)[1]
        assert "kind: StemGeneration" in notes and f"kubectl -n {namespace} apply -f -" in notes, notes
        assert f"kubectl -n {namespace} create secret generic stemgen-storage" in notes, notes
        manifest_text = helm("get", "manifest", release, "-n", namespace)
        manifest = [d for d in yaml.safe_load_all(manifest_text) if d]
        served = kubectl("get", "-f", "-", "-o", "name", input=manifest_text).stdout.split()
        assert len(served) == len(manifest), served
        assert {d["kind"] for d in manifest} >= {"Deployment", "ConfigMap", "ServiceAccount", "Role", "RoleBinding",
                                                 "ClusterRole", "ClusterRoleBinding", "PersistentVolumeClaim"}
        deployment = json.loads(kubectl("get", "deployment", f"{release}-stemgen-operator", "-n", namespace,
                                        "-o", "json").stdout)
        assert deployment["spec"]["strategy"]["type"] == "Recreate" and deployment["spec"]["replicas"] == 1

        runner = f"system:serviceaccount:{namespace}:{release}-stemgen-runner"
        assert can_i(kubectl, runner, "patch", f"{c.PLURAL}.{c.GROUP}", namespace, subresource="status")
        assert can_i(kubectl, runner, "get", f"{c.PLURAL}.{c.GROUP}", namespace)
        assert can_i(kubectl, runner, "watch", f"{c.PLURAL}.{c.GROUP}", namespace)
        for verb, resource in [("get", "secrets"), ("list", "secrets"), ("get", "pods"), ("create", "jobs"),
                               ("patch", f"{c.PLURAL}.{c.GROUP}"), ("delete", f"{c.PLURAL}.{c.GROUP}"),
                               ("list", f"{c.PLURAL}.{c.GROUP}"), ("create", "events"), ("get", "configmaps")]:
            assert not can_i(kubectl, runner, verb, resource, namespace), f"runner may {verb} {resource}"
        assert not can_i(kubectl, runner, "patch", f"{c.PLURAL}.{c.GROUP}", other_namespace, subresource="status")
        assert not can_i(kubectl, runner, "get", f"{c.PLURAL}.{c.GROUP}", other_namespace)

        operator = f"system:serviceaccount:{namespace}:{release}-stemgen-operator"
        for verb, resource, subresource in [
                ("watch", f"{c.PLURAL}.{c.GROUP}", ""), ("patch", f"{c.PLURAL}.{c.GROUP}", ""),
                ("delete", f"{c.PLURAL}.{c.GROUP}", ""), ("patch", f"{c.PLURAL}.{c.GROUP}", "status"),
                ("update", f"{c.PLURAL}.{c.GROUP}", "finalizers"), ("create", "jobs.batch", ""),
                ("delete", "jobs.batch", ""), ("watch", "pods", ""), ("create", "events", ""),
                ("get", "secrets", "")]:
            assert can_i(kubectl, operator, verb, resource, namespace, subresource), f"operator can't {verb} {resource}"
        assert can_i(kubectl, operator, "watch", "customresourcedefinitions.apiextensions.k8s.io", None)
        for verb, resource in [("list", "secrets"), ("watch", "secrets"), ("create", "pods"), ("delete", "pods"),
                               ("create", "secrets"), ("update", "customresourcedefinitions.apiextensions.k8s.io")]:
            assert not can_i(kubectl, operator, verb, resource, namespace), f"operator may {verb} {resource}"
        for verb, resource in [("get", "secrets"), ("list", "jobs.batch"), ("watch", f"{c.PLURAL}.{c.GROUP}")]:
            assert not can_i(kubectl, operator, verb, resource, other_namespace), (
                f"namespaced operator may {verb} {resource} outside its namespaces")

        helm("uninstall", release, "--namespace", namespace)
    assert wait_gone(kubectl, release, [namespace]) == []
    crd = kubectl("get", "crd", c.CRD_NAME, "-o", "name").stdout.strip()
    assert crd == f"customresourcedefinition.apiextensions.k8s.io/{c.CRD_NAME}", "uninstall must keep the CRD"


def test_cluster_scope_with_workload_identity_over_two_namespaces(helm, kubectl, namespace, other_namespace) -> None:
    release = f"sg{uuid.uuid4().hex[:6]}"
    values = m.CHART_DIR / "ci" / "workload-identity-values.yaml"
    namespaces = [namespace, other_namespace]
    with installed(helm, release, namespace, "--values", str(values),
                   "--set", "namespaces={" + ",".join(namespaces) + "}"):
        for each in namespaces:
            account = json.loads(kubectl("get", "serviceaccount", f"{release}-stemgen-runner", "-n", each,
                                         "-o", "json").stdout)
            assert account["metadata"]["annotations"]["azure.workload.identity/client-id"] == \
                yaml.safe_load(values.read_text())["storage"]["workloadIdentity"]["clientId"]
            runner = f"system:serviceaccount:{each}:{release}-stemgen-runner"
            assert can_i(kubectl, runner, "patch", f"{c.PLURAL}.{c.GROUP}", each, subresource="status")
        operator = f"system:serviceaccount:{namespace}:{release}-stemgen-operator"
        assert can_i(kubectl, operator, "list", "jobs.batch", None), "cluster scope watches every namespace"
        assert can_i(kubectl, operator, "watch", f"{c.PLURAL}.{c.GROUP}", None)
        assert can_i(kubectl, operator, "get", "secrets", other_namespace)
        assert not can_i(kubectl, operator, "get", "secrets", "default"), "secrets only in request namespaces"
        assert not can_i(kubectl, operator, "get", "secrets", None)
        helm("uninstall", release, "--namespace", namespace)
    assert wait_gone(kubectl, release, namespaces) == []


def test_plain_manifests_apply_as_documented(kubectl) -> None:
    """`kubectl apply -f manifests/crds/ && kubectl apply -f manifests/`, then an example, for real."""
    root = Path(m.MANIFESTS_DIR)
    if kubectl("get", "namespace", m.NAMESPACE, check=False).returncode == 0:
        pytest.fail(f"namespace {m.NAMESPACE} already exists; another test left it behind")
    try:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(root / "crds"))
        applied = kubectl("apply", "-f", str(root)).stdout
        expected = [d for d in yaml.safe_load_all(m.MANIFEST_FILE.read_text()) if d]
        assert len([line for line in applied.splitlines() if line.strip()]) == len(expected), applied
        assert kubectl("get", "deployment", "stemgen-operator", "-n", m.NAMESPACE, "-o", "name").stdout.strip()
        for example in sorted((root / "examples").glob("*.yaml")):
            out = kubectl("apply", "--dry-run=server", "-n", m.NAMESPACE, "-f", str(example)).stdout
            assert "created (server dry run)" in out, out
    finally:
        kubectl("delete", "-f", str(root), "--ignore-not-found", "--wait=false", check=False)


def test_operator_identity_can_create_the_job_it_builds_from_the_chart_settings(helm, kubectl, namespace) -> None:
    """The chart and the operator agree: the Job the operator builds from the installed ConfigMap is
    accepted when created *as the operator's ServiceAccount*, and names the runner ServiceAccount,
    claim and storage Secret key the chart set up."""
    settings_module = pytest.importorskip("stemgen_operator.settings")
    jobs = pytest.importorskip("stemgen_operator.jobs")
    release = f"sg{uuid.uuid4().hex[:6]}"
    with installed(helm, release, namespace):
        kubectl("apply", "-n", namespace, "-f", str(m.MANIFESTS_DIR / "examples" / "minimal.yaml"))
        body = json.loads(kubectl("get", f"{c.PLURAL}.{c.GROUP}", "minimal-groove", "-n", namespace,
                                  "-o", "json").stdout)
        data = json.loads(kubectl("get", "configmap", f"{release}-stemgen-operator", "-n", namespace,
                                  "-o", "json").stdout)["data"]
        with pytest.MonkeyPatch.context() as env:
            for key, value in data.items():
                env.setenv(key, value)
            settings = settings_module.load_settings()
        for pool in (c.Pool.GPU, c.Pool.CPU):
            job = jobs.build_job(body, pool, settings)
            job["metadata"]["name"] = f"{job['metadata']['name'][:50]}-{pool.value}"
            created = kubectl("create", "-f", "-", "-o", "json", "-n", namespace,
                              f"--as=system:serviceaccount:{namespace}:{release}-stemgen-operator",
                              input=json.dumps(job))
            pod = json.loads(created.stdout)["spec"]["template"]["spec"]
            assert pod["serviceAccountName"] == f"{release}-stemgen-runner"
            kubectl("get", "serviceaccount", pod["serviceAccountName"], "-n", namespace)
            claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
            assert claims == [f"{release}-stemgen-model-cache"]
            kubectl("get", "pvc", claims[0], "-n", namespace)
            refs = [e["valueFrom"]["secretKeyRef"] for ctr in pod["containers"] for e in ctr.get("env", [])
                    if "secretKeyRef" in e.get("valueFrom", {})]
            assert {"name": "stemgen-storage", "key": "connection-string"} in refs
            if pool is c.Pool.GPU:
                assert pod["nodeSelector"] == {"kubernetes.azure.com/agentpool": "gpu"}
                assert {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"} in pod["tolerations"]
                assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


@pytest.mark.parametrize("values", sorted((m.CHART_DIR / "ci").glob("*-values.yaml")), ids=lambda p: p.stem)
def test_every_values_file_renders_objects_the_api_server_accepts(control_plane, kubectl, namespace, values) -> None:
    """Server-side dry run of every rendered object, hooks (the warmup Job) and optional objects
    (NetworkPolicies) included. ServiceMonitor is left out: this cluster has no Prometheus Operator CRDs."""
    text = m.template(control_plane.bin_dir / "helm", values_files=(values,), release="dry", namespace=namespace,
                      set_values=(f"namespaces={{{namespace}}}",))
    docs = [d for d in yaml.safe_load_all(text) if d and d["kind"] != "ServiceMonitor"]
    assert docs
    out = kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(docs)).stdout
    assert out.count("(server dry run)") == len(docs), out
