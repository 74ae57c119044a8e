"""Running the installed `stemgen` console script as a subprocess, the way users and scripts do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

STEMGEN = Path(sys.executable).parent / "stemgen"


def stemgen_command(kubeconfig: str, namespace: str | None, *args: str) -> list[str]:
    command = [str(STEMGEN), "--kubeconfig", kubeconfig]
    if namespace:
        command += ["-n", namespace]
    return [*command, *args]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without storage credentials or a KUBECONFIG that could leak in from the shell."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_URL", "KUBECONFIG")}
    env.update({"COLUMNS": "200", "NO_COLOR": "1", **extra})
    return env


def run_stemgen(kubeconfig: str, namespace: str | None, *args: str, env: dict[str, str] | None = None,
                timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(stemgen_command(kubeconfig, namespace, *args), capture_output=True, text=True,
                          env=env or clean_env(), timeout=timeout, input=input)
