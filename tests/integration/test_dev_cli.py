"""`stemgen-dev cluster up/down`: the by-hand control plane a developer uses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml


def test_cluster_up_prints_kubeconfig_and_down_stops_it(tmp_path) -> None:
    env = {**os.environ, "STEMGEN_STATE_DIR": str(tmp_path / "state")}
    command = [sys.executable, "-m", "stemgen_dev"]
    up = subprocess.run([*command, "cluster", "up"], env=env, capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stderr
    exports = [line for line in up.stdout.splitlines() if line.startswith("export KUBECONFIG=")]
    assert exports, up.stdout
    kubeconfig = exports[0].split("=", 1)[1]
    try:
        assert yaml.safe_load(Path(kubeconfig).read_text())["current-context"] == "stemgen-local"
        kubectl = next(line.split(": ", 1)[1] for line in up.stdout.splitlines() if line.startswith("kubectl: "))
        version = subprocess.run([kubectl, f"--kubeconfig={kubeconfig}", "version", "-o", "yaml"],
                                 capture_output=True, text=True, timeout=60)
        assert yaml.safe_load(version.stdout)["serverVersion"]["gitVersion"] == "v1.34.4"
        crds = subprocess.run([kubectl, f"--kubeconfig={kubeconfig}", "get", "crd", "-o", "name"],
                              capture_output=True, text=True, timeout=60)
        assert "customresourcedefinition.apiextensions.k8s.io/stemgenerations.stemgen.io" in crds.stdout
        again = subprocess.run([*command, "cluster", "up"], env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 1 and "already up" in again.stdout
    finally:
        down = subprocess.run([*command, "cluster", "down"], env=env, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0 and "stopped" in down.stdout
    gone = subprocess.run([kubectl, f"--kubeconfig={kubeconfig}", "get", "ns", "--request-timeout=3s"],
                          capture_output=True, text=True, timeout=60)
    assert gone.returncode != 0
