"""Pure pod → process translation of the node agent: env, paths, argv, limits, volumes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stemgen_dev.agent import podspec
from stemgen_dev.agent.podspec import ContainerConfigError, Mount, PathRewriter


class FakeLookup:
    """Secrets and ConfigMaps as plain dicts: the lookup protocol without a cluster."""

    def __init__(self, secrets: dict[str, dict[str, str]] | None = None,
                 config_maps: dict[str, dict[str, str]] | None = None) -> None:
        self.secrets = secrets or {}
        self.config_maps = config_maps or {}

    def secret(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.secrets.get(f"{namespace}/{name}")

    def config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.config_maps.get(f"{namespace}/{name}")


POD: dict[str, Any] = {
    "metadata": {"name": "sg-demo-1234", "namespace": "music", "uid": "u-1",
                 "labels": {"app": "runner"}, "annotations": {"stemgen.io/request-id": "req-9"}},
    "spec": {"nodeName": "agent-gpu-0", "serviceAccountName": "stemgen-runner"},
}


@pytest.mark.parametrize(("value", "env", "expected"), [
    ("plain", {}, "plain"),
    ("$(A)-$(B)", {"A": "1", "B": "2"}, "1-2"),
    ("$(MISSING)", {}, "$(MISSING)"),
    ("$$(A)", {"A": "1"}, "$(A)"),
    ("cost $$5", {}, "cost $5"),
    ("$(A", {"A": "1"}, "$(A"),
    ("trailing $", {}, "trailing $"),
])
def test_expand_follows_kubernetes_rules(value: str, env: dict[str, str], expected: str) -> None:
    assert podspec.expand(value, env) == expected


def test_resolve_env_sources_and_precedence() -> None:
    lookup = FakeLookup(secrets={"music/storage": {"connection-string": "UseDevelopmentStorage=true"},
                                 "music/bulk": {"FROM_SECRET": "s"}},
                        config_maps={"music/settings": {"mode": "fast", "SHARED": "from-envfrom", "bad key": "x"}})
    container = {
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CM_"}, {"secretRef": {"name": "bulk"}},
                    {"configMapRef": {"name": "absent", "optional": True}}],
        "env": [
            {"name": "CONN", "valueFrom": {"secretKeyRef": {"name": "storage", "key": "connection-string"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "REQ", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['stemgen.io/request-id']"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "OPTIONAL", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}}},
            {"name": "GREETING", "value": "$(MODE) on $(NODE)"},
            {"name": "CM_SHARED", "value": "env wins"},
        ],
    }
    env = podspec.resolve_env(POD, container, lookup)
    assert env == {
        "CM_mode": "fast", "CM_SHARED": "env wins", "FROM_SECRET": "s", "CONN": "UseDevelopmentStorage=true",
        "MODE": "fast", "NAME": "sg-demo-1234", "NS": "music", "UID": "u-1", "NODE": "agent-gpu-0",
        "REQ": "req-9", "IP": "127.0.0.1", "GREETING": "fast on agent-gpu-0",
    }


def test_secret_values_are_not_expanded() -> None:
    lookup = FakeLookup(secrets={"music/s": {"k": "$(NODE)"}})
    container = {"env": [{"name": "NODE", "value": "n"},
                         {"name": "RAW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}
    assert podspec.resolve_env(POD, container, lookup)["RAW"] == "$(NODE)"


@pytest.mark.parametrize(("env_item", "message"), [
    ({"name": "X", "valueFrom": {"secretKeyRef": {"name": "storage", "key": "k"}}}, 'secret "storage" not found'),
    ({"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "missing"}}},
     "couldn't find key missing in ConfigMap music/settings"),
    ({"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.nope"}}}, "unsupported fieldRef"),
])
def test_missing_references_are_container_config_errors(env_item: dict[str, Any], message: str) -> None:
    lookup = FakeLookup(config_maps={"music/settings": {"mode": "fast"}})
    with pytest.raises(ContainerConfigError, match=message):
        podspec.resolve_env(POD, {"env": [env_item]}, lookup)


def test_resource_field_ref_uses_limit_or_node_allocatable() -> None:
    container = {"resources": {"limits": {"memory": "2Gi", "cpu": "1500m"}},
                 "env": [{"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                                             "divisor": "1Mi"}}},
                         {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]}
    env = podspec.resolve_env(POD, container, FakeLookup())
    assert env == {"MEM": "2048", "CPU": "2"}
    bare = {"env": [{"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}}]}
    assert podspec.resolve_env(POD, bare, FakeLookup(), allocatable={"memory": "1Ki"}) == {"MEM": "1024"}


def test_path_rewriter_maps_mount_points_longest_first(tmp_path: Path) -> None:
    rewriter = PathRewriter([Mount("/cache", tmp_path / "cache"), Mount("/cache/hf", tmp_path / "hf"),
                             Mount("/tmp", tmp_path / "tmp"), Mount("/dev/termination-log", tmp_path / "msg")])
    assert rewriter.rewrite_value("/cache/hf/hub") == str(tmp_path / "hf" / "hub")
    assert rewriter.rewrite_value("/cache/audiocraft") == str(tmp_path / "cache" / "audiocraft")
    assert rewriter.rewrite_value("/cache") == str(tmp_path / "cache")
    assert rewriter.rewrite_value("/cachet") == "/cachet"
    assert rewriter.rewrite_value("/tmp:/usr/bin") == f"{tmp_path / 'tmp'}:/usr/bin"
    assert rewriter.rewrite_value("/dev/termination-log") == str(tmp_path / "msg")
    assert rewriter.rewrite_value("http://127.0.0.1:10000/devstoreaccount1") == "http://127.0.0.1:10000/devstoreaccount1"
    assert rewriter.rewrite_value("DefaultEndpointsProtocol=http;BlobEndpoint=http://x:1/a;") == \
        "DefaultEndpointsProtocol=http;BlobEndpoint=http://x:1/a;"
    assert rewriter.rewrite_arg("--cache-dir=/cache/x") == f"--cache-dir={tmp_path / 'cache' / 'x'}"
    assert rewriter.rewrite_env({"HF_HOME": "/cache/hf", "OTHER": "v"}) == {"HF_HOME": str(tmp_path / "hf"),
                                                                              "OTHER": "v"}


def test_volume_paths_and_mounts(tmp_path: Path) -> None:
    pod_dir = tmp_path / "pod"
    volumes = {
        "model-cache": podspec.volume_path({"name": "model-cache", "persistentVolumeClaim": {"claimName": "models"}},
                                           volume_root=tmp_path / "pvcs", pod_dir=pod_dir),
        "mapped": podspec.volume_path({"name": "mapped", "persistentVolumeClaim": {"claimName": "other"}},
                                      volume_root=tmp_path / "pvcs", pod_dir=pod_dir,
                                      claim_dirs={"other": tmp_path / "elsewhere"}),
        "tmp": podspec.volume_path({"name": "tmp", "emptyDir": {}}, volume_root=tmp_path / "pvcs", pod_dir=pod_dir),
    }
    assert volumes == {"model-cache": tmp_path / "pvcs" / "models", "mapped": tmp_path / "elsewhere",
                       "tmp": pod_dir / "volumes" / "tmp"}
    container = {"volumeMounts": [{"name": "model-cache", "mountPath": "/models/"},
                                  {"name": "tmp", "mountPath": "/scratch", "subPath": "a"}],
                 "terminationMessagePath": "/var/msg"}
    mounts = podspec.container_mounts(container, volumes, termination_log=pod_dir / "msg")
    assert mounts == [Mount("/models", tmp_path / "pvcs" / "models"), Mount("/scratch", pod_dir / "volumes" / "tmp/a"),
                      Mount("/var/msg", pod_dir / "msg")]
    with pytest.raises(ContainerConfigError, match="refers to no volume"):
        podspec.container_mounts({"volumeMounts": [{"name": "ghost", "mountPath": "/x"}]}, volumes)


def test_projected_service_account_volume_files() -> None:
    volume = {"name": "kube-api-access-x", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
    ]}}
    files = podspec.volume_files(volume, POD, FakeLookup(), token="tok", ca_data="PEM")
    assert files == {"token": "tok", "ca.crt": "PEM", "namespace": "music"}
    published = FakeLookup(config_maps={"music/kube-root-ca.crt": {"ca.crt": "PUBLISHED"}})
    assert podspec.volume_files(volume, POD, published, token="tok", ca_data="PEM")["ca.crt"] == "PUBLISHED"


def test_secret_volume_items_and_missing_secret() -> None:
    lookup = FakeLookup(secrets={"music/s": {"a": "1", "b": "2"}})
    volume = {"name": "v", "secret": {"secretName": "s", "items": [{"key": "b", "path": "sub/b.txt"}]}}
    assert podspec.volume_files(volume, POD, lookup) == {"sub/b.txt": "2"}
    with pytest.raises(ContainerConfigError, match='secret "gone" not found'):
        podspec.volume_files({"name": "v", "secret": {"secretName": "gone"}}, POD, lookup)


def test_container_argv_expands_and_uses_image_entrypoints() -> None:
    env = {"STEM": "drums"}
    assert podspec.container_argv({"command": ["stemgen-runner", "run"], "args": ["--stem=$(STEM)"]}, {}, env) == \
        ["stemgen-runner", "run", "--stem=drums"]
    assert podspec.container_argv({"image": "ghcr.io/x/stemgen-runner:1", "args": ["run"]},
                                  {"stemgen-runner": ["stemgen-runner"]}, env) == ["stemgen-runner", "run"]
    with pytest.raises(ContainerConfigError, match="--image-entrypoint"):
        podspec.container_argv({"name": "c", "image": "busybox"}, {}, env)


def test_resolve_executable_prefers_existing_then_basename_on_path(tmp_path: Path) -> None:
    program = tmp_path / "stemgen-runner"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    assert podspec.resolve_executable("/opt/venv/bin/stemgen-runner", [str(tmp_path)]) == str(program)
    assert podspec.resolve_executable("stemgen-runner", [str(tmp_path)]) == str(program)
    assert podspec.resolve_executable("/bin/sh", [str(tmp_path)]) == "/bin/sh"
    assert podspec.resolve_executable("nowhere-to-be-found", [str(tmp_path)]) == "nowhere-to-be-found"


def test_limits_and_gpu_requests() -> None:
    assert podspec.memory_limit_bytes({"resources": {"limits": {"memory": "100Mi"}}}) == 100 * 1024 * 1024
    assert podspec.memory_limit_bytes({"resources": {"requests": {"memory": "1Gi"}}}) is None
    assert podspec.gpu_request({"resources": {"limits": {"nvidia.com/gpu": "2"}}}) == 2
    assert podspec.gpu_request({}) == 0
