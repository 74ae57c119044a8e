"""A backend pod's view: the client picks the service account (token, CA, namespace) with no
configuration, RBAC from docs/usage.md is enough, and without it the CLI exits 1 with "forbidden"."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from stemgen_client import NotFound, StemGenClient
from stemgen_client.exitcodes import CliExit
from tests.integration.cli_runner import run_stemgen

USAGE = (Path(__file__).resolve().parents[2] / "docs" / "usage.md").read_text()


def _documented_role() -> dict:
    roles = [doc for block in re.findall(r"```yaml\n(.*?)```", USAGE, re.DOTALL)
             if (doc := yaml.safe_load(block)).get("kind") == "Role"]
    assert len(roles) == 1
    return roles[0]


@pytest.fixture
def service_account(control_plane, api_client, namespace: str, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A service account token mounted the way the kubelet does, and the pod's environment."""
    core = k8s.CoreV1Api(api_client)
    core.create_namespaced_service_account(namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="backend")))
    token = core.create_namespaced_service_account_token("backend", namespace, k8s.AuthenticationV1TokenRequest(
        spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))).status.token
    mount = tmp_path / "serviceaccount"
    mount.mkdir()
    (mount / "token").write_text(token)
    (mount / "ca.crt").write_bytes(Path(control_plane.ca_file).read_bytes())
    (mount / "namespace").write_text(namespace)
    monkeypatch.setattr(k8s_config.incluster_config, "SERVICE_TOKEN_FILENAME", str(mount / "token"))
    monkeypatch.setattr(k8s_config.incluster_config, "SERVICE_CERT_FILENAME", str(mount / "ca.crt"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(control_plane.apiserver_port))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    return mount, token


def _eventually(check, timeout: float = 20):
    """RBAC changes reach the authorizer through an informer: allow it a moment."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except ApiException as error:
            if error.status != 403 or time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_in_cluster_client_uses_the_service_account(control_plane, api_client, namespace: str,
                                                    service_account, tmp_path: Path) -> None:
    _, token = service_account
    stemgen = StemGenClient()  # no kubeconfig anywhere: in-cluster, namespace from the mounted file
    assert stemgen.namespace == namespace
    assert stemgen.api_client.configuration.host == control_plane.server

    with pytest.raises(ApiException) as refused:
        stemgen.list()
    assert refused.value.status == 403 and f"system:serviceaccount:{namespace}:backend" in refused.value.body

    # The CLI with the same identity (through a kubeconfig) reports it as a plain error, exit 1.
    kubeconfig = tmp_path / "backend.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "backend",
        "clusters": [{"name": "local", "cluster": {"server": control_plane.server,
                                                   "certificate-authority": control_plane.ca_file}}],
        "users": [{"name": "backend", "user": {"token": token}}],
        "contexts": [{"name": "backend", "context": {"cluster": "local", "user": "backend", "namespace": namespace}}],
    }))
    denied = run_stemgen(str(kubeconfig), None, "ls")
    assert denied.returncode == CliExit.ERROR and "forbidden" in denied.stderr

    rbac = k8s.RbacAuthorizationV1Api(api_client)
    role = _documented_role()
    rbac.create_namespaced_role(namespace, role)
    rbac.create_namespaced_role_binding(namespace, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "backend"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]},
        "subjects": [{"kind": "ServiceAccount", "name": "backend", "namespace": namespace}]})

    created = _eventually(lambda: stemgen.create(stems=["drums"], request_id="from-a-pod"))
    assert stemgen.create(stems=["drums"], request_id="from-a-pod").uid == created.uid
    assert [r.name for r in stemgen.list()] == [created.name]
    assert stemgen.cancel(created.name).cancel_requested
    with pytest.raises(NotFound, match="no runner pod"):
        list(stemgen.logs(created.name))  # listing pods is allowed by the documented role
    stemgen.delete(created.name)
    allowed = run_stemgen(str(kubeconfig), None, "ls")
    assert allowed.returncode == 0, allowed.stderr
