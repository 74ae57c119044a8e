"""Node agent configuration and the stand-in volume provisioner's PersistentVolume."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from stemgen_dev.agent.provisioner import PROVISIONED_BY, persistent_volume_for
from stemgen_dev.node_agent import build_config, cli


def _kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}]}))
    return path


def test_build_config_pools_and_maps(tmp_path: Path) -> None:
    config = build_config(kubeconfig=str(_kubeconfig(tmp_path)), gpu_nodes=2, cpu_nodes=1, gpus_per_node=4,
                          volume_root=str(tmp_path / "v"), work_root=str(tmp_path / "w"), prefix="p",
                          gpu_taints=["nvidia.com/gpu=present:NoSchedule"], cpu_labels=["tier=batch"],
                          claims=["models=/data/models"], entrypoints=["my-image=python -m app serve"],
                          env=["A=1"], gpu_env=["STEMGEN_DEVICE=cpu"])
    gpu, cpu = config.pools
    assert (gpu.name, gpu.count, gpu.gpus) == ("gpu", 2, 4)
    assert [(t.key, t.value, t.effect) for t in gpu.taints] == [("nvidia.com/gpu", "present", "NoSchedule")]
    assert cpu.labels == {"kubernetes.azure.com/agentpool": "cpu", "tier": "batch"}
    assert config.claim_dirs == {"models": Path("/data/models")}
    assert config.image_entrypoints["my-image"] == ["python", "-m", "app", "serve"]
    assert config.image_entrypoints["stemgen-runner"] == ["stemgen-runner"]
    assert (config.extra_env, config.gpu_env) == ({"A": "1"}, {"STEMGEN_DEVICE": "cpu"})
    assert config.volume_root == (tmp_path / "v").resolve()


def test_cli_refuses_bad_taint_naming_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--kubeconfig", str(_kubeconfig(tmp_path)), "--gpu-taint", "sku=gpu:Never"])
    assert result.exit_code != 0
    assert "sku=gpu:Never" in result.output


def test_persistent_volume_matches_and_reserves_the_claim(tmp_path: Path) -> None:
    claim = {"metadata": {"name": "stemgen-model-cache", "namespace": "music", "uid": "u-9"},
             "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "azurefile-csi-premium",
                      "resources": {"requests": {"storage": "50Gi"}}}}
    volume = persistent_volume_for(claim, tmp_path / "cache")
    spec = volume["spec"]
    assert volume["metadata"]["name"] == "pvc-u-9"
    assert volume["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == PROVISIONED_BY
    assert spec["capacity"] == {"storage": "50Gi"}
    assert spec["accessModes"] == ["ReadWriteMany"]
    assert spec["storageClassName"] == "azurefile-csi-premium"
    assert spec["hostPath"]["path"] == str(tmp_path / "cache")
    assert spec["claimRef"] == {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "music",
                                "name": "stemgen-model-cache", "uid": "u-9"}


def test_persistent_volume_defaults() -> None:
    claim = {"metadata": {"name": "c", "namespace": "n", "uid": "u"}, "spec": {}}
    spec = persistent_volume_for(claim, Path("/x"))["spec"]
    assert (spec["capacity"], spec["accessModes"], spec["storageClassName"]) == ({"storage": "1Gi"},
                                                                                 ["ReadWriteOnce"], "")


@pytest.mark.parametrize("bad", ["KEY", "=v"])
def test_bad_env_pairs_are_refused(tmp_path: Path, bad: str) -> None:
    result = CliRunner().invoke(cli, ["--kubeconfig", str(_kubeconfig(tmp_path)), "--env", bad])
    assert result.exit_code != 0 and "KEY=VALUE" in result.output
